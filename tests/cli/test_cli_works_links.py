"""`works add` links a lightly edited copy to the registered work; `works unlink` / `works link` let an
operator correct it; both backends."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.interop.abc import iter_tunes


def test_a_copy_is_linked_and_an_operator_can_unlink_and_link_it(tmp_path: Path, db_url: str | None) -> None:
    runner = CliRunner()
    base = ["--data", str(tmp_path / "data")] + (["--db", db_url] if db_url else [])

    def run(*args: str) -> str:
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 0, f"{args}: {result.stderr or result.stdout}"
        return result.stdout

    run("init")
    tune = next(iter(iter_tunes(limit=1))).text
    (tmp_path / "a.abc").write_text(tune)
    (tmp_path / "b.abc").write_text(tune.replace("\n", "\r\n") + "\n")  # re-encoded: CRLF, a trailing newline
    original = json.loads(
        run("works", "add", str(tmp_path / "a.abc"), "--title", "Tune", "--kind", "abc-tune", "--json")
    )
    assert original["linked_to"] is None
    copy = json.loads(
        run("works", "add", str(tmp_path / "b.abc"), "--title", "Tune (CRLF)", "--kind", "abc-tune", "--json")
    )
    assert copy["work_id"] != original["work_id"] and copy["linked_to"] == original["work_id"]
    assert copy["similarity"] >= 0.7
    assert f"no longer a copy of {original['work_id']}" in run(
        "works", "unlink", copy["work_id"], "--reason", "a different arrangement"
    )
    again = json.loads(
        run("works", "add", str(tmp_path / "b.abc"), "--title", "Tune (CRLF)", "--kind", "abc-tune", "--json")
    )
    assert again["linked_to"] is None  # an operator's unlink stands
    assert f"now a copy of {original['work_id']}" in run("works", "link", copy["work_id"], original["work_id"])
    refused = runner.invoke(app, [*base, "works", "unlink", original["work_id"], "--reason", "x"])
    assert refused.exit_code == 1 and "is not linked" in refused.stderr
