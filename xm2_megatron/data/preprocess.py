"""JSON Lines -> megatron-core indexed datasets (``.bin``/``.idx``), streaming, in parallel.

``preprocess(["a.jsonl.gz"], "out/web", "tok.model", append_eod=True, workers=4)`` writes
``out/web_text_document.bin/.idx`` (Megatron's ``<prefix>_<key>_document`` naming) and a
``.json`` sidecar naming the tokenizer, which ``check_tokenizer`` reads back.

The main process reads chunks of lines (``preprocess_input``), a pool of ``workers``
processes tokenizes them (``preprocess_workers``) and the main process writes them in input
order (``preprocess_output``), so the output is byte-identical for any worker count and memory
does not grow with the input. An interrupted run leaves no ``.bin``/``.idx`` pair behind.

Existing outputs are never replaced unless ``overwrite=True`` (``--overwrite``): without it a
run whose ``.bin``, ``.idx`` or ``.json`` already exists fails with one ``DataError`` line
before any work. Each run writes its own hidden temporary files
(``.<prefix>_<key>_document.bin.<random>.tmp``), so two runs on one prefix never share one; a
run killed with ``kill -9`` leaves its temporaries behind and later runs leave them alone
(a concurrent run's look the same): delete them once no run writes that prefix.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from xm2_megatron.atomic import disk_full_reported
from xm2_megatron.data.jsonl import DataError
from xm2_megatron.data.preprocess_input import CHUNK_BYTES, read_chunks
from xm2_megatron.data.indexed_writer import token_dtype
from xm2_megatron.data.preprocess_output import Outputs, refuse_existing
from xm2_megatron.data.preprocess_report import PreprocessSummary, Progress
from xm2_megatron.data.preprocess_workers import worker_pool
from xm2_megatron.data.tokenizer import Tokenizer

METADATA_FORMAT = "xm2-megatron indexed dataset 1"


def _check_inputs(paths: Sequence[str], tokenizer_model: str) -> None:
    for path in paths:
        if not os.path.isfile(path):
            what = "is not a file" if os.path.exists(path) else "does not exist"
            raise DataError(f"input file {path} {what}")
    if not os.path.isfile(tokenizer_model):
        raise DataError(f"tokenizer model {tokenizer_model} does not exist")


def _load_tokenizer(model_path: str) -> Tokenizer:
    try:
        return Tokenizer(model_path)
    except (OSError, RuntimeError) as e:
        raise DataError(f"cannot load tokenizer model {model_path}: {e}") from None


def _metadata(summary: PreprocessSummary, key: str, tokenizer: dict, dtype: type,
              append_eod: bool) -> dict:
    """The sidecar: enough to refuse a dataset made with another tokenizer, and to audit it."""
    return {
        "format": METADATA_FORMAT,
        "json_key": key,
        "dtype": np.dtype(dtype).name,
        "append_eod": append_eod,
        "tokenizer": tokenizer,
        "inputs": [{"path": os.path.abspath(path), "bytes": os.path.getsize(path)}
                   for path in summary.inputs],
        "documents": summary.documents,
        "tokens": summary.tokens[key],
        "skipped_lines": dict(sorted(summary.skipped.items())),
        "blank_lines": summary.blank_lines,
        "seconds": round(summary.seconds, 3),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def preprocess(
    inputs: Sequence[str],
    output_prefix: str,
    tokenizer_model: str,
    *,
    json_keys: Sequence[str] = ("text",),
    append_eod: bool = False,
    workers: int = 1,
    strict: bool = False,
    log_interval: float = 10.0,
    chunk_bytes: int = CHUNK_BYTES,
    overwrite: bool = False,
) -> PreprocessSummary:
    """Tokenize JSON Lines files into ``<output_prefix>_<key>_document.bin/.idx/.json``.

    Bad lines are skipped and counted by reason (``strict``: the first one raises
    ``DataError`` and nothing is written). The output does not depend on ``workers``.
    An existing output is a ``DataError`` before any work unless ``overwrite`` (then it is
    replaced by renames when the run succeeds). Temporary files of killed runs are left
    alone (see the module's docstring).
    """
    inputs, output_prefix = list(map(str, inputs)), str(output_prefix)
    tokenizer_model = str(tokenizer_model)
    _check_inputs(inputs, tokenizer_model)
    if not overwrite:
        refuse_existing(output_prefix, json_keys)
    tokenizer = _load_tokenizer(tokenizer_model)
    if append_eod and tokenizer.eos_id < 0:
        raise DataError(f"--append-eod: tokenizer model {tokenizer_model} has no end-of-text piece")
    identity = {"model": os.path.abspath(tokenizer_model), "sha256": tokenizer.sha256,
                "vocab_size": tokenizer.vocab_size, "eod_id": tokenizer.eos_id}
    summary = PreprocessSummary(inputs, list(json_keys), tokens=dict.fromkeys(json_keys, 0))
    offsets = [0, *itertools.accumulate(os.path.getsize(p) for p in inputs)]
    eod_id = tokenizer.eos_id if append_eod else None
    full = disk_full_reported(os.path.dirname(os.path.abspath(output_prefix)),
                              f"the datasets of {output_prefix} were not written (their "
                              "temporary files are removed)")
    dtype = token_dtype(tokenizer.vocab_size)
    with full, worker_pool(workers, tokenizer_model, json_keys, eod_id, dtype) as pool:
        outputs = Outputs(output_prefix, json_keys, dtype, overwrite)
        start = time.perf_counter()
        progress = Progress(offsets[-1], log_interval)
        try:
            for result in pool.in_order(read_chunks(inputs, chunk_bytes), 2 * workers + 2):
                summary.add(result, strict)
                outputs.add(result)
                progress.update(summary.documents, sum(summary.tokens.values()),
                                offsets[result.file_index] + result.position)
            if not summary.documents:
                bad = sum(summary.skipped.values())
                raise DataError(f"no documents in {', '.join(inputs)} ({bad:,} bad and "
                                f"{summary.blank_lines:,} blank lines); nothing was written")
            summary.seconds = time.perf_counter() - start
            summary.outputs = outputs.commit(
                [_metadata(summary, key, identity, dtype, append_eod) for key in json_keys])
        except BaseException:
            outputs.discard()
            raise
        finally:
            progress.close()
    return summary


def read_dataset_metadata(prefix: str) -> dict:
    """The sidecar of the dataset at ``prefix`` (``OUT/name_text_document``, no extension)."""
    path = prefix + ".json"
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist: dataset {prefix} was not made by "
                        "xm2-preprocess, so its tokenizer is unknown; re-run it") from None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read dataset metadata {path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
        raise DataError(f"{path} is not dataset metadata written by xm2-preprocess")
    return meta


def check_tokenizer(prefix: str, tokenizer_sha256: str) -> dict:
    """The dataset's metadata; ``DataError`` unless it was tokenized with the given tokenizer."""
    meta = read_dataset_metadata(prefix)
    made_with = meta["tokenizer"]
    if made_with["sha256"] != tokenizer_sha256:
        raise DataError(
            f"dataset {prefix} was tokenized with {made_with['model']} (sha256 "
            f"{made_with['sha256'][:12]}..., vocabulary {made_with['vocab_size']:,}), not with "
            f"this run's tokenizer (sha256 {tokenizer_sha256[:12]}...); re-run "
            "xm2-preprocess with the run's tokenizer")
    return meta
