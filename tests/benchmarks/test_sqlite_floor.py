"""The raw SQLite floor script (benchmarks/sqlite_floor.py) writes what each design says it writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_floor


def _counts(directory: Path) -> dict[str, int]:
    conn = sqlite3.connect(directory / "floor.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        conn.close()


def test_each_design_commits_its_rows(tmp_path: Path) -> None:
    for name, design in sqlite_floor.DESIGNS.items():
        directory = tmp_path / name
        directory.mkdir()
        assert design(str(directory), 50) > 0
        counts = _counts(directory)
        if name == "segment":
            assert counts == {"outputs": 50, "segments": 1}
        else:  # a steady batch is the second over the same payees: legs and outputs twice
            twice = 2 if name == "rows_steady" else 1
            assert counts == {"accounts": 50, "legs": 50 * twice, "carries": 50, "outputs": 50 * twice}


def test_run_reports_every_design_per_round() -> None:
    result = sqlite_floor.run(payees=20, rounds=2)
    assert result["items"] == 200
    for name in sqlite_floor.DESIGNS:
        assert len(result[f"{name}_s"]) == 2  # type: ignore[arg-type]
        assert result[f"{name}_line_items_per_s_median"] > 0  # type: ignore[operator]
