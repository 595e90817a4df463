"""Habits that check themselves: no function over ``FUNCTION_LINES_MAX`` lines and no module docstring over
``DOCSTRING_LINES_MAX`` lines in ``src/endcredits`` (a longer explanation belongs in docs/concepts/).

``LONG_FUNCTIONS`` and ``LONG_DOCSTRINGS`` list what was longer when the rule came in, with its length
then. The lists may only shrink: a listed place that grew fails, and so does one that is now short
enough (take it off the list), so each cut is kept.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "endcredits"
FUNCTION_LINES_MAX = 70
DOCSTRING_LINES_MAX = 25

LONG_FUNCTIONS: dict[str, int] = {
    "attribution/charlm.py:train_char_lm": 98,
    "interop/croissant.py:plan_croissant": 71,
    "ledger/verify.py:verify": 235,
    "manifest/build.py:build_manifest": 85,
    "manifest/records.py:record_training_run": 84,
    "money.py:split_batch": 79,
    "registry/identity/persons.py:refresh_verification": 72,
    "registry/records.py:add_credits": 85,
    "registry/records.py:graph_rows": 91,
    "service/app.py:_routes_consent": 71,
    "service/app.py:_routes_money": 77,
    "service/app.py:_routes_payouts": 92,
    "service/app.py:_routes_registry": 105,
    "service/portal.py:_routes_contributor": 82,
    "service/portal.py:_routes_sign_in": 107,
}
"""``path:qualified name`` -> its length in lines when it was listed (decorators and docstring included)."""

LONG_DOCSTRINGS: dict[str, int] = {}
"""``path`` -> the length of its module docstring in lines when it was listed."""


def _files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def function_lengths(path: Path) -> dict[str, int]:
    """Every function and method of the file by qualified name, with its length in lines."""
    out: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                name = f"{prefix}{child.name}"
                out[name] = max(out.get(name, 0), (child.end_lineno or child.lineno) - start + 1)
                walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(ast.parse(path.read_text(encoding="utf-8")), "")
    return out


def docstring_lines(path: Path) -> int:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
    return 0 if doc is None else len(doc.strip("\n").splitlines())


def _measure() -> tuple[dict[str, int], dict[str, int]]:
    functions: dict[str, int] = {}
    docstrings: dict[str, int] = {}
    for path in _files():
        rel = str(path.relative_to(SRC))
        for name, length in function_lengths(path).items():
            if length > FUNCTION_LINES_MAX:
                functions[f"{rel}:{name}"] = length
        doc = docstring_lines(path)
        if doc > DOCSTRING_LINES_MAX:
            docstrings[rel] = doc
    return functions, docstrings


def _check(found: dict[str, int], allowed: dict[str, int], what: str, limit: int) -> list[str]:
    problems = []
    for place, length in sorted(found.items()):
        if place not in allowed:
            problems.append(f"{place}: {what} of {length} lines (at most {limit}): split it")
        elif length > allowed[place]:
            problems.append(f"{place}: {what} grew from {allowed[place]} to {length} lines: split it")
    for place, length in sorted(allowed.items()):
        if place not in found:
            problems.append(f"{place}: no longer over {limit} lines: take it off the list in tests/test_tidy.py")
        elif found[place] < length:
            problems.append(f"{place}: shrank from {length} to {found[place]} lines: lower it in tests/test_tidy.py")
    return problems


def test_functions_are_short() -> None:
    functions, _ = _measure()
    problems = _check(functions, LONG_FUNCTIONS, "function", FUNCTION_LINES_MAX)
    assert not problems, "\n".join(problems)


def test_module_docstrings_are_short() -> None:
    _, docstrings = _measure()
    problems = _check(docstrings, LONG_DOCSTRINGS, "module docstring", DOCSTRING_LINES_MAX)
    assert not problems, "\n".join(problems)


def test_the_checker_counts_and_compares(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    body = "\n".join(f"        x{i} = {i}" for i in range(3))
    probe.write_text(f'"""One\nTwo\n"""\n\n\nclass A:\n    @staticmethod\n    def f() -> None:\n{body}\n')
    assert function_lengths(probe) == {"A.f": 5}
    assert docstring_lines(probe) == 2
    assert _check({"a": 80}, {}, "function", 70) == ["a: function of 80 lines (at most 70): split it"]
    assert _check({"a": 80}, {"a": 80}, "function", 70) == []
    assert "grew" in _check({"a": 81}, {"a": 80}, "function", 70)[0]
    assert "shrank" in _check({"a": 75}, {"a": 80}, "function", 70)[0]
    assert "take it off" in _check({}, {"a": 80}, "function", 70)[0]
