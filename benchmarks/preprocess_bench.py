"""Preprocessing throughput and memory against SentencePiece's own batched encode (the limit).

    python benchmarks/preprocess_bench.py [--tokenizer-model T.model] [--mb 200] [--base-mb 20]
        [--workers 2] [--repeats 2] [--doc docs/benchmarks-preprocess.md]

Text: ``data/demo/english.jsonl`` (the CPython documentation and other English text, from
``bash scripts/fetch_demo_data.sh``; without it the Python standard library's ``.py`` files),
repeated to ``--mb`` MB, and its first ``--base-mb`` MB for the memory comparison. Tokenizer:
``--tokenizer-model``, else an 8,000-piece Unigram model trained on the demo text with the
project's trainer settings (cached in ``--workdir``).

The limit, for W workers: one ``SentencePieceProcessor.encode(texts, num_threads=W)`` call on
every document of the input, already in memory as Python strings, results as Python lists;
the best of ``--repeats`` runs before and after the tool's runs. The tool: ``tools/
preprocess_data.py --workers W`` as a subprocess, timed from its start to its exit (interpreter
start-up and imports included) and by its own clock (first read to the renamed outputs), the
best of ``--repeats`` runs; peak memory of its process tree (RSS, and PSS: shared pages split
among the processes) polled every 50 ms. The tokens the tool wrote are compared with the
limit's. Prints a table and writes it, with the JSON, into the results block of ``--doc``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from xm2_megatron.data.indexed_writer import token_dtype
from xm2_megatron.data.tokenizer import Tokenizer, train_tokenizer

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "data" / "demo" / "english.jsonl"
TOOL = REPO / "tools" / "preprocess_data.py"
VOCAB = 8_000
TARGET = 0.85
SECONDS = re.compile(r"tokens in ([0-9.]+) s")


def corpus() -> tuple[list[str], str]:
    """Documents of the English demo corpus, else of the stdlib sources, and their name."""
    if DEMO.is_file():
        return ([json.loads(line)["text"] for line in DEMO.open(encoding="utf-8")],
                "data/demo/english.jsonl (CPython documentation and other English text)")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.rglob("*.py"))
            if "site-packages" not in p.parts and "test" not in p.parts]
    return [d for d in docs if d.strip()], "Python standard library .py files (no data/demo)"


def take_mb(docs: list[str], mb: float) -> list[str]:
    """The documents, repeated as needed, up to ``mb`` MB of UTF-8."""
    out, size = [], 0
    for doc in itertools.cycle(docs):
        if size >= mb * 1e6:
            return out
        out.append(doc)
        size += len(doc.encode("utf-8"))


def write_jsonl(path: Path, docs: list[str]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs)
    return path


def tokenizer_model(args, workdir: Path, docs: list[str]) -> tuple[Path, str]:
    if args.tokenizer_model:
        return Path(args.tokenizer_model), f"given: {args.tokenizer_model}"
    model = workdir / f"unigram{VOCAB // 1000}k.model"
    if not model.is_file():
        sample = write_jsonl(workdir / "train.jsonl", take_mb(docs, 20))
        train_tokenizer([sample], model.with_suffix(""), VOCAB, sample_cap=300_000,
                        allow_smaller_vocab=True)
    return model, (f"Unigram, {Tokenizer(model).vocab_size:,} pieces, trained on the same text "
                   "with the project's trainer settings")


def encode_limit(model: Path, docs: list[str], threads: int, repeats: int) -> dict:
    """SentencePiece's batched encode of every document in memory on ``threads`` threads."""
    tokenizer = Tokenizer(model)
    best, tokens = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        ids = tokenizer.encode_batch(docs, num_threads=threads)
        best = min(best, time.perf_counter() - start)
        tokens = sum(map(len, ids))
        del ids
    return {"threads": threads, "seconds": round(best, 3), "tokens": tokens,
            "tokens_per_s": round(tokens / best)}


def tree_memory(root: psutil.Process) -> tuple[int, int]:
    """(RSS, PSS) summed over ``root`` and its descendants, in bytes."""
    rss = pss = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss, pss = rss + info.rss, pss + info.pss
    return rss, pss


def tool_run(src: Path, prefix: Path, model: Path, workers: int) -> dict:
    """One run of the command-line tool: wall time from start to exit, its own seconds, and
    the peak memory of its process tree."""
    argv = [sys.executable, str(TOOL), "--input", str(src), "--output-prefix", str(prefix),
            "--tokenizer-model", str(model), "--append-eod", "--workers", str(workers),
            "--log-interval", "1e9", "--overwrite"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0, 0]
    watched = psutil.Process(proc.pid)

    def poll():
        while proc.poll() is None:
            peak[:] = map(max, peak, tree_memory(watched))
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    poller.join()
    if proc.returncode:
        raise SystemExit(f"tool failed ({proc.returncode}): {err.strip()}")
    return {"workers": workers, "input_mb": round(src.stat().st_size / 1e6, 1),
            "wall_seconds": round(wall, 3), "own_seconds": float(SECONDS.search(out)[1]),
            "peak_rss_mb": round(peak[0] / 2**20), "peak_pss_mb": round(peak[1] / 2**20)}


def best_of(repeats: int, *args) -> dict:
    runs = [tool_run(*args) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["wall_seconds"])
    return {**best, "wall_seconds_all_runs": [r["wall_seconds"] for r in runs]}


def same_tokens(prefix: Path, model: Path, docs: list[str]) -> bool:
    """The tool's ``.bin`` holds exactly the documents' tokens, each followed by end-of-text."""
    tokenizer = Tokenizer(model)
    written = np.fromfile(f"{prefix}_text_document.bin", dtype=token_dtype(tokenizer.vocab_size))
    position = 0
    for ids in tokenizer.encode_batch(docs):
        doc = np.asarray([*ids, tokenizer.eos_id], dtype=written.dtype)
        if not np.array_equal(written[position:position + len(doc)], doc):
            return False
        position += len(doc)
    return position == len(written)


def table(results: dict) -> list[str]:
    rows = ["| run | input MB | tokens/s | vs limit | seconds: wall (own clock) "
            "| peak RSS MB | peak PSS MB |", "|---|---|---|---|---|---|---|"]
    for w in results["workers"]:
        limit, run = results["limit"][str(w)], results["tool"][str(w)]
        tokens = limit["tokens"]
        rows.append(f"| SentencePiece batched encode, {w} thread(s), in memory (the limit) "
                    f"| {results['mb']} | {limit['tokens_per_s']:,} | 100% | {limit['seconds']} "
                    f"| | |")
        rows.append(f"| xm2-preprocess, {w} worker(s), start to exit | {run['input_mb']} "
                    f"| {round(tokens / run['wall_seconds']):,} "
                    f"| {limit['seconds'] / run['wall_seconds']:.0%} "
                    f"| {run['wall_seconds']} ({run['own_seconds']}) | {run['peak_rss_mb']} "
                    f"| {run['peak_pss_mb']} |")
        base = results["base"][str(w)]
        rows.append(f"| xm2-preprocess, {w} worker(s), first {results['base_mb']} MB "
                    f"| {base['input_mb']} | | | {base['wall_seconds']} ({base['own_seconds']}) "
                    f"| {base['peak_rss_mb']} | {base['peak_pss_mb']} |")
    return rows


def verdicts(results: dict) -> list[str]:
    lines = []
    for w in results["workers"]:
        limit, run, base = (results[k][str(w)] for k in ("limit", "tool", "base"))
        share = limit["seconds"] / run["wall_seconds"]
        lines.append(f"- {w} worker(s): {share:.0%} of the limit, start-up included "
                     f"(target >= {TARGET:.0%}: {'met' if share >= TARGET else 'NOT met'}); "
                     f"{limit['seconds'] / run['own_seconds']:.0%} by the tool's own clock; "
                     f"tokens identical to the limit's: {results['same_tokens'][str(w)]}")
        growth = run["peak_pss_mb"] / base["peak_pss_mb"] - 1
        lines.append(f"- {w} worker(s), {results['mb'] / results['base_mb']:.0f}x input: peak PSS "
                     f"{base['peak_pss_mb']} -> {run['peak_pss_mb']} MB ({growth:+.0%}; target "
                     f"< 20%: {'met' if abs(growth) < 0.2 else 'NOT met'})")
    return lines


BEGIN, END = "<!-- results: written by benchmarks/preprocess_bench.py -->", "<!-- /results -->"


def write_doc(path: Path, results: dict, command: str) -> None:
    """Replace the results block of ``path`` (the rest of the page is prose), or create it."""
    block = "\n".join([
        BEGIN, "", "```bash", command, "```", "",
        (f"Machine: {results['machine']}; load average at the start {results['load_average']} "
         f"(each figure is the best of the repeats). Text: {results['text']}, {results['mb']} "
         f"MB. Tokenizer: {results['tokenizer']}."), "",
        *table(results), "", "Targets:", *verdicts(results), "",
        "<details><summary>JSON</summary>", "", "```json", json.dumps(results, indent=2), "```",
        "", "</details>", "", END])
    old = path.read_text(encoding="utf-8") if path.is_file() else f"{BEGIN}{END}\n"
    head, _, rest = old.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(head + block + tail, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer-model")
    parser.add_argument("--mb", type=float, default=200)
    parser.add_argument("--base-mb", type=float, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", default="/tmp/xm2-preprocess-bench")
    parser.add_argument("--doc", default=str(REPO / "docs" / "benchmarks-preprocess.md"))
    args = parser.parse_args()

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    docs, source = corpus()
    model, tokenizer = tokenizer_model(args, workdir, docs)
    large_docs, base_docs = take_mb(docs, args.mb), take_mb(docs, args.base_mb)
    large, base = (write_jsonl(workdir / f"{name}.jsonl", d)
                   for name, d in (("large", large_docs), ("base", base_docs)))
    results = {"machine": f"{psutil.cpu_count()} cores, {platform.python_implementation()} "
                          f"{platform.python_version()}",
               "load_average": [round(x, 2) for x in os.getloadavg()], "text": source,
               "tokenizer": tokenizer, "mb": args.mb, "base_mb": args.base_mb,
               "workers": args.workers, "limit": {}, "tool": {}, "base": {}, "same_tokens": {}}
    for w in args.workers:
        before = encode_limit(model, large_docs, w, args.repeats)
        results["tool"][str(w)] = best_of(args.repeats, large, workdir / "out" / "large", model, w)
        results["base"][str(w)] = best_of(1, base, workdir / "out" / "base", model, w)
        after = encode_limit(model, large_docs, w, args.repeats)
        results["limit"][str(w)] = min(before, after, key=lambda r: r["seconds"])
        results["same_tokens"][str(w)] = same_tokens(workdir / "out" / "large", model, large_docs)
    print("\n".join(table(results) + [""] + verdicts(results)))
    command = "python benchmarks/preprocess_bench.py " + " ".join(sys.argv[1:])
    write_doc(Path(args.doc), results, command.strip())
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
