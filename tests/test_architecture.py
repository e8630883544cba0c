"""The package layers (docs/architecture.md): mechanism below assembly below policy, and no
module importing a layer above its own; modules stay small."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xm2_megatron"
MECHANISM = ("errors", "atomic", "config", "runtime", "model", "optim", "data", "checkpoint",
             "convert", "eval", "planning")
ASSEMBLY = ("training",)
POLICY = ("windtunnel", "cli", "train", "quickstart", "tools")
LAYER = {**dict.fromkeys(MECHANISM, 0), **dict.fromkeys(ASSEMBLY, 1), **dict.fromkeys(POLICY, 2)}
MAX_LINES = 400


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _top(path: Path) -> str:
    """The first part below ``xm2_megatron`` (``training``, ``train``, ...)."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def _imports(path: Path) -> set[str]:
    """Every ``xm2_megatron.<part>`` the module imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "xm2_megatron" and len(parts) > 1 and parts[1] in LAYER:
                found.add(parts[1])
    return found


def test_every_part_has_a_layer():
    tops = {_top(p) for p in _modules()} - {"__init__"}
    assert tops <= set(LAYER), f"add {sorted(tops - set(LAYER))} to a layer in this test and docs"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path):
    top = _top(path)
    if top == "__init__":
        return
    above = {name for name in _imports(path) if LAYER[name] > LAYER[top]}
    assert not above, f"{path.relative_to(PACKAGE)} ({top}) imports {sorted(above)}"


def test_modules_stay_small():
    files = [p for folder in ("xm2_megatron", "tests", "benchmarks", "tools")
             for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts]
    big = {str(p.relative_to(ROOT)): n for p in files
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"over {MAX_LINES} lines: {big}"
    assert len((PACKAGE / "train.py").read_text().splitlines()) <= 60
