"""What duplicates are compared on: the normalised text (exact duplicates: its xxh3 hash) and
its shingles (near duplicates), words or CJK characters. docs/sft-and-dedup.md."""

from __future__ import annotations

import re
import unicodedata

import xxhash

DEFAULT_SHINGLE_SIZE = 2

# Han (incl. extensions A-G and compatibility), kana: languages written without spaces.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_UNIT = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+")


def normalize(text: str) -> str:
    """NFKC, whitespace runs -> one space, stripped: the text exact duplicates are compared on."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def exact_hash(normalized: str) -> int:
    """128-bit xxh3 hash of a ``normalize``d text."""
    return xxhash.xxh3_128_intdigest(normalized.encode("utf-8"))


def shingles(normalized: str, size: int = DEFAULT_SHINGLE_SIZE) -> set[str]:
    """Distinct lowercased ``size``-grams of words / CJK characters (the whole text if shorter)."""
    units = _UNIT.findall(normalized.lower())
    if len(units) <= size:
        return {" ".join(units)} if units else set()
    return {" ".join(units[i:i + size]) for i in range(len(units) - size + 1)}
