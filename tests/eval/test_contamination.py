"""The items of real evaluation sets (from the lm-eval tasks' loaded documents) and
xm2-decontaminate end to end: planted items found and removed, clean documents kept."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xm2_megatron.errors import UserError
from xm2_megatron.eval.contamination import evaluation_items, set_names

REPO = Path(__file__).parents[2]
SETS = ["xm2_arc_easy", "xm2_gsm8k", "xm2_humaneval", "ptb"]
CLEAN = [
    "The committee met on Tuesday to discuss the new bridge over the river and the school roof.",
    "Rye bread is denser than wheat bread because rye flour holds less gluten; bakers often "
    "add sourdough starter to help the loaves rise and to give them their sour taste.",
    "import os\n\n\ndef size(path):\n    return os.stat(path).st_size\n",
]


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    os.environ.pop("HF_ALLOW_CODE_EVAL", None)  # the code tasks' data loads without it
    return evaluation_items(tmp_path_factory.mktemp("work"), SETS)


def by_id(items):
    return {item.id: item for item in items}


def test_every_task_and_ptb_is_a_set():
    assert len(set_names()) == 15 and set_names()[-1] == "ptb"
    with pytest.raises(UserError, match="unknown evaluation set"):
        evaluation_items(Path("unused"), ["xm2_bbh"])


def test_items_of_real_sets(items):
    counts = {s: sum(i.set == s for i in items) for s in SETS}
    assert counts == {"xm2_arc_easy": 2376, "xm2_gsm8k": 1319, "xm2_humaneval": 164,
                      "ptb": 49199}
    found = by_id(items)
    assert found["xm2_arc_easy:0"].text == (
        "Which statement best explains why photosynthesis is the foundation of most food webs?"
        "\nSunlight is the source of energy for nearly all ecosystems.")
    gsm8k = found["xm2_gsm8k:0"].text
    assert gsm8k.startswith("Janet’s ducks lay 16 eggs per day.")
    assert "Janet sells 16 - 3 - 4 = 9 duck eggs a day." in gsm8k  # no <<16-3-4=9>>
    assert gsm8k.endswith("#### 18")
    humaneval = found["xm2_humaneval:0"].text
    assert humaneval.startswith("from typing import List\n\n\ndef has_close_elements(")
    assert humaneval.endswith("    return False\n")
    assert found["ptb:2"].text == ("pierre <unk> N years old will join the board as a "
                                    "nonexecutive director nov. N")


def run_tool(*args):
    return subprocess.run([sys.executable, str(REPO / "tools" / "decontaminate.py"), *args],
                          capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "HF_ALLOW_CODE_EVAL"})


def test_cli_removes_planted_items(tmp_path, items):
    found = by_id(items)
    gsm8k = found["xm2_gsm8k:7"].text
    humaneval = found["xm2_humaneval:3"].text.replace("return", "return  ", 1)
    texts = [CLEAN[0], gsm8k, CLEAN[1], f"{CLEAN[2]}\n\n{humaneval}\n# end\n", CLEAN[2]]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "out"
    out.mkdir()
    result = run_tool("--input", str(train), "--output-dir", str(out), "--sets", "xm2_gsm8k",
                      "xm2_humaneval")
    assert result.returncode == 0, result.stderr
    kept = [json.loads(line)["text"] for line in open(out / "train.jsonl")]
    assert kept == [CLEAN[0], CLEAN[1], CLEAN[2]]
    report = json.loads((out / "decontamination.json").read_text())
    assert [(h["line"], h["item"], h["detector"]) for h in report["hits"]] == [
        (2, "xm2_gsm8k:7", "exact"), (4, "xm2_humaneval:3", "ngram")]
    assert {s: (v["items"], v["found"]) for s, v in report["sets"].items()} == {
        "xm2_gsm8k": (1319, 1), "xm2_humaneval": (164, 1)}
    assert "removed 2 (1 exact, 1 13-gram, 0 MinHash hits)" in result.stdout


def test_cli_bad_input_one_line_nothing_written(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"text": CLEAN[0]}) + "\n" + json.dumps({"body": "x"}) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    result = run_tool("--input", str(train), "--output-dir", str(out), "--sets", "xm2_humaneval")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"error: {train}:2: record has no 'text' field"
    assert os.listdir(out) == []
