"""The house rule, checked on every import in ``src/endcredits`` (module level and inside functions).

Data moves one way: a stage imports only the kernel and the stages to its left, never one to its right;
the kernel (``store``, ``money``, ``errors``, ``limits``, ``audit``) imports no stage; nothing but the
``demo`` command imports the demos (``demo.py``, and ``demo_images.py``, which shares its money steps); and
nothing imports the edges above it. See docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "endcredits"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "limits", "money", "audit", "store"),  # the shared kernel
    ("registry",),
    ("consent",),
    ("manifest",),
    ("attribution",),
    ("royalties",),
    ("ledger",),
    ("payouts",),
    ("interop",),
    ("service",),
    ("demo", "demo_images"),
    ("cli", "__main__"),
)
"""Bottom up: each row may import its own row and the rows below it."""

DEMO_MODULES = ("endcredits.demo", "endcredits.demo_images")
"""The two demos; the image demo shares the ABC demo's money steps."""
DEMO_IMPORTERS = {"endcredits.cli.app", *DEMO_MODULES}
"""The ``demo`` command and the demos themselves, the only places allowed to import a demo."""


def _layer_of(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    for index, row in enumerate(LAYERS):
        if top in row:
            return index
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS in tests/test_layers.py")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of every ``endcredits`` import in the file, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                name = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "endcredits" or not node.module:  # ``from endcredits import money``: modules
                found += [(node.lineno, f"{name}.{a.name}") for a in node.names]
            elif name.startswith("endcredits."):
                found.append((node.lineno, name))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("endcredits.")]
    return found


def _violations(path: Path, module: str) -> list[str]:
    mine = _layer_of(module)
    wrong = []
    for line, target in _imports(path, module):
        if any(target == d or target.startswith(f"{d}.") for d in DEMO_MODULES):
            if module not in DEMO_IMPORTERS:
                wrong.append(f"line {line}: {target} (only the demo command imports demo.py)")
            continue
        theirs = _layer_of(target)
        if theirs > mine:
            wrong.append(
                f"line {line}: {target} ({'/'.join(LAYERS[theirs])} is to the right of {'/'.join(LAYERS[mine])})"
            )
    return wrong


MODULES = sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts and p != SRC / "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path: Path) -> None:
    module = _module_name(path)
    wrong = _violations(path, module)
    assert not wrong, f"{module} imports against the data flow:\n" + "\n".join(wrong)


def test_the_rule_catches_imports_to_the_right(tmp_path: Path) -> None:
    """The checker itself, on a probe file read as if it lived in one package or another."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from endcredits.ledger.records import fold_pending\n"
        "def later() -> None:\n    from endcredits import demo\n"
        "from endcredits import money\n"
    )
    assert len(_violations(probe, "endcredits.store.probe")) == 2  # the kernel imports no stage, nor the demo
    assert len(_violations(probe, "endcredits.royalties.probe")) == 2  # ledger is to the right of royalties
    assert _violations(probe, "endcredits.payouts.probe") == [
        "line 3: endcredits.demo (only the demo command imports demo.py)"
    ]
    assert _violations(probe, "endcredits.cli.app") == []
    with pytest.raises(AssertionError, match="no layer"):
        _layer_of("endcredits.newstage.thing")


def test_benchmark_modules_import_no_driver() -> None:
    """The benchmarks' shared definitions live in helper modules (``_lds_core`` and the like); a helper never
    imports a driver script (``lds.py``, ``ledger.py``...), so no two benchmark modules import each other."""
    bench = SRC.parents[1] / "benchmarks"
    drivers = {p.stem for p in bench.glob("*.py") if not p.name.startswith("_")}
    wrong = []
    for path in sorted(bench.glob("_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            wrong += [f"{path.name} line {node.lineno}: imports {n}" for n in names if n.split(".")[0] in drivers]
    assert not wrong, "\n".join(wrong)


EDGE_RECORDS = {"endcredits.service.records", "endcredits.service.auth"}
"""The service's own tables (usage requests; keys, sessions, challenges and login links): its records."""


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if _module_name(p).split(".")[1] in ("cli", "service", "interop", "demo")],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_edges_run_no_sql(path: Path) -> None:
    """The CLI, the service, the importers and the demo parse, call a stage and render: their SQL lives in
    the stages' records modules. A ``Connection`` passed through and SQLAlchemy's errors are fine."""
    module = _module_name(path)
    if module in EDGE_RECORDS:
        return
    sql = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "endcredits.store.schema":
                sql.append(f"line {node.lineno}: endcredits.store.schema")
            elif node.module == "sqlalchemy":
                sql += [f"line {node.lineno}: sqlalchemy.{a.name}" for a in node.names if a.name != "Connection"]
        elif isinstance(node, ast.Import):
            sql += [f"line {node.lineno}: {a.name}" for a in node.names if a.name == "sqlalchemy"]
    assert not sql, f"{module} runs SQL itself; put the query in a stage's records module:\n" + "\n".join(sql)
