"""The service's own layout: the portal and the API share errors, access checks and views through their
own modules, never through each other, and neither runs SQL (the stages' records modules do)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "src" / "endcredits" / "service"


def _imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_the_portal_does_not_import_the_api() -> None:
    imported = _imported(SERVICE / "portal.py")
    assert not {m for m in imported if m.startswith("endcredits.service.app")}, imported


@pytest.mark.parametrize(
    "name",
    [
        "app.py",
        "portal.py",
        "access.py",
        "errors.py",
        "views.py",
        "gate.py",
        "throttle.py",
        "operator_sessions.py",
        "server.py",
    ],
)
def test_the_edges_run_no_sql(name: str) -> None:
    imported = _imported(SERVICE / name)
    sql = {m for m in imported if m.startswith(("sqlalchemy", "endcredits.store.schema")) and "exc" not in m}
    assert not sql, f"{name} imports {sorted(sql)}: put the query in a stage's records module"
