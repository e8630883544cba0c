"""Preprocessing in shards (one job per group of input files) and the merge of their datasets.

Shard ``i`` of ``n`` tokenizes the ``i``-th contiguous group of the input files into
``<prefix>-shard<i>-of-<n>_<key>_document``; ``merge_shards`` concatenates the shards in
order with megatron-core's ``IndexedDatasetBuilder.add_index`` into ``<prefix>_<key>_document``,
whose ``.bin``/``.idx`` are then byte-identical to one run over all the inputs in the same order,
and writes the sidecar of that run (inputs, counts, tokenizer). The merge refuses shards that
are missing, made with different tokenizers or settings, or that do not cover the given inputs.
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from xm2_megatron.data.jsonl import DataError
from xm2_megatron.data.preprocess import read_dataset_metadata
from xm2_megatron.data.preprocess_output import Outputs, dataset_prefix, refuse_existing

SHARD_NAME = re.compile(r"-shard(\d{5})-of-(\d{5})$")
SAME_IN_EVERY_SHARD = ("format", "json_key", "dtype", "append_eod")


def parse_shard(text: str) -> tuple[int, int]:
    """``"3/64"`` -> ``(3, 64)``: shard index (from 0) and number of shards."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not int(match[1]) < int(match[2]):
        raise DataError(f"--shard {text}: expected INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 3/64")
    return int(match[1]), int(match[2])


def shard_prefix(output_prefix: str, index: int, count: int) -> str:
    """The output prefix of shard ``index`` of ``count``: ``web`` -> ``web-shard00003-of-00064``."""
    return f"{output_prefix}-shard{index:05d}-of-{count:05d}"


def shard_inputs(inputs: Sequence[str], index: int, count: int) -> list[str]:
    """The contiguous group of ``inputs`` that shard ``index`` of ``count`` tokenizes (groups
    differ in size by at most one file, earlier groups being the larger)."""
    if count > len(inputs):
        raise DataError(f"{count} shards of {len(inputs)} input file(s): every shard needs at "
                        "least one file (use at most as many shards as files)")
    base, extra = divmod(len(inputs), count)
    start = index * base + min(index, extra)
    return list(inputs[start:start + base + (index < extra)])


def find_shards(output_prefix: str, key: str) -> list[str]:
    """The dataset prefixes of every shard of ``output_prefix`` for ``key``, in order;
    ``DataError`` when there are none, when some are missing or when two shard counts meet."""
    pattern = glob.escape(output_prefix) + "-shard*-of-*_" + glob.escape(key) + "_document.idx"
    found: dict[int, set[int]] = {}
    suffix = f"_{key}_document.idx"
    for path in glob.glob(pattern):
        match = SHARD_NAME.search(path[:-len(suffix)])
        if match:
            found.setdefault(int(match[2]), set()).add(int(match[1]))
    if not found:
        raise DataError(f"no shards of {output_prefix} for key '{key}' "
                        f"({shard_prefix(output_prefix, 0, 1)}_{key}_document.idx and the like)")
    if len(found) > 1:
        raise DataError(f"shards of {output_prefix} with different shard counts "
                        f"({', '.join(map(str, sorted(found)))}): remove the stale ones")
    (count, indices), = found.items()
    if missing := sorted(set(range(count)) - indices):
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise DataError(f"{len(missing)} of {count} shards of {output_prefix} are missing "
                        f"(index {shown}): did every array task finish?")
    return [dataset_prefix(shard_prefix(output_prefix, i, count), key) for i in range(count)]


def _read_sidecars(prefixes: Sequence[str]) -> list[dict]:
    sidecars = [read_dataset_metadata(prefix) for prefix in prefixes]
    first = sidecars[0]
    for prefix, meta in zip(prefixes[1:], sidecars[1:]):
        if meta["tokenizer"]["sha256"] != first["tokenizer"]["sha256"]:
            raise DataError(f"shard {prefix} was tokenized with {meta['tokenizer']['model']}, "
                            f"shard {prefixes[0]} with {first['tokenizer']['model']} "
                            "(different SHA-256): re-run it with the same tokenizer")
        for field in SAME_IN_EVERY_SHARD:
            if meta.get(field) != first.get(field):
                raise DataError(f"shard {prefix} has {field}={meta.get(field)!r}, shard "
                                f"{prefixes[0]} {field}={first.get(field)!r}")
    return sidecars


def _check_coverage(sidecars: Sequence[dict], inputs: Sequence[str],
                    tokenizer_sha256: str | None) -> None:
    """The shards' inputs, in shard order, are exactly ``inputs`` (and their tokenizer the
    given one): a stale or partial shard set cannot pass for the dataset of these inputs."""
    recorded = [entry["path"] for meta in sidecars for entry in meta["inputs"]]
    expected = [os.path.abspath(path) for path in inputs]
    if recorded != expected:
        first = next((i for i, (a, b) in enumerate(zip(recorded, expected)) if a != b),
                     min(len(recorded), len(expected)))
        have = recorded[first] if first < len(recorded) else "(no more files)"
        want = expected[first] if first < len(expected) else "(no more files)"
        raise DataError(f"the shards do not cover --input: input {first + 1} of the shards is "
                        f"{have}, of --input {want}")
    if tokenizer_sha256 and sidecars[0]["tokenizer"]["sha256"] != tokenizer_sha256:
        raise DataError(f"the shards were tokenized with {sidecars[0]['tokenizer']['model']}, "
                        "not with --tokenizer-model (different SHA-256)")


def _merged_metadata(sidecars: Sequence[dict], prefixes: Sequence[str]) -> dict:
    """The sidecar one run over every shard's inputs would have written."""
    skipped: Counter = Counter()
    for meta in sidecars:
        skipped.update(meta["skipped_lines"])
    merged = {field: sidecars[0][field] for field in (*SAME_IN_EVERY_SHARD, "tokenizer")}
    merged.update(
        inputs=[entry for meta in sidecars for entry in meta["inputs"]],
        documents=sum(meta["documents"] for meta in sidecars),
        tokens=sum(meta["tokens"] for meta in sidecars),
        skipped_lines=dict(sorted(skipped.items())),
        blank_lines=sum(meta["blank_lines"] for meta in sidecars),
        seconds=round(sum(meta["seconds"] for meta in sidecars), 3),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        merged_from=[os.path.abspath(prefix) for prefix in prefixes],
    )
    return merged


def merge_shards(output_prefix: str, json_keys: Sequence[str] = ("text",), *,
                 inputs: Sequence[str] | None = None, tokenizer_sha256: str | None = None,
                 overwrite: bool = False) -> list[str]:
    """Concatenate the shards of ``output_prefix`` into its datasets (one per key); the files
    written. With ``inputs`` (and ``tokenizer_sha256``) the shards must cover exactly those
    files in that order (and use that tokenizer). Nothing is written on any error."""
    output_prefix = str(output_prefix)
    if not overwrite:
        refuse_existing(output_prefix, json_keys)
    shards = {key: find_shards(output_prefix, key) for key in json_keys}
    sidecars = {key: _read_sidecars(prefixes) for key, prefixes in shards.items()}
    if inputs is not None:
        for key in json_keys:
            _check_coverage(sidecars[key], inputs, tokenizer_sha256)
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    dtype = np.dtype(sidecars[json_keys[0]][0]["dtype"]).type
    outputs = Outputs(output_prefix, json_keys, dtype, overwrite, writer=IndexedDatasetBuilder)
    try:
        for builder, key in zip(outputs.builders, json_keys):
            for prefix in shards[key]:
                builder.add_index(prefix)
        return outputs.commit([_merged_metadata(sidecars[key], shards[key]) for key in json_keys])
    except BaseException:
        outputs.discard()
        raise
