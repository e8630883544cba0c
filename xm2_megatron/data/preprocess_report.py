"""What a ``preprocess`` run reports: live progress on stderr and the closing summary."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm

from xm2_megatron.data.jsonl import DataError, where
from xm2_megatron.data.preprocess_workers import ChunkResult

EXAMPLES = 5  # line numbers shown per skip reason


class Progress:
    """docs/s and tokens/s on stderr: a tqdm bar on a terminal, otherwise a line every
    ``interval`` seconds (every chunk when ``interval`` <= 0)."""

    def __init__(self, total_bytes: int, interval: float):
        self.total, self.interval = total_bytes, interval
        self.start = self.last = time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                            desc="preprocess", file=sys.stderr, dynamic_ncols=True)

    def update(self, documents: int, tokens: int, done_bytes: int) -> None:
        now = time.perf_counter()
        elapsed = max(now - self.start, 1e-9)
        rates = f"{documents / elapsed:,.0f} docs/s, {tokens / elapsed:,.0f} tokens/s"
        if self.bar is not None:
            self.bar.update(done_bytes - self.bar.n)
            self.bar.set_postfix_str(rates, refresh=False)
        elif now - self.last >= self.interval:
            self.last = now
            share = f"{100 * done_bytes / self.total:.0f}%" if self.total else "?"
            print(f"[preprocess] {documents:,} docs, {tokens:,} tokens, {share} of input, {rates}",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class PreprocessSummary:
    """What a run did; ``format()`` is the closing report."""

    inputs: list[str]
    keys: list[str]
    documents: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)  # reason -> lines
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> first locations
    blank_lines: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)

    def add(self, result: ChunkResult, strict: bool) -> None:
        """Count a chunk; with ``strict`` its first bad line is an error."""
        path = self.inputs[result.file_index]
        if strict and result.bad:
            lineno, reason = result.bad[0]
            raise DataError(f"{where(path, lineno)}: {reason} "
                            "(--strict stops at the first bad line)")
        self.documents += len(result.lengths[0])
        for key, tokens in zip(self.keys, result.tokens):
            self.tokens[key] = self.tokens.get(key, 0) + len(tokens)
        for lineno, reason in result.bad:
            self.skipped[reason] += 1
            shown = self.examples.setdefault(reason, [])
            if len(shown) < EXAMPLES:
                shown.append(where(path, lineno))
        self.blank_lines += result.blank

    def format(self) -> str:
        tokens = sum(self.tokens.values())
        seconds = max(self.seconds, 1e-9)
        lines = [(f"{self.documents:,} documents, {tokens:,} tokens in {self.seconds:.1f} s "
                  f"({self.documents / seconds:,.0f} docs/s, {tokens / seconds:,.0f} tokens/s)")]
        if self.skipped:
            lines.append(f"skipped {sum(self.skipped.values()):,} lines:")
            for reason, count in sorted(self.skipped.items()):
                more = ", ..." if count > len(self.examples[reason]) else ""
                lines.append(f"  {reason}: {count:,} ({', '.join(self.examples[reason])}{more})")
        if self.blank_lines:
            lines.append(f"ignored {self.blank_lines:,} blank lines")
        lines += [f"wrote {path} ({os.path.getsize(path):,} bytes)" for path in self.outputs]
        return "\n".join(lines)
