"""Render instruction data (prompt/response, Alpaca, chat messages) into training text for
the decay stage with one plain-text template, a category per record and deterministic
rule-based prompt rewrites. The shapes, the template, the category rules and the rewrites are
described in docs/sft-and-dedup.md."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Sequence

from xm2_megatron.config import SFT_CATEGORIES
from xm2_megatron.data.jsonl import (
    DataError,
    atomic_output,
    read_jsonl,
    sidecar,
    stem,
    where,
    write_json,
)

CATEGORIES = SFT_CATEGORIES  # the paper's five, as the recipe's blend entries name them
ROLES = ("system", "user", "assistant")

# Matched (re.search) against a lowercased source or category name, in this order.
SOURCE_RULES: tuple[tuple[str, str], ...] = (
    ("mathematics", r"gsm8k|math|aqua|svamp|asdiv|mawps|numina"),
    ("code", r"code|mbpp|humaneval|oss-?instruct|magicoder|leetcode|starcoder"),
    ("commonsense", r"common[-_ ]?sense"),
    ("logic", r"(?<![a-z])cot(?![a-z])|chain[-_ ]?of[-_ ]?thought|logic|logiqa|reasoning"),
    ("knowledge", r"knowledge|wiki|trivia|encyclop"),
)

# (name, format of the first user turn), chosen by a hash of that turn.
REWRITES: tuple[tuple[str, str], ...] = (
    ("original", "{prompt}"),
    ("labelled", "Instruction:\n{prompt}"),
    ("request", "Please help with the following.\n\n{prompt}"),
    ("answer", "{prompt}\n\nPlease answer."),
)


def _text(record: dict, key: str, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DataError(f"'{key}' must be a string, got "
                        f"{'nothing' if value is None else type(value).__name__}")
    return value.strip()


def _messages(messages: object) -> list[tuple[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise DataError("'messages' must be a non-empty list")
    result = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise DataError(f"messages[{i}] must be an object with role one of {ROLES}")
        result.append((message["role"], _text(message, "content")))
    return result


def _flat(record: dict) -> list[tuple[str, str]]:
    if "prompt" in record:
        exchange = [("user", _text(record, "prompt")), ("assistant", _text(record, "response"))]
    elif "instruction" in record:
        extra = _text(record, "input", required=False)
        user = _text(record, "instruction") + (f"\n\n{extra}" if extra else "")
        exchange = [("user", user), ("assistant", _text(record, "output"))]
    else:
        raise DataError("expected 'messages', 'prompt' + 'response' or "
                        "'instruction' + 'output'")
    system = _text(record, "system", required=False)
    return ([("system", system)] if system else []) + exchange


def turns(record: dict) -> list[tuple[str, str]]:
    """The (role, content) turns of a record of any supported shape, validated."""
    result = _messages(record["messages"]) if "messages" in record else _flat(record)
    _check_order(result)
    return result


def _check_order(result: list[tuple[str, str]]) -> None:
    roles = [role for role, _ in result]
    body = roles[1:] if roles[0] == "system" else roles
    expected = ["user", "assistant"] * (len(body) // 2)
    if not body or body != expected:
        raise DataError(f"turns must be an optional system turn, then user and assistant "
                        f"alternating, ending with assistant; got {roles}")
    for role, content in result:
        if not content:
            raise DataError(f"a {role} turn is empty")


def rewrite_for(prompt: str) -> tuple[str, str]:
    """The (name, format) of ``REWRITES`` a prompt gets: a stable hash of its text."""
    digest = hashlib.blake2b(prompt.encode("utf-8"), digest_size=8).digest()
    return REWRITES[int.from_bytes(digest, "little") % len(REWRITES)]


def render_turns(result: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"<|{role}|>\n{content}" for role, content in result)


def diversify_turns(result: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], str]:
    """The turns with the first user turn rewritten, and the name of the rewrite used."""
    first = 1 if result[0][0] == "system" else 0
    name, template = rewrite_for(result[first][1])
    result = list(result)
    result[first] = ("user", template.format(prompt=result[first][1]))
    return result, name


def render_example(record: dict, diversify: bool = False) -> str:
    """The training text of one record (with its first prompt rewritten if ``diversify``)."""
    result = turns(record)
    return render_turns(diversify_turns(result)[0] if diversify else result)


def match_category(name: str) -> str | None:
    """A category for a category or source name (``SOURCE_RULES``), or None."""
    name = name.strip().lower()
    if name in CATEGORIES:
        return name
    return next((cat for cat, pattern in SOURCE_RULES if re.search(pattern, name)), None)


def source_of(record: dict, source_field: str = "source",
              fallback: str | None = None) -> str | None:
    """The record's source name: its ``source_field``, else ``fallback``."""
    value = record.get(source_field)
    return fallback if value in (None, "") else str(value)


def categorize(record: dict, default: str | None = None, *, category_field: str = "category",
               source_field: str = "source", source: str | None = None) -> str:
    """The record's category: its ``category_field``, else the mapping of its source name
    (``source_field``, else ``source``), else ``default``; ``DataError`` if none applies."""
    value = record.get(category_field)
    if value not in (None, ""):
        found = match_category(value) if isinstance(value, str) else None
        if found or default:
            return found or default
        raise DataError(f"unknown category {value!r} in field '{category_field}': not one of "
                        f"{', '.join(CATEGORIES)} and no rule maps it; give a default category")
    name = source_of(record, source_field, source)
    found = match_category(name) if name else None
    if found or default:
        return found or default
    raise DataError(f"no category: no field '{category_field}' and no rule maps source {name!r}; "
                    f"give the field or a default category")


def format_file(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *,
                category_field: str = "category", source_field: str = "source",
                source: str | None = None, default_category: str | None = None,
                diversify: bool = True) -> dict[str, int]:
    """Render every record of ``inputs`` into ``output``; write stats beside it.

    Each output line is ``{"text", "category", "source"}``; the source is the record's
    ``source_field``, else ``source``, else the input file's name. Returns the count per
    category (all of ``CATEGORIES``); the stats file ``out.stats.json`` adds the counts per
    source and per rewrite.
    """
    if default_category is not None:
        default = match_category(default_category)
        if default is None:
            raise DataError(f"--default-category={default_category!r} is not one of "
                            f"{', '.join(CATEGORIES)}")
        default_category = default
    counts = Counter({cat: 0 for cat in CATEGORIES})
    sources: Counter[str] = Counter()
    rewrites: Counter[str] = Counter()
    with atomic_output(output) as out:
        for line in read_jsonl(inputs):
            record = line.record
            name = source_of(record, source_field, source or stem(line.path))
            try:
                category = categorize(record, default_category, category_field=category_field,
                                      source_field=source_field, source=name)
                result = turns(record)
                if diversify:
                    result, rewrite = diversify_turns(result)
                    rewrites[rewrite] += 1
            except DataError as e:
                raise DataError(f"{where(line.path, line.lineno)}: {e}") from None
            out.write(json.dumps({"text": render_turns(result), "category": category,
                                  "source": name}, ensure_ascii=False) + "\n")
            counts[category] += 1
            sources[name] += 1
    write_json(sidecar(output, "stats"), {
        "inputs": [str(p) for p in inputs], "output": str(output), "records": counts.total(),
        "categories": dict(counts), "sources": dict(sorted(sources.items())),
        "diversify": diversify, "rewrites": dict(sorted(rewrites.items())),
    })
    return dict(counts)
