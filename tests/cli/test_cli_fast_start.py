"""A command that neither trains nor attributes starts fast: it imports none of the heavy libraries.

Each check runs the commands in a fresh Python process, as `endcredits` would, and reads
``sys.modules`` afterwards; a top-level import of torch (or pyarrow, or Alembic) on a light command's
path fails here. ``benchmarks/cli.py`` measures the time itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from endcredits.cli.app import NOUNS, walk_commands
from endcredits.store.engine import Store

SRC = Path(__file__).resolve().parents[2] / "src"

HEAVY = ("torch", "ray", "mlcroissant", "pandas", "c2pa", "numpy", "pyarrow", "alembic", "scipy", "fastapi")
"""Never on a light command's path: the interop and training libraries, and numpy, pyarrow and Alembic,
which alone cost a plain read 0.3-0.5 s of start."""

LIGHT = (
    ["people", "list"],
    ["people", "list", "--json"],
    ["works", "list", "--json"],
    ["consent", "list", "--person", "1", "--json"],
    ["ledger", "status", "--json"],
    ["ledger", "balances", "--json"],
    ["manifest", "list", "--json"],
    ["payouts", "list", "--json"],
    ["roles", "list", "--json"],
)

_RUN = """
import json, sys
from endcredits.cli.app import app
where, commands, heavy = json.loads(sys.argv[1])
codes = [app([*where, *args], standalone_mode=False) for args in commands]
sys.stdout.write("\\n" + json.dumps({"codes": codes, "loaded": sorted(m for m in heavy if m in sys.modules)}))
"""


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    base = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    base["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_light_commands_import_no_heavy_library(store: Store, db_url: str | None) -> None:
    from helpers_money import people

    people(store, "alice")
    where = ["--data", str(store.data_dir)] + (["--db", db_url] if db_url else [])
    out = json.loads(_python(_RUN, json.dumps([where, LIGHT, HEAVY])).splitlines()[-1])
    assert out["codes"] == [None] * len(LIGHT), "a light command failed; run it by hand to see why"
    assert out["loaded"] == [], f"a light command imported {out['loaded']}: import it inside the function that needs it"


def test_the_heavy_check_can_fail(tmp_path: Path) -> None:
    """The same probe sees an import where one happens: `init` creates the schema through Alembic."""
    out = _python(_RUN, json.dumps([["--data", str(tmp_path)], [["init"]], ["alembic"]]))
    assert json.loads(out.splitlines()[-1])["loaded"] == ["alembic"]


@pytest.mark.parametrize(("env", "pool"), [({}, "system"), ({"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}, "mimalloc")])
def test_the_command_makes_arrow_allocate_with_malloc_unless_told(env: dict[str, str], pool: str) -> None:
    code = (
        "import sys\n"
        "from endcredits.cli.app import main\n"
        "sys.argv = ['endcredits', 'roles', 'list', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "import pyarrow\n"
        "print(pyarrow.default_memory_pool().backend_name)\n"
    )
    assert _python(code, env=env).splitlines()[-1] == pool


def test_a_mistyped_noun_still_gets_its_suggestion() -> None:
    """Nouns are built on first use; a typo builds them all, so the suggestion still finds the one meant."""
    from typer.testing import CliRunner

    from endcredits.cli import app

    result = CliRunner().invoke(app, ["peple", "list"])
    assert result.exit_code == 2 and "Did you mean 'people'?" in result.stderr
    top = [path[1] for path, _ in walk_commands() if len(path) == 2]
    assert top[-len(NOUNS) :] == list(NOUNS) and top[0] == "serve"  # help lists root commands, then nouns
