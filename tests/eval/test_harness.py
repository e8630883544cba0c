"""``xm2-eval`` through lm-eval's hf backend: every choice's score is the model's own
log-likelihood of it, the checkpoint and its export score the same, and the report shows
exactly the measured numbers."""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.launch import python_command, run
from xm2_megatron.eval.report import benchmark_scores
from xm2_megatron.tools.eval import main as eval_main

from tests.eval.conftest import LIMIT, TASKS

GOLD = {"xm2_arc_easy": lambda s: s["target"],  # the index of the right choice
        "xm2_winogrande": lambda s: int(s["doc"]["answer"]) - 1}  # the target is the ending


def _loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
    cont = whole[len(tokenizer(context, add_special_tokens=False).input_ids):]
    with torch.no_grad():
        logits = model(torch.tensor([whole[:-1]])).logits[0].log_softmax(-1)
    rows = logits[len(whole) - 1 - len(cont):]
    return sum(rows[i, token].item() for i, token in enumerate(cont))


@pytest.mark.parametrize("task", ["xm2_arc_easy", "xm2_winogrande"])
def test_each_choice_scores_the_models_loglikelihood(harness, eval_export, task):
    model = AutoModelForCausalLM.from_pretrained(eval_export, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(eval_export)
    samples = harness["samples"][task]
    assert len(samples) == LIMIT
    for sample in samples:
        scores = [ll for ll, _ in sample["filtered_resps"]]
        for (context, continuation), score in zip(sample["arguments"], scores, strict=True):
            assert math.isclose(_loglikelihood(model, tokenizer, context, continuation), score,
                                abs_tol=1e-3)
        best = max(range(len(scores)), key=scores.__getitem__)
        assert sample["acc"] == float(best == GOLD[task](sample))


def test_arc_easy_targets_are_the_answer_keys(harness):
    for sample in harness["samples"]["xm2_arc_easy"]:
        doc = sample["doc"]
        assert sample["target"] == doc["choices"]["label"].index(doc["answerKey"])
        assert sample["arguments"][0][0] == f"Question: {doc['question']}\nAnswer:"


def test_mmlu_is_the_size_weighted_mean_of_its_57_subjects(harness):
    results = harness["results"]
    subjects = [t for t in results if t.startswith("xm2_mmlu_")]
    assert len(subjects) == 57
    mean = sum(results[t]["acc,none"] for t in subjects) / 57  # LIMIT items each
    assert math.isclose(results["xm2_mmlu"]["acc,none"], mean, rel_tol=1e-12)


def test_the_checkpoint_and_its_export_score_the_same(harness, eval_checkpoint, tmp_path):
    out = tmp_path / "eval"
    run(python_command(["-m", "xm2_megatron.tools.eval", eval_checkpoint, "--tasks", *TASKS[:2],
                        "--limit", str(LIMIT), "--out", out, "--name", "tiny"]),
        timeout=600, check=True)
    results = json.loads((out / "results.json").read_text())
    for task in TASKS[:2]:
        assert results["results"][task]["acc,none"] == harness["results"][task]["acc,none"]
    report = (out / "report.md").read_text()
    for column, score in benchmark_scores(results).items():
        assert f"| {score:.2f} |" in report, column
    assert "only the first 6 items of each task (--limit): not comparable" in report


def test_bad_input_is_one_clear_error(eval_export, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "missing: no such model folder or checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        eval_main([str(eval_export), "--tasks", "hellaswag", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "unknown task(s) hellaswag: expected some of xm2_arc_challenge" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        eval_main([str(eval_export), "--tasks", "xm2_boolq", "--calibration"])
    assert exit_info.value.code == 2
    assert "--calibration is measured on MMLU: add xm2_mmlu" in capsys.readouterr().err
