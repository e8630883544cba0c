"""Decontamination: which training documents contain an evaluation item, and cleaned copies of
JSONL files without them.

``ContaminationIndex`` holds the items (``Item``: set, id, text) and finds, for one document,
the items it contains by three detectors: ``exact`` (the document's normalised text is the
item's, ``dedup.exact_hash``), ``ngram`` (at least ``containment`` of the item's distinct word
n-grams, hashed with xxh3, occur in the document: GPT-3's and OLMo's 13-gram rule) and
``minhash`` (the whole document is a near duplicate of the item, MinHash LSH). Items of fewer
than ``ngram`` words are cut into ``min_words``-grams, and items of fewer than ``min_words``
words are matched exactly only. ``decontaminate_files`` writes the cleaned copies and
``decontamination.json``. docs/sft-and-dedup.md."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import numpy as np
import xxhash

from xm2_megatron.data.dedup import exact_hash, normalize, shingles
from xm2_megatron.data.jsonl import (
    DataError,
    atomic_output,
    output_dir as existing_dir,
    read_jsonl,
    where,
    write_json,
)
from xm2_megatron.data.minhash import DEFAULT_NUM_PERM, MinHashIndex, check_settings

DEFAULT_NGRAM = 13
DEFAULT_CONTAINMENT = 0.5
DEFAULT_MIN_WORDS = 8  # GPT-3's shortest n-gram; shorter items: exact matches only
DEFAULT_JACCARD_THRESHOLD = 0.5  # recall first (docs/sft-and-dedup.md: MinHash measured)
MINHASH_SHINGLE_SIZE = 2  # word bigrams, as dedup's near duplicates
DETECTORS = ("exact", "ngram", "minhash")  # a hit names the first that found the item
REPORT_NAME = "decontamination.json"


class Item(NamedTuple):
    """One evaluation item as the text a leak into training data would contain."""

    set: str
    id: str
    text: str


class Hit(NamedTuple):
    item: int  # index into ``ContaminationIndex.items``
    detector: str


def _hashes(grams: Iterable[str]) -> np.ndarray:
    return np.fromiter((xxhash.xxh3_64_intdigest(g.encode("utf-8")) for g in grams),
                       dtype=np.uint64)


def item_grams(normalized: str, ngram: int, min_words: int) -> set[str]:
    """An item's distinct word ``ngram``-grams; for an item of ``min_words`` to ``ngram`` - 1
    words, its ``min_words``-grams; a shorter item has none."""
    grams = shingles(normalized, ngram)
    if len(grams) == 1:
        words = len(next(iter(grams)).split(" "))
        if words < ngram:
            return shingles(normalized, min_words) if words >= min_words else set()
    return grams


class _GramTable:
    """Gram hash -> the items holding it, as sorted unique hashes and a CSR list of items."""

    def __init__(self, hashes: np.ndarray, items: np.ndarray):
        order = np.argsort(hashes, kind="stable")
        self.items = items[order]
        self.keys, starts = np.unique(hashes[order], return_index=True)
        self.offsets = np.append(starts, len(hashes))

    def count(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(items, how many of ``hashes`` each holds) for distinct ``hashes``."""
        if not len(self.keys) or not len(hashes):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        hashes = np.sort(hashes)  # sorted queries search far faster
        pos = np.minimum(np.searchsorted(self.keys, hashes), len(self.keys) - 1)
        pos = pos[self.keys[pos] == hashes]
        starts, lens = self.offsets[pos], self.offsets[pos + 1] - self.offsets[pos]
        first = np.repeat(starts - (np.cumsum(lens) - lens), lens)
        return np.unique(self.items[first + np.arange(lens.sum())], return_counts=True)


class _NearIndex:
    """Whole-document near duplicates of items: ``minhash.MinHashIndex`` over word bigrams;
    a candidate counts when its estimated Jaccard similarity reaches the threshold."""

    def __init__(self, threshold: float, num_perm: int):
        check_settings(threshold, num_perm)
        self.threshold = threshold
        self.index = MinHashIndex(threshold, num_perm, MINHASH_SHINGLE_SIZE)
        self.max_size = 0

    def add(self, key: int, features: set[str]) -> None:
        self.index.add_signature(key, self.index.hasher.of_shingles(features))
        self.max_size = max(self.max_size, len(features))

    def find(self, features: set[str]) -> list[int]:
        # Jaccard <= |smaller| / |larger|: a document far larger than every item matches none
        if not len(self.index) or not features or len(features) * self.threshold > self.max_size:
            return []
        signature = self.index.hasher.of_shingles(features)
        return sorted(key for key, _ in self.index.query(signature, self.threshold))


class ContaminationIndex:
    """The evaluation items, indexed for the three detectors (``find``)."""

    def __init__(self, items: Iterable[Item], *, ngram: int = DEFAULT_NGRAM,
                 containment: float = DEFAULT_CONTAINMENT, min_words: int = DEFAULT_MIN_WORDS,
                 jaccard_threshold: float | None = DEFAULT_JACCARD_THRESHOLD,
                 num_perm: int = DEFAULT_NUM_PERM):
        if ngram < 1:
            raise DataError(f"--ngram={ngram} must be at least 1")
        if not 0 < containment <= 1:
            raise DataError(f"--containment={containment} must be in (0, 1]")
        start = time.perf_counter()
        self.items = list(items)
        self.ngram, self.containment = ngram, containment
        self.min_words = min(min_words, ngram)
        self.jaccard_threshold = jaccard_threshold
        self.num_perm = num_perm
        self.exact: dict[int, list[int]] = {}
        self.near = None if jaccard_threshold is None else _NearIndex(jaccard_threshold, num_perm)
        self.lengths: set[int] = set()  # gram lengths in use: ngram, min_words
        self.exact_only = np.zeros(len(self.items), dtype=bool)
        sizes, hashes, owners = np.zeros(len(self.items), np.int64), [], []
        for i, item in enumerate(self.items):
            normalized = normalize(item.text)
            if normalized:
                self.exact.setdefault(exact_hash(normalized), []).append(i)
            grams = item_grams(normalized, ngram, self.min_words)
            if not grams:
                self.exact_only[i] = True
                continue
            self.lengths.add(len(next(iter(grams)).split(" ")))
            sizes[i] = len(grams)
            hashes.append(_hashes(grams))
            owners.append(np.full(len(grams), i, dtype=np.int64))
            if self.near is not None:
                self.near.add(i, shingles(normalized, MINHASH_SHINGLE_SIZE))
        self.sizes = sizes
        self.grams = _GramTable(np.concatenate(hashes) if hashes else np.empty(0, np.uint64),
                                np.concatenate(owners) if owners else np.empty(0, np.int64))
        self.seconds = time.perf_counter() - start

    def sets(self) -> dict[str, dict[str, int]]:
        """Per set (in first-item order): its items, and how many are matched exactly only."""
        out: dict[str, dict[str, int]] = {}
        for item, short in zip(self.items, self.exact_only):
            counts = out.setdefault(item.set, {"items": 0, "exact_only_items": 0})
            counts["items"] += 1
            counts["exact_only_items"] += int(short)
        return out

    def settings(self) -> dict:
        return {"ngram": self.ngram, "containment": self.containment,
                "min_words": self.min_words, "jaccard_threshold": self.jaccard_threshold,
                "num_perm": self.num_perm, "minhash_shingle_size": MINHASH_SHINGLE_SIZE,
                "normalization": "NFKC+whitespace", "hash": "xxh3"}

    def _document_grams(self, normalized: str) -> np.ndarray:
        """The distinct hashes of the document's grams of every length items use."""
        parts = [_hashes(shingles(normalized, n)) for n in sorted(self.lengths, reverse=True)]
        if not parts:
            return np.empty(0, np.uint64)
        doc = np.concatenate(parts)
        # one ngram-gram: the document is shorter than ngram words and its shorter grams may
        # repeat that whole text
        return np.unique(doc) if len(parts[0]) == 1 else doc

    def find(self, text: str) -> list[Hit]:
        """The items ``text`` contains, by item index, each with the first detector that found
        it (``DETECTORS`` order)."""
        normalized = normalize(text)
        found: dict[int, str] = {}
        for i in self.exact.get(exact_hash(normalized), ()) if normalized else ():
            found[i] = "exact"
        items, counts = self.grams.count(self._document_grams(normalized))
        for i in items[counts >= self.containment * self.sizes[items]].tolist():
            found.setdefault(i, "ngram")
        if self.near is not None:
            for i in self.near.find(shingles(normalized, MINHASH_SHINGLE_SIZE)):
                found.setdefault(i, "minhash")
        return [Hit(i, found[i]) for i in sorted(found)]


def document_text(line, json_key: str | Sequence[str]) -> str:
    """The record's ``json_key`` field, or its fields joined by newlines; ``DataError`` naming
    the line if one is missing or not a string."""
    keys = [json_key] if isinstance(json_key, str) else list(json_key)
    parts = []
    for key in keys:
        value = line.record.get(key)
        if not isinstance(value, str):
            problem = "has no" if key not in line.record else "has a non-string"
            raise DataError(f"{where(line.path, line.lineno)}: record {problem} {key!r} field")
        parts.append(value)
    return "\n".join(parts)


def output_paths(inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike
                 ) -> list[Path]:
    """Where the cleaned copies of ``inputs`` go (same names in ``output_dir``); ``DataError``
    if an input is missing, the folder does not exist, two names collide or a copy would
    replace its input."""
    out_dir = Path(output_dir)
    existing_dir(out_dir / REPORT_NAME)
    outputs = [out_dir / Path(p).name for p in inputs]
    names = [p.name for p in outputs]
    for path, out in zip(map(str, inputs), outputs):
        if not os.path.isfile(path):
            raise DataError(f"input file {path} does not exist")
        if names.count(out.name) > 1:
            raise DataError(f"two inputs are named {out.name}: their cleaned copies would "
                            f"collide in {out_dir}")
        if out.exists() and out.samefile(path):
            raise DataError(f"the cleaned copy of {path} would replace it: give another "
                            "--output-dir")
    return outputs


def decontaminate_files(inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike,
                        index: ContaminationIndex, *, json_key: str | Sequence[str] = "text",
                        report_only: bool = False) -> dict:
    """Check every document of ``inputs`` (JSONL) against ``index``; write to ``output_dir`` a
    copy of each input without the documents that contain an item (other lines unchanged, in
    order; none with ``report_only``) and ``decontamination.json``; return that report. The
    copies appear together only when every input has been read."""
    inputs = [str(p) for p in inputs]
    out_dir = Path(output_dir)
    outputs = output_paths(inputs, out_dir)
    start = time.perf_counter()
    files, hits = [], []
    with ExitStack() as stack:
        for path, output in zip(inputs, outputs):
            out = None if report_only else stack.enter_context(atomic_output(output))
            documents = removed = 0
            for line in read_jsonl([path]):
                found = index.find(document_text(line, json_key))
                documents += 1
                if found:
                    removed += 1
                    hits += [{"input": path, "line": line.lineno, "set": index.items[h.item].set,
                              "item": index.items[h.item].id, "detector": h.detector}
                             for h in found]
                elif out is not None:
                    out.write(line.raw + "\n")
            files.append({"input": path, "output": None if report_only else str(output),
                          "documents": documents, "removed": removed})
    seconds = time.perf_counter() - start
    sets = index.sets()
    for name, counts in sets.items():
        mine = [h for h in hits if h["set"] == name]
        counts["found"] = len({h["item"] for h in mine})
        counts["documents"] = len({(h["input"], h["line"]) for h in mine})
    documents = sum(f["documents"] for f in files)
    report = {
        "inputs": inputs,
        "output_dir": str(out_dir),
        "report_only": report_only,
        "settings": {"json_key": json_key, **index.settings()},
        "sets": sets,
        "files": files,
        "documents": documents,
        "removed": sum(f["removed"] for f in files),
        "hits_by_detector": {d: sum(h["detector"] == d for h in hits) for d in DETECTORS},
        "hits": hits,
        "index_seconds": round(index.seconds, 3),
        "seconds": round(seconds, 3),
        "documents_per_second": round(documents / seconds, 1) if seconds > 0 else None,
    }
    write_json(out_dir / REPORT_NAME, report)
    return report


def summary(report: dict) -> str:
    """One paragraph: documents checked and removed, hits by detector, the sets found."""
    sets = report["sets"]
    items = sum(s["items"] for s in sets.values())
    by = report["hits_by_detector"]
    found = [f"{name} {s['found']:,}/{s['items']:,} items in {s['documents']:,} documents"
             for name, s in sets.items() if s["found"]]
    overlap = ("overlap: " + "; ".join(found)) if found else "no overlap with any set"
    action = "would remove" if report["report_only"] else "removed"
    return (f"{report['documents']:,} documents in {len(report['files'])} file(s) checked "
            f"against {items:,} items of {len(sets)} evaluation set(s): {action} "
            f"{report['removed']:,} ({by['exact']:,} exact, {by['ngram']:,} "
            f"{report['settings']['ngram']}-gram, {by['minhash']:,} MinHash hits); {overlap} "
            f"({report['seconds']:.1f} s, index {report['index_seconds']:.1f} s). "
            f"report: {Path(report['output_dir']) / REPORT_NAME}")
