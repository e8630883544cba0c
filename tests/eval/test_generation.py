"""The generation tasks (GSM8K 5-shot, MATH 4-shot, HumanEval, MBPP): their prompts hold exactly
lm-eval's fixed exemplars, their scores are the hand-computed exact match / pass@1, first with
a stand-in model that answers half the items right, then end to end with the tiny model."""

import importlib.util
import json
import re
from pathlib import Path

import lm_eval
import pytest
import yaml
from lm_eval.api.model import LM

from tests.launch import DEFAULT_ENV, python_command, run
from xm2_megatron.eval.code_exec import CodeEvalNotAllowed, passes
from xm2_megatron.eval.harness import HarnessSettings, check_tasks, prepare_tasks
from xm2_megatron.errors import UserError
from xm2_megatron.eval.report import benchmark_scores

TASKS = ["xm2_gsm8k", "xm2_math", "xm2_humaneval", "xm2_mbpp"]
LM_TASKS = Path(lm_eval.__file__).parent / "tasks"
WRONG = {"xm2_gsm8k": "So 2 + 1 = 3", "xm2_humaneval": "    return None\n",
         "xm2_mbpp": "def f():\n    pass",
         "xm2_math": "Final Answer: The final answer is $\\pi^{17}$. I hope it is correct."}


def _right(task: str, doc: dict) -> str:
    if task == "xm2_gsm8k":
        return f"9 eggs a day. The answer is {doc['answer'].split('####')[-1].strip()}.\n\n"
    if task == "xm2_math":
        return f"Final Answer: The final answer is ${doc['answer']}$. I hope it is correct."
    return doc["canonical_solution"] if task == "xm2_humaneval" else doc["code"]


class HalfRight(LM):
    """Answers the first item of each task (doc_id 0) right and every other one wrong."""

    def generate_until(self, requests):
        task = lambda r: "xm2_math" if r.task_name.startswith("xm2_math_") else r.task_name
        return [_right(task(r), r.doc) if r.doc_id == 0 else WRONG[task(r)] for r in requests]

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_ALLOW_CODE_EVAL", "1")
        yield prepare_tasks(TASKS, tmp_path_factory.mktemp("generation"))


def _minerva_exemplars() -> list[dict]:
    spec = importlib.util.spec_from_file_location("minerva", LM_TASKS / "minerva_math" / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.list_fewshot_samples()


def _gsm8k_prompt(doc: dict) -> str:
    text = (LM_TASKS / "gsm8k" / "gsm8k-cot.yaml").read_text()
    exemplars = yaml.safe_load(text)["fewshot_config"]["samples"]
    assert len(exemplars) == 8
    return "".join(f"Q: {s['question']}\nA: {s['target']}\n\n" for s in exemplars[:5]) + \
        f"Q: {doc['question']}\nA:"


def _math_prompt(doc: dict) -> str:
    exemplars = _minerva_exemplars()
    assert len(exemplars) == 4
    return "".join(f"Problem:\n{s['problem']}\n\nSolution: {s['solution']}\n\n"
                   for s in exemplars) + f"Problem:\n{doc['problem']}\n\nSolution:"


def test_scores_are_the_hand_computed_ones(prepared, monkeypatch):
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")
    out = lm_eval.simple_evaluate(model=HalfRight(), tasks=[prepared.tasks[t] for t in TASKS],
                                  task_manager=prepared.manager, limit=2, bootstrap_iters=0,
                                  confirm_run_unsafe_code=True)
    results = out["results"]
    assert results["xm2_gsm8k"]["exact_match,strict-match"] == 0.5  # "The answer is N."
    assert results["xm2_gsm8k"]["exact_match,flexible-extract"] == 1.0  # the last number
    assert results["xm2_math"]["exact_match,none"] == 0.5  # 7 subjects x 2 items
    assert sum(out["n-samples"][f"xm2_math_{s}"]["effective"] for s in (
        "algebra", "counting_and_prob", "geometry", "intermediate_algebra", "num_theory",
        "prealgebra", "precalc")) == 14
    assert results["xm2_humaneval"]["pass@1,create_test"] == 0.5  # the canonical solution passes
    assert results["xm2_mbpp"]["pass_at_1,none"] == 0.5
    scores = benchmark_scores(out)
    assert {scores[c] for c in ("GSM8K", "MATH", "HumanEval", "MBPP")} == {50.0}


def test_the_code_runner(monkeypatch):
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")
    assert passes("assert sum([1, 2]) == 3") and not passes("assert 1 == 2")
    assert not passes("while True:\n    pass", timeout=1.0)
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL")
    with pytest.raises(CodeEvalNotAllowed, match="set HF_ALLOW_CODE_EVAL=1"):
        passes("pass")
    with pytest.raises(UserError, match="xm2_mbpp run.s. the model's code: set HF_ALLOW"):
        check_tasks(["xm2_gsm8k", "xm2_mbpp"])
    assert HarnessSettings().tasks[-2:] == ["xm2_math", "xm2_mmlu"]  # no code tasks by default


def _extract(response: str, filter_name: str) -> str:
    """lm-eval's two GSM8K filters by hand: after "The answer is", or the last number."""
    if filter_name == "strict-match":
        found = re.findall(r"The answer is (\-?[0-9\.\,]+).", response)
        return found[0] if found else "[invalid]"
    found = re.findall(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", response)
    return next(m for m in found[-1] if m).strip() if found else "[invalid]"


def _normalise(answer: str) -> str:
    for pattern in (",", r"\$", "(?s).*#### ", r"\.$"):
        answer = re.sub(pattern, "", answer)
    return answer.lower()


@pytest.fixture(scope="module")
def tiny_run(eval_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_generation")
    run(python_command(["-m", "xm2_megatron.tools.eval", eval_export, "--tasks", *TASKS,
                        "--limit", "2", "--max-length", "2048", "--log-samples", "--out", out,
                        "--name", "tiny"]), timeout=600, check=True,
        env={**DEFAULT_ENV, "HF_ALLOW_CODE_EVAL": "1"})
    samples: dict[str, list] = {}
    for line in (out / "samples.jsonl").read_text().splitlines():
        sample = json.loads(line)
        samples.setdefault(sample["task"], []).append(sample)
    return json.loads((out / "results.json").read_text()), samples, (out / "report.md").read_text()


def test_gsm8k_end_to_end(tiny_run):
    results, samples, _ = tiny_run
    for filter_name in ("strict-match", "flexible-extract"):
        items = [s for s in samples["xm2_gsm8k"] if s["filter"] == filter_name]
        assert [s["doc_id"] for s in items] == [0, 1]
        hits = []
        for item in items:
            assert item["arguments"][0][0] == _gsm8k_prompt(item["doc"])
            extracted = _extract(item["resps"][0][0], filter_name)
            assert item["filtered_resps"] == [extracted]
            hits.append(_normalise(extracted) == _normalise(item["target"]))
            assert item["exact_match"] == float(hits[-1])
        assert results["results"]["xm2_gsm8k"][f"exact_match,{filter_name}"] == sum(hits) / 2


def test_math_and_code_end_to_end(tiny_run):
    results, samples, report = tiny_run
    math = [s for task, items in samples.items() if task.startswith("xm2_math_") for s in items]
    assert len(math) == 14
    for item in math:
        assert item["arguments"][0][0] == _math_prompt(item["doc"])
        assert item["doc"]["answer"] == item["target"]
    mean = sum(item["exact_match"] for item in math) / 14
    assert results["results"]["xm2_math"]["exact_match,none"] == mean
    for task, metric in (("xm2_humaneval", "pass@1,create_test"), ("xm2_mbpp", "pass_at_1,none")):
        items = samples[task]
        assert len(items) == 2
        assert results["results"][task][metric] == sum(i[metric.split(",")[0]] for i in items) / 2
    header = "| model | GSM8K | MATH | BBH | MMLU | HumanEval | MBPP | Avg |"
    assert header in report
    scores = benchmark_scores(results)
    row = f"| tiny | {scores['GSM8K']:.2f} | {scores['MATH']:.2f} | n/a | n/a | " \
          f"{scores['HumanEval']:.2f} | {scores['MBPP']:.2f} | n/a |"
    assert row in report
