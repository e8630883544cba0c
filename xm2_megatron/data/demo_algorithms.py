"""Code SFT pairs from the functions of the ``algorithms`` package (keon/algorithms, MIT).

Each public top-level function with a docstring gives one record: the prompt asks for the
function by its signature and docstring; the response is its source without docstrings,
with the module's private helpers (``_name`` functions) it uses, in module order.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from xm2_megatron.data.jsonl import DataError

SOURCE = "algorithms"
SKIPPED_FOLDERS = {"test", "tests", "__pycache__"}

Function = ast.FunctionDef | ast.AsyncFunctionDef


def signature(node: Function) -> str:
    """``name(args) -> returns`` as written in the source (annotations kept)."""
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"{node.name}({ast.unparse(node.args)}){returns}"


def _docstring_lines(node: Function, lines: list[str]) -> set[int]:
    """Line numbers (1-based) of the docstrings in ``node`` (its own and those of the functions
    and classes inside it) and of the blank lines after each. A docstring that is the whole
    body, or shares a line with code, stays."""
    drop: set[int] = set()
    for inner in ast.walk(node):
        if not (isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and ast.get_docstring(inner) is not None and len(inner.body) > 1):
            continue
        doc, after = inner.body[0], inner.body[1]
        if after.lineno <= doc.end_lineno or lines[doc.lineno - 1][:doc.col_offset].strip():
            continue
        end = doc.end_lineno
        while not lines[end].strip():
            end += 1
        drop.update(range(doc.lineno, end + 1))
    return drop


def _without_docstrings(node: Function, lines: list[str]) -> str:
    """The function's source (decorators included) without its docstrings."""
    start = min([d.lineno for d in node.decorator_list] + [node.lineno])
    drop = _docstring_lines(node, lines)
    kept = [lines[i - 1] for i in range(start, node.end_lineno + 1) if i not in drop]
    return "\n".join(kept).rstrip() + "\n"


def _helpers(node: Function, private: dict[str, Function]) -> set[str]:
    """The private module functions ``node`` uses, directly or through each other."""
    found: set[str] = set()
    todo = [node]
    while todo:
        for name in (n.id for n in ast.walk(todo.pop()) if isinstance(n, ast.Name)):
            if name in private and name not in found:
                found.add(name)
                todo.append(private[name])
    return found


def module_records(path: Path, module: str) -> Iterator[dict]:
    """The records of one module's public documented functions, in source order; ``module``
    is its dotted name inside the package (``array.flatten``; empty for the package itself)."""
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, str(path))
    except (UnicodeDecodeError, SyntaxError) as e:
        raise DataError(f"{path}: not a readable Python module: {e}") from None
    lines = text.splitlines()
    functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    private = {f.name: f for f in functions if f.name.startswith("_")}
    for func in functions:
        doc = ast.get_docstring(func)
        if func.name.startswith("_") or not doc or len(func.body) == 1:
            continue
        used = _helpers(func, private) | {func.name}
        response = "\n\n".join(_without_docstrings(f, lines)
                               for f in functions if f.name in used)
        yield {"prompt": f"Write the Python function `{signature(func)}`.\n\n{doc}",
               "response": response, "category": "code", "source": SOURCE,
               "id": f"{SOURCE}/{module + '.' if module else ''}{func.name}"}


def algorithms_records(package: Path) -> Iterator[dict]:
    """Records of every module of the ``algorithms`` package folder, in path order."""
    package = Path(package)
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if SKIPPED_FOLDERS & set(parts[:-1]):
            continue
        names = parts[:-1] if parts[-1] == "__init__" else parts
        yield from module_records(path, ".".join(names))
