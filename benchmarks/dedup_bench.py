"""Recall and false positives of MinHash LSH and SimHash near-duplicate removal on planted copies.

    python benchmarks/dedup_bench.py [--documents 400] [--exact-copies 30] [--near-copies 100]
        [--edits replace:0.01 ... delete:0.05 insert:0.05] [--jaccard 0.5 ... 0.9]
        [--hamming 3 4 5 6 7] [--num-perm 128] [--seed 0] [--repeats 2] [--memory-docs 50000]
        [--out runs/dedup_bench] [--doc docs/sft-and-dedup.md]

Text: the CPython 3.11 documentation (the ``python3.11-doc`` info file that
``scripts/fetch_demo_data.sh`` caches, cut into documents as the demo corpus does, else the
``python-docs`` lines of ``data/demo/english.jsonl``). Documents of at least ``--min-words``
words are drawn in a seeded order, keeping one only if the Jaccard similarity of its word
bigrams with every one kept before is below 0.5, until there are ``--documents`` of them: these
originals are unique, so removing one is a false positive. After them, in shuffled order, come
``--exact-copies`` copies of random originals and, for each edit, ``--near-copies`` copies of
random originals with that share of their words (at least one) replaced by, deleted, or
preceded by an inserted word, the words drawn from the whole text. Every setting runs
``dedup_files`` (one bucket) on the same file; recall is the share of each kind of copy
removed; docs/s are those of the fastest of ``--repeats`` runs (wall time of the whole
``dedup_files`` call, reading and writing included).

The whole corpus, unplanted, is then deduplicated by each setting: a removed document whose
bigram Jaccard similarity with every document kept before it is below 0.5 is counted as a
false positive there. ``--memory-docs`` random signatures measure each index's bytes per
document (tracemalloc). Prints the tables, writes ``results.json`` under ``--out`` and the
tables into the results block of ``--doc``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
from datasketch import LeanMinHash

from xm2_megatron.data.dedup import dedup_files, normalize, shingles
from xm2_megatron.data.demo_sources import SourceLocator, python_docs_records
from xm2_megatron.data.minhash import SCHEME, SEED, MinHasher, MinHashIndex
from xm2_megatron.data.simhash import SimHashIndex

REPO = Path(__file__).resolve().parent.parent
DEMO_ENGLISH = REPO / "data" / "demo" / "english.jsonl"
UNIQUE_BELOW = 0.5
EDITS = ["replace:0.01", "replace:0.02", "replace:0.05", "replace:0.1", "replace:0.2",
         "delete:0.05", "insert:0.05"]


# ----------------------------------------------------------------------------- the data


def python_docs() -> tuple[list[str], str]:
    """The CPython documentation's documents and where they came from."""
    info = SourceLocator().python_info()
    if info is not None:
        return ([r["text"] for r in python_docs_records(info)],
                f"the CPython 3.11 documentation ({info.name} of python3.11-doc)")
    if DEMO_ENGLISH.is_file():
        with open(DEMO_ENGLISH, encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
        return ([r["text"] for r in records if r["source"] == "python-docs"],
                "the python-docs lines of data/demo/english.jsonl")
    raise SystemExit("no CPython documentation: run bash scripts/fetch_demo_data.sh")


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def bigrams(text: str) -> set[str]:
    return shingles(normalize(text), 2)


def unique_originals(docs: list[str], n: int, min_words: int, rng: random.Random) -> list[str]:
    """``n`` documents of ``min_words`` or more, pairwise bigram Jaccard below UNIQUE_BELOW."""
    order = [d for d in docs if len(d.split()) >= min_words]
    rng.shuffle(order)
    kept, sets = [], []
    for doc in order:
        s = bigrams(doc)
        if all(jaccard(s, t) < UNIQUE_BELOW for t in sets):
            kept.append(doc)
            sets.append(s)
            if len(kept) == n:
                return kept
    raise SystemExit(f"only {len(kept)} unique documents of {min_words}+ words")


def edited(text: str, edit: str, vocab: list[str], rng: random.Random) -> str:
    """``text`` with a share of its words replaced, deleted, or preceded by inserted words."""
    kind, rate = edit.split(":")
    words = text.split()
    positions = set(rng.sample(range(len(words)), max(1, round(float(rate) * len(words)))))
    out = []
    for i, word in enumerate(words):
        if i not in positions:
            out.append(word)
        elif kind == "replace":
            out.append(next(w for w in iter(lambda: rng.choice(vocab), None) if w != word))
        elif kind == "insert":
            out += [rng.choice(vocab), word]
        elif kind != "delete":
            raise SystemExit(f"unknown edit {edit!r}: replace, delete or insert")
    return " ".join(out)


def planted(args, docs: list[str]) -> tuple[list[dict], dict]:
    """Originals, then shuffled copies: records with ``id`` and ``kind``; mean Jaccard by kind."""
    rng = random.Random(args.seed)
    originals = unique_originals(docs, args.documents, args.min_words, rng)
    vocab = [w for d in docs for w in d.split()]
    copies = [{"kind": "exact", "of": i, "text": originals[i]}
              for i in rng.sample(range(len(originals)), args.exact_copies)]
    for edit in args.edits:
        copies += [{"kind": edit, "of": i, "text": edited(originals[i], edit, vocab, rng)}
                   for i in rng.sample(range(len(originals)), args.near_copies)]
    rng.shuffle(copies)
    records = [{"kind": "original", "of": i, "text": t} for i, t in enumerate(originals)] + copies
    for i, r in enumerate(records):
        r["id"] = i
    similarity = {}
    for edit in args.edits:
        pairs = [(bigrams(r["text"]), bigrams(originals[r["of"]])) for r in copies
                 if r["kind"] == edit]
        similarity[edit] = round(float(np.mean([jaccard(a, b) for a, b in pairs])), 3)
    return records, similarity


def write_jsonl(path: Path, records: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return path


# ----------------------------------------------------------------------------- measuring


def settings(args) -> list[tuple[str, dict]]:
    return ([(f"minhash J>={t}", {"method": "minhash", "jaccard_threshold": t,
                                  "num_perm": args.num_perm}) for t in args.jaccard]
            + [(f"simhash k={k}", {"method": "simhash", "hamming_threshold": k})
               for k in args.hamming])


def run(src: Path, out: Path, options: dict, repeats: int) -> tuple[dict, set[int]]:
    """``dedup_files`` runs: the fastest one's report (the machine is shared) and the ids kept."""
    reports = [dedup_files([src], out, **options) for _ in range(repeats)]
    with open(out, encoding="utf-8") as f:
        return (max(reports, key=lambda r: r["documents_per_second"]),
                {json.loads(line)["id"] for line in f})


def planted_row(records: list[dict], report: dict, kept: set[int], edits: list[str]) -> dict:
    removed = {kind: 0 for kind in ["original", "exact", *edits]}
    total = dict.fromkeys(removed, 0)
    for r in records:
        total[r["kind"]] += 1
        removed[r["kind"]] += r["id"] not in kept
    return {"exact_found": removed["exact"], "exact_copies": total["exact"],
            "recall": {e: round(removed[e] / total[e], 3) for e in edits},
            "originals_removed": removed["original"], "originals": total["original"],
            "docs_per_s": round(report["documents_per_second"]),
            "bands_rows": [report["settings"].get("lsh_bands"), report["settings"].get("lsh_rows")]}


def corpus_row(docs: list[str], report: dict, kept: set[int]) -> dict:
    """Near duplicates removed from the unplanted corpus, and those with no kept document
    before them at bigram Jaccard >= UNIQUE_BELOW (false positives)."""
    sets = [bigrams(d) for d in docs]
    kept_before: list[int] = []
    false = 0
    for i, s in enumerate(sets):
        if i in kept:
            kept_before.append(i)
        elif all(jaccard(s, sets[j]) < UNIQUE_BELOW for j in kept_before):
            false += 1
    return {"documents": len(docs), "near_removed": report["near_duplicates"],
            "false_positives": false, "docs_per_s": round(report["documents_per_second"])}


def index_bytes_per_doc(n: int, num_perm: int, thresholds: list[float],
                        hammings: list[int]) -> dict:
    """tracemalloc bytes per document of each index holding ``n`` random signatures."""
    rng = np.random.default_rng(0)
    hasher = MinHasher(num_perm)
    values = rng.integers(0, 2**32, size=(n, num_perm), dtype=np.uint32)
    signatures = [hasher.decode(hasher.encode(LeanMinHash(seed=SEED, hashvalues=v,
                                                          scheme=SCHEME))) for v in values]
    result = {}
    for t in thresholds:
        tracemalloc.start()
        index = MinHashIndex(t, num_perm, keep_signatures=False)
        for i, s in enumerate(signatures):
            index.add_signature(i, s)
        result[f"minhash J>={t}"] = round(tracemalloc.get_traced_memory()[0] / n)
        tracemalloc.stop()
        del index
    fps = [int(x) for x in rng.integers(0, 2**63, size=n, dtype=np.int64)]
    for k in hammings:
        tracemalloc.start()
        simhash_index = SimHashIndex(k)
        for fp in fps:
            simhash_index.add(fp)
        result[f"simhash k={k}"] = round(tracemalloc.get_traced_memory()[0] / n)
        tracemalloc.stop()
        del simhash_index
    return result


# ----------------------------------------------------------------------------- report


def tables(results: dict) -> list[str]:
    edits = results["edits"]
    head = " / ".join(f"{e.split(':')[0]} {float(e.split(':')[1]):.0%}" for e in edits)
    mean = " / ".join(f"{results['copy_jaccard'][e]:.2f}" for e in edits)
    rows = [f"| setting | bands x rows | exact found | recall: {head} "
            f"| originals removed | docs/s | corpus: near removed | corpus: false "
            f"positives | corpus docs/s |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| (mean bigram Jaccard of copy and original) | | | {mean} | | | | | |"]
    for name, p in results["planted"].items():
        c = results["corpus"][name]
        bands = "x".join(map(str, p["bands_rows"])) if p["bands_rows"][0] else ""
        recall = " / ".join(f"{p['recall'][e]:.2f}" for e in edits)
        rows.append(f"| {name} | {bands} | {p['exact_found']}/{p['exact_copies']} | {recall} "
                    f"| {p['originals_removed']}/{p['originals']} | {p['docs_per_s']:,} "
                    f"| {c['near_removed']} | {c['false_positives']} | {c['docs_per_s']:,} |")
    if results.get("index_bytes_per_doc"):
        memory = ", ".join(f"{k} {v:,}" for k, v in results["index_bytes_per_doc"].items())
        rows += ["", textwrap.fill(f"Index memory, bytes per document ({results['memory_docs']:,} "
                                   f"random signatures, tracemalloc): {memory}.", 95)]
    return rows


BEGIN, END = "<!-- results: written by benchmarks/dedup_bench.py -->", "<!-- /results -->"


def write_doc(path: Path, results: dict, command: str) -> None:
    """Replace the results block of ``path`` (the rest of the page is prose)."""
    setup = (f"Machine: {results['machine']}, load average {results['load_average']} at the "
             f"start (shared: docs/s, the best of {results['repeats']} runs, are rough). Text: "
             f"{results['text']}. Planted file: {results['planted_documents']:,} documents "
             f"({results['originals']} unique originals, then {results['exact_copies']} exact "
             f"copies and {results['near_copies']} near copies per edit, shuffled); corpus: all "
             f"{results['corpus_documents']:,} documents, unplanted. Replaced and inserted words "
             f"are drawn from the whole text.")
    block = "\n".join([
        BEGIN, "", "```bash", command, "```", "", textwrap.fill(setup, 95), "",
        *tables(results), "", END])
    old = path.read_text(encoding="utf-8")
    head, found, rest = old.partition(BEGIN)
    if not found:
        raise SystemExit(f"{path} has no line {BEGIN}")
    path.write_text(head + block + rest.partition(END)[2], encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=400)
    parser.add_argument("--min-words", type=int, default=50)
    parser.add_argument("--exact-copies", type=int, default=30)
    parser.add_argument("--near-copies", type=int, default=100)
    parser.add_argument("--edits", nargs="+", default=EDITS, help="KIND:SHARE, KIND one of "
                        "replace, delete, insert")
    parser.add_argument("--jaccard", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9])
    parser.add_argument("--hamming", type=int, nargs="+", default=[3, 4, 5, 6, 7])
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting (best docs/s)")
    parser.add_argument("--memory-docs", type=int, default=50_000, help="0: skip")
    parser.add_argument("--out", default=str(REPO / "runs" / "dedup_bench"))
    parser.add_argument("--doc", default=str(REPO / "docs" / "sft-and-dedup.md"),
                        help="'' : do not write")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    docs, source = python_docs()
    records, similarity = planted(args, docs)
    planted_src = write_jsonl(out / "planted.jsonl", records)
    corpus_src = write_jsonl(out / "corpus.jsonl", [{"id": i, "text": d}
                                                    for i, d in enumerate(docs)])
    results = {
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()], "text": source,
        "seed": args.seed, "repeats": args.repeats, "originals": args.documents,
        "exact_copies": args.exact_copies,
        "near_copies": args.near_copies, "edits": args.edits, "num_perm": args.num_perm,
        "planted_documents": len(records), "corpus_documents": len(docs),
        "copy_jaccard": similarity, "planted": {}, "corpus": {},
    }
    start = time.perf_counter()
    for name, options in settings(args):
        report, kept = run(planted_src, out / "planted.out.jsonl", options, args.repeats)
        results["planted"][name] = planted_row(records, report, kept, args.edits)
        report, kept = run(corpus_src, out / "corpus.out.jsonl", options, args.repeats)
        results["corpus"][name] = corpus_row(docs, report, kept)
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    if args.memory_docs:
        results["memory_docs"] = args.memory_docs
        results["index_bytes_per_doc"] = index_bytes_per_doc(
            args.memory_docs, args.num_perm, args.jaccard, args.hamming)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n".join(tables(results)))
    print(f"wrote {out / 'results.json'}")
    if args.doc:
        command = "python benchmarks/dedup_bench.py " + " ".join(sys.argv[1:])
        write_doc(Path(args.doc), results, command.strip())
        print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
