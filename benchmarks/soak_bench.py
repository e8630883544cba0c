"""Resident memory over a long run on indexed data with validation and checkpoints.

    python benchmarks/soak_bench.py [--steps 2000] [--out runs/soak] [--max-docs 3000]
        [--doc docs/reliability.md] [key=value overrides of both runs]

Builds the quickstart's data once under ``--out`` (demo corpora, dedup, SFT formatting, a
Unigram tokenizer, indexed datasets: ``xm2_megatron.quickstart.Pipeline``), then trains the
same model twice, each in a fresh ``python -m xm2_megatron.train`` process:

- soak: the ``quickstart_text`` recipe on the indexed data with its step numbers scaled to
  ``--steps`` (warmup, a batch-size change, the decay stage with 64% SFT data), validation
  every ``--eval-interval`` steps and an async checkpoint every ``--checkpoint-interval``
  steps (the last 2 kept);
- baseline: the same model, batches and schedule on synthetic tokens, with no validation and
  no checkpoints: what the step loop alone holds.

The logging rank's resident memory after every step comes from ``metrics.jsonl``
(``rss_gib``). For each run the table gives the RSS at a few points, the peak (and the peaks
of its anonymous and file-backed parts, polled from ``/proc``), and the growth over the
second half of the run (least-squares slope, MiB per 1,000 steps); a PNG shows both curves. Prints the table and writes it with the JSON into ``--doc`` between its markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
POINTS = (0.01, 0.1, 0.25, 0.5, 0.75, 1.0)


def build_data(out: Path, max_docs: int):
    """The quickstart's tokenizer and indexed datasets under ``out`` (reused when present)."""
    from xm2_megatron.quickstart import Pipeline

    pipeline = Pipeline(out, vocab_size=8000, max_docs=max_docs)
    if not (pipeline.tokenizer.is_file() and any(pipeline.indexed.glob("*.idx"))):
        pipeline.fetch()
        pipeline.prepare_data()
    return pipeline


def _memory_kinds(pid: int) -> dict[str, float] | None:
    """``RssAnon`` (heap, tensors) and ``RssFile`` (mapped files: the indexed datasets, the
    index cache, shared libraries) of a process, in GiB."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    kinds = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            kinds[key] = int(value.split()[0]) / 1024**2
    return kinds or None


def train(name: str, overrides: list[str], out: Path) -> tuple[list[dict], float, dict]:
    """One training run in a fresh process: its step records, wall seconds and the peaks of
    its anonymous and file-backed resident memory (``/proc``, polled every second)."""
    from xm2_megatron.training.monitor import read_metrics

    command = [sys.executable, "-m", "xm2_megatron.train", "quickstart_text", *overrides,
               f"name={name}", f"logging.output_dir={out / 'runs'}", "logging.wandb_mode=disabled"]
    print("  " + " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    peaks: dict[str, float] = {}
    while process.poll() is None:
        for key, value in (_memory_kinds(process.pid) or {}).items():
            peaks[key] = max(peaks.get(key, 0.0), value)
        time.sleep(1.0)
    if process.returncode != 0:
        raise SystemExit(f"error: {name} exited {process.returncode}")
    seconds = time.perf_counter() - start
    records = [r for r in read_metrics(out / "runs" / name / "metrics.jsonl") if "loss" in r]
    return records, seconds, {f"peak_{k}_gib": round(v, 3) for k, v in sorted(peaks.items())}


def slope_mib_per_1000(records: list[dict]) -> float:
    """Least-squares growth of RSS over the second half of the run."""
    import numpy as np

    half = records[len(records) // 2:]
    steps = np.array([r["step"] for r in half], dtype=float)
    rss = np.array([r["rss_gib"] for r in half]) * 1024
    return float(np.polyfit(steps, rss, 1)[0] * 1000)


def summarise(records: list[dict], seconds: float) -> dict:
    steps = len(records)
    return {
        "steps": steps,
        "seconds": round(seconds, 1),
        "rss_gib_at": {str(records[max(0, round(p * steps) - 1)]["step"]):
                       records[max(0, round(p * steps) - 1)]["rss_gib"] for p in POINTS},
        "peak_gib": max(r["rss_gib"] for r in records),
        "second_half_mib_per_1000_steps": round(slope_mib_per_1000(records), 2),
    }


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, records in runs.items():
        ax.plot([r["step"] for r in records], [r["rss_gib"] for r in records], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("RSS of the logging rank (GiB)")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(results: dict) -> str:
    soak = results["runs"]["soak"]
    points = list(soak["rss_gib_at"])
    lines = ["| run | seconds | " + " | ".join(f"RSS step {p}" for p in points)
             + " | peak | of it anon / file | 2nd-half growth |",
             "|---|---:|" + "---:|" * len(points) + "---:|---:|---:|"]
    for name, r in results["runs"].items():
        values = " | ".join(f"{v:.3f} GiB" for v in r["rss_gib_at"].values())
        kinds = f"{r.get('peak_RssAnon_gib', 0):.3f} / {r.get('peak_RssFile_gib', 0):.3f} GiB"
        lines.append(f"| {name} | {r['seconds']:.0f} | {values} | {r['peak_gib']:.3f} GiB | "
                     f"{kinds} | {r['second_half_mib_per_1000_steps']:+.1f} MiB / 1k steps |")
    return "\n".join(lines)


def write_doc(doc: Path, results: dict, text: str) -> None:
    body = doc.read_text()
    block = (f"{BEGIN}\n{text}\n\n<details><summary>JSON</summary>\n\n```json\n"
             f"{json.dumps(results, indent=2)}\n```\n</details>\n{END}")
    if BEGIN in body:
        body = body[:body.index(BEGIN)] + block + body[body.index(END) + len(END):]
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "soak")
    parser.add_argument("--max-docs", type=int, default=3000, help="documents per corpus")
    parser.add_argument("--eval-interval", type=int, default=100)
    parser.add_argument("--checkpoint-interval", type=int, default=250)
    parser.add_argument("--doc", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", help="key=value for both runs")
    args = parser.parse_args(argv)

    from xm2_megatron.config import load_config
    from xm2_megatron.quickstart import schedule_overrides

    out = args.out.resolve()
    pipeline = build_data(out, args.max_docs)
    base = load_config("quickstart_text", args.overrides)
    common = [*schedule_overrides(args.steps, base), "train.log_interval=100",
              f"model.vocab_size={_vocab_size(pipeline.tokenizer)}", *args.overrides]
    soak_args = [*pipeline.overrides([]), f"checkpoint.dir={out / 'checkpoints'}",
                 f"checkpoint.interval={args.checkpoint_interval}", "checkpoint.keep_last=2",
                 "checkpoint.async_save=true", f"train.eval_interval={args.eval_interval}"]
    baseline_args = ["data.kind=synthetic", "checkpoint.dir=null", "train.eval_interval=null"]
    for folder in ("checkpoints", "runs"):
        shutil.rmtree(out / folder, ignore_errors=True)
    runs, results = {}, {"steps": args.steps, "machine": f"{platform.node()} "
                         f"({platform.processor() or platform.machine()}, "
                         f"{_cpu_count()} cores)", "overrides": args.overrides, "runs": {}}
    for name, extra in (("baseline", baseline_args), ("soak", soak_args)):
        records, seconds, kinds = train(f"soak_{name}", [*common, *extra], out)
        runs[name] = records
        results["runs"][name] = {**summarise(records, seconds), **kinds}
    png = out / "rss.png"
    plot(runs, png)
    results["plot"] = str(png)
    text = table(results)
    print(text)
    print(f"plot: {png}")
    (out / "soak.json").write_text(json.dumps(results, indent=2))
    if args.doc:
        write_doc(args.doc, results, text)
    return 0


def _vocab_size(tokenizer: Path) -> int:
    from xm2_megatron.data.tokenizer import Tokenizer

    return Tokenizer(tokenizer).vocab_size


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    sys.exit(main())
