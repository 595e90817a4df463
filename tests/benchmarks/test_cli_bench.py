"""The CLI start benchmark (benchmarks/cli.py) times every command against each source it is given."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# By path: the name ``cli`` is also tests/cli, a folder of tests.
_SPEC = importlib.util.spec_from_file_location("benchmarks_cli", Path(__file__).parents[2] / "benchmarks" / "cli.py")
assert _SPEC is not None and _SPEC.loader is not None
cli_bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cli_bench)


def test_two_runs_of_every_command_per_source() -> None:
    result = cli_bench.run([cli_bench.SRC], runs=2, people=2)
    commands = result["commands"]
    assert isinstance(commands, dict) and set(commands) == set(cli_bench.COMMANDS)
    for per in commands.values():
        (summary,) = per.values()
        assert len(summary["runs_s"]) == 2
        assert 0 < summary["median_s"] <= summary["p90_s"] < cli_bench.TIMEOUT_S
        assert 0 < summary["cpu_median_s"]


def test_a_source_that_cannot_run_stops_it_with_the_error(tmp_path: Path) -> None:
    (tmp_path / "endcredits").mkdir()
    (tmp_path / "endcredits" / "__init__.py").write_text("raise ImportError('not this one')\n")
    with pytest.raises(SystemExit, match="not this one"):
        cli_bench.run([tmp_path], runs=2, people=2)


def test_bounds_and_p90() -> None:
    with pytest.raises(ValueError, match="runs must be in"):
        cli_bench.run([cli_bench.SRC], runs=0, people=2)
    assert cli_bench.p90([0.3, 0.1, 0.2]) == 0.3
    assert cli_bench.p90([float(i) for i in range(1, 11)]) == 9.0
