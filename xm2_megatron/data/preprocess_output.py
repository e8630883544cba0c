"""The output side of ``preprocess``: one indexed-dataset writer per JSON key
(``indexed_writer``, or megatron-core's builder for a merge), writing under unique hidden
temporary names, committed (renamed) only when the run succeeds.

Temporary files are ``.<prefix>_<key>_document.bin.<random>.tmp`` (and ``.idx``) beside the
outputs (``atomic.temporary_name``): two runs on one prefix never write the same file, and a
run killed with ``kill -9`` leaves only hidden ``*.tmp`` files, never a ``.bin``/``.idx``.
Those leftovers are *not* removed by later runs (a concurrent run's files look the same);
``leftover_temporaries`` lists them so the command line can say so.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from xm2_megatron import atomic
from xm2_megatron.data.indexed_writer import IndexedDatasetWriter
from xm2_megatron.data.jsonl import DataError, write_json
from xm2_megatron.data.preprocess_workers import ChunkResult

EXTENSIONS = (".bin", ".idx", ".json")  # the files of one dataset


def dataset_prefix(output_prefix: str, key: str) -> str:
    """``OUT/name`` + ``text`` -> ``OUT/name_text_document``, Megatron's naming."""
    return f"{output_prefix}_{key}_document"


def output_files(output_prefix: str, keys: Sequence[str]) -> list[str]:
    """Every file a run writes: ``.bin``, ``.idx`` and ``.json`` per key."""
    return [dataset_prefix(output_prefix, key) + ext for key in keys for ext in EXTENSIONS]


def refuse_existing(output_prefix: str, keys: Sequence[str]) -> None:
    """``DataError`` (one line) if any output of this prefix exists already."""
    existing = [path for path in output_files(output_prefix, keys) if os.path.lexists(path)]
    if existing:
        one = len(existing) == 1
        raise DataError(f"{', '.join(existing)} already exist{'s' if one else ''}: pass "
                        f"--overwrite to replace {'it' if one else 'them'}, or choose another "
                        "--output-prefix")


def leftover_temporaries(output_prefix: str, keys: Sequence[str]) -> list[str]:
    """Hidden temporary files beside this prefix's outputs: of killed runs, or of runs still
    writing (they cannot be told apart, so nothing removes them automatically)."""
    found = []
    for key in keys:
        for ext in (".bin", ".idx"):
            final = dataset_prefix(output_prefix, key) + ext
            pattern = os.path.join(glob.escape(os.path.dirname(final)),
                                   f".{glob.escape(os.path.basename(final))}.*.tmp")
            found.extend(glob.glob(pattern))
    return sorted(found)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except (FileNotFoundError, NotADirectoryError):  # never made, or its folder never could be
        pass


class Outputs:
    """One writer per JSON key (``writer(bin_path, dtype=...)``: ``IndexedDatasetWriter``, or
    megatron-core's ``IndexedDatasetBuilder``), writing temporary files until ``commit``.

    Without ``overwrite``, ``commit`` checks again that no output exists (another run may
    have finished meanwhile) and raises ``DataError`` rather than replace it.
    """

    def __init__(self, output_prefix: str, keys: Sequence[str], dtype: type,
                 overwrite: bool = False, writer=IndexedDatasetWriter):
        self.output_prefix, self.keys, self.overwrite = output_prefix, list(keys), overwrite
        self.prefixes = [dataset_prefix(output_prefix, key) for key in keys]
        self.tmp_bin = [str(atomic.temporary_name(prefix + ".bin")) for prefix in self.prefixes]
        self.tmp_idx = [str(atomic.temporary_name(prefix + ".idx")) for prefix in self.prefixes]
        self.builders = []
        self.directory = os.path.dirname(output_prefix) or "."
        try:
            with self._writing():
                os.makedirs(self.directory, exist_ok=True)
                for tmp in self.tmp_bin:
                    self.builders.append(writer(tmp, dtype=dtype))
        except BaseException:
            self.discard()
            raise

    def temporaries(self) -> list[str]:
        """This run's own temporary files (some may not exist yet)."""
        return [*self.tmp_bin, *self.tmp_idx]

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """An ``OSError`` (no permission, disk full) becomes a one-line ``DataError``."""
        try:
            yield
        except OSError as e:
            raise DataError(f"cannot write to output directory {self.directory}: "
                            f"{e.strerror or e}") from None

    def add(self, result: ChunkResult) -> None:
        with self._writing():
            for builder, tokens, lengths in zip(self.builders, result.tokens, result.lengths):
                builder.add_documents(tokens, lengths)

    def commit(self, metadata: Sequence[dict]) -> list[str]:
        """Finalize, then move each dataset into place: ``.bin``, ``.json``, ``.idx`` last.

        An existing ``.idx`` (``overwrite``) is removed first, so no moment shows a new
        ``.bin`` beside an old ``.idx``; the pair looks complete only once the new ``.idx``
        arrives.
        """
        with self._writing():
            for tmp_idx, builder in zip(self.tmp_idx, self.builders):
                builder.finalize(tmp_idx)
            if not self.overwrite:
                refuse_existing(self.output_prefix, self.keys)
            for prefix, tmp_bin, tmp_idx, meta in zip(self.prefixes, self.tmp_bin, self.tmp_idx,
                                                      metadata):
                _remove(prefix + ".idx")
                atomic.commit_file(tmp_bin, prefix + ".bin")
                write_json(prefix + ".json", meta)
                atomic.commit_file(tmp_idx, prefix + ".idx")
        return [prefix + ext for prefix in self.prefixes for ext in EXTENSIONS]

    def discard(self) -> None:
        """Close and delete this run's temporary files (after an error)."""
        for builder in self.builders:
            builder.data_file.close()
        for path in self.temporaries():
            _remove(path)
