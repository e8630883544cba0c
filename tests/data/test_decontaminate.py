"""The contamination index on hand-made items: exact copies, edited or embedded copies (13-gram
containment), whole-document near duplicates (MinHash), short items, clean documents kept, the
report's counts, bad input."""

import json
import os

import pytest

from xm2_megatron.data.decontaminate import (
    ContaminationIndex,
    Hit,
    Item,
    decontaminate_files,
    item_grams,
    summary,
)
from xm2_megatron.data.dedup import normalize
from xm2_megatron.data.jsonl import DataError

PROBLEM = (  # 108 words (units): 96 distinct 13-grams
    "A bakery sells loaves of rye bread for four dollars each and sourdough loaves for six "
    "dollars each. On Monday it sold twenty-three rye loaves and seventeen sourdough loaves, and "
    "on Tuesday it sold twice as many rye loaves as on Monday but only half as many sourdough "
    "loaves as on Monday, rounding down. How much money did the bakery take on the two days?\n"
    "On Monday the bakery took 23 * 4 + 17 * 6 = 92 + 102 = 194 dollars. On Tuesday it sold "
    "46 rye loaves and 8 sourdough loaves, which is 46 * 4 + 8 * 6 = 184 + 48 = 232 dollars. "
    "Altogether it took 194 + 232 = 426 dollars.\n#### 426"
)
TRIVIA = "Which river flows through the city of Vienna?\nDanube"  # 9 words: 8-grams
TINY = "Paris"
ITEMS = [Item("math", "math:0", PROBLEM), Item("trivia", "trivia:0", TRIVIA),
         Item("trivia", "trivia:1", TINY)]
CLEAN = [
    "The committee met on Tuesday to discuss the new bridge over the river and the school roof.",
    "def area(width, height):\n    return width * height\n",
    "Rye bread is denser than wheat bread because rye flour holds less gluten; bakers often "
    "add sourdough starter to help the loaves rise and to give them their sour taste.",
]


def edit_every(text: str, step: int, start: int = 0) -> str:
    """The text with every ``step``-th word (from ``start``) replaced by another word."""
    words = text.split(" ")
    return " ".join("ZZZ" if i % step == start else w for i, w in enumerate(words))


def write_jsonl(path, texts, key="text"):
    path.write_text("".join(json.dumps({key: t, "n": i}) + "\n" for i, t in enumerate(texts)))
    return str(path)


def read_texts(path):
    return [json.loads(line)["text"] for line in open(path)]


@pytest.fixture(scope="module")
def index():
    return ContaminationIndex(ITEMS)


def test_items_grams_and_short_items(index):
    assert len(item_grams(normalize(PROBLEM), 13, 8)) == 96
    assert len(item_grams(normalize(TRIVIA), 13, 8)) == 2  # 9 words: two 8-grams
    assert item_grams(normalize(TINY), 13, 8) == set()
    assert index.sets() == {"math": {"items": 1, "exact_only_items": 0},
                            "trivia": {"items": 2, "exact_only_items": 1}}
    assert index.lengths == {13, 8}


def test_exact_copy(index):
    assert index.find("  " + PROBLEM.replace("\n", "\n\n") + " ") == [Hit(0, "exact")]
    assert index.find(TINY) == [Hit(2, "exact")]
    assert index.find("The capital of France is Paris.") == []  # a tiny item: exact only


def test_edited_and_embedded_copies_by_ngram_containment(index):
    edited = PROBLEM.replace("Altogether", "In all").replace("426", "four hundred and 26")
    embedded = f"{CLEAN[0]} Here is a worked example.\n{edited}\nNext: fractions. {CLEAN[2]}"
    assert index.find(embedded) == [Hit(0, "ngram")]
    half = " ".join(PROBLEM.split(" ")[:40])  # 29 of the 96 grams: under half
    assert index.find(f"{CLEAN[0]} {half}") == []
    assert index.find("Quiz: which river flows through the city of Vienna? (Danube.)") == [
        Hit(1, "ngram")]
    assert ContaminationIndex(ITEMS, containment=0.25).find(half) == [Hit(0, "ngram")]


def test_near_duplicate_document_by_minhash(index):
    every_20th = edit_every(PROBLEM, 20)  # under half the 13-grams left, 0.82 of the bigrams
    assert index.find(every_20th) == [Hit(0, "minhash")]
    assert ContaminationIndex(ITEMS, jaccard_threshold=None).find(every_20th) == []
    assert index.find(edit_every(PROBLEM, 3)) == []  # a third of the words changed


def test_clean_documents_kept(index):
    assert [index.find(text) for text in CLEAN] == [[], [], []]


def test_files_cleaned_and_report_counts(tmp_path, index):
    exact, edited = PROBLEM, f"{CLEAN[1]}\n# {PROBLEM.replace('Monday', 'Sunday', 1)}"
    a = write_jsonl(tmp_path / "a.jsonl", [CLEAN[0], exact, CLEAN[1]])
    b = write_jsonl(tmp_path / "b.jsonl", [edited, CLEAN[2], TINY])
    out = tmp_path / "out"
    out.mkdir()
    report = decontaminate_files([a, b], out, index)
    assert read_texts(out / "a.jsonl") == [CLEAN[0], CLEAN[1]]
    assert read_texts(out / "b.jsonl") == [CLEAN[2]]
    assert [(f["documents"], f["removed"]) for f in report["files"]] == [(3, 1), (3, 2)]
    assert report["hits"] == [
        {"input": a, "line": 2, "set": "math", "item": "math:0", "detector": "exact"},
        {"input": b, "line": 1, "set": "math", "item": "math:0", "detector": "ngram"},
        {"input": b, "line": 3, "set": "trivia", "item": "trivia:1", "detector": "exact"}]
    assert report["sets"] == {"math": {"items": 1, "exact_only_items": 0, "found": 1,
                                       "documents": 2},
                              "trivia": {"items": 2, "exact_only_items": 1, "found": 1,
                                         "documents": 1}}
    assert report["hits_by_detector"] == {"exact": 2, "ngram": 1, "minhash": 0}
    assert json.loads((out / "decontamination.json").read_text())["removed"] == 3
    assert summary(report).startswith(
        "6 documents in 2 file(s) checked against 3 items of 2 evaluation set(s): removed 3 "
        "(2 exact, 1 13-gram, 0 MinHash hits); overlap: math 1/1 items in 2 documents; "
        "trivia 1/2 items in 1 documents")


def test_joined_keys_and_report_only(tmp_path, index):
    question, answer = PROBLEM.split("\n", 1)
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps({"prompt": question, "response": answer}) + "\n"
                    + json.dumps({"prompt": "Say hi.", "response": "Hi."}) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    report = decontaminate_files([path], out, index, json_key=["prompt", "response"],
                                 report_only=True)
    assert report["removed"] == 1 and report["hits"][0]["detector"] == "exact"
    assert os.listdir(out) == ["decontamination.json"]
    assert "would remove 1" in summary(report)


@pytest.mark.parametrize("bad_line, problem", [
    ('{"text": "unterminated}', "invalid JSON"),
    ('{"body": "no text key"}', "record has no 'text' field"),
    ('{"text": 42}', "record has a non-string 'text' field"),
])
def test_bad_input_names_file_and_line_and_writes_nothing(tmp_path, index, bad_line, problem):
    good = write_jsonl(tmp_path / "good.jsonl", [PROBLEM, CLEAN[0]])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": CLEAN[1]}) + "\n\n" + bad_line + "\n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=f"^{bad}:3: {problem}"):
        decontaminate_files([good, bad], out, index)
    assert os.listdir(out) == []


def test_output_paths_refused(tmp_path, index):
    a = write_jsonl(tmp_path / "a.jsonl", CLEAN)
    (tmp_path / "sub").mkdir()
    b = write_jsonl(tmp_path / "sub" / "a.jsonl", CLEAN)
    with pytest.raises(DataError, match="two inputs are named a.jsonl"):
        decontaminate_files([a, b], tmp_path / "sub", index)
    with pytest.raises(DataError, match="would replace it"):
        decontaminate_files([a], tmp_path, index)
    with pytest.raises(DataError, match="output directory .*missing does not exist"):
        decontaminate_files([a], tmp_path / "missing", index)
