"""Scripts read the CLI: every command that creates or reads takes `--json` and prints one JSON object,
with every amount as integer microunits; `ledger balances` shows conservation. Both backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import update
from typer.core import TyperGroup
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.cli.app import walk_commands
from endcredits.store.engine import open_store
from endcredits.store.schema import accounts

NO_JSON = {
    "endcredits serve": "runs the API until interrupted; it prints nothing a script reads",
    "endcredits statements": "prints the statement itself, as JSON by default (--format json) or CSV",
    "endcredits manifest prove": "its output is always one JSON object: the proof",
}
"""Commands without --json, and why. It may only shrink."""

AGREEMENT = """\
id = "json"
version = 1
currency = "EUR"
pool_rate = "0.5"
rights_holder_share = "0.25"
lineage_pass_through = "0.2"
payout_threshold = "0.10"
escrow_period_days = 365
[role_weights]
"endcredits:composer" = 3
"endcredits:performer" = 1
"""


def _commands() -> dict[str, Any]:
    return {" ".join(path): c for path, c in walk_commands() if not isinstance(c, TyperGroup)}


def test_every_command_takes_json_or_says_why_not() -> None:
    commands = _commands()
    without = sorted(name for name, c in commands.items() if not any("--json" in p.opts for p in c.params))
    assert without == sorted(NO_JSON), "give the command --json (print_json of one object), or say why in NO_JSON"
    assert len(commands) > 50  # the walk sees every noun's commands, not only the root's


def _amounts_are_integers(value: Any, where: str = "") -> None:
    """Every ``..._microunits`` value, or map of them, holds Python ints (never text, never a float)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k).endswith("_microunits"):
                leaves = v.values() if isinstance(v, dict) else [v]
                assert all(type(x) is int for x in leaves), f"{where}.{k} = {v!r} is not integer microunits"
            _amounts_are_integers(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _amounts_are_integers(v, f"{where}[{i}]")


class Cli:
    def __init__(self, data: Path, db: str | None) -> None:
        self.base = ["--data", str(data)] + (["--db", db] if db else [])
        self.runner = CliRunner()

    def run(self, *args: str, code: int = 0) -> str:
        result = self.runner.invoke(app, [*self.base, *args])
        assert result.exit_code == code, f"{args}: {result.stderr or result.stdout}"
        return result.stdout

    def json(self, *args: str, code: int = 0) -> Any:
        out = json.loads(self.run(*args, "--json", code=code))
        assert isinstance(out, dict), f"{args} printed {type(out).__name__}, not one JSON object"
        _amounts_are_integers(out, " ".join(args[:2]))
        return out


def _world(cli: Cli, tmp_path: Path) -> dict[str, Any]:
    """Two works, a person on one and an unclaimed name on the other, a manifest, one accrued batch."""
    assert cli.json("init")["backend"] in ("sqlite", "postgresql")
    (tmp_path / "agreement.toml").write_text(AGREEMENT)
    assert cli.json("agreement", "load", str(tmp_path / "agreement.toml"))["status"] == "created"
    pid = cli.json("people", "add", "ada")["person_id"]
    works = []
    for title in ("First tune", "Second tune"):
        (tmp_path / f"{title}.txt").write_text(f"{title}, as played\n")
        works.append(cli.json("works", "add", str(tmp_path / f"{title}.txt"), "--title", title)["work_id"])
    on_person = cli.json("credits", "add", works[0], "--payee", f"person:{pid}", "--role", "endcredits:composer")
    assert (on_person["added"], on_person["name_id"]) == (1, None)
    on_name = cli.json("credits", "add", works[1], "--name", "Jack Campin", "--role", "endcredits:performer")
    assert on_name["added"] == 1 and on_name["payee"] == f"name:{on_name['name_id']}"
    grant = cli.json(
        "consent", "grant", "--person", str(pid), "--use", "commercial", "--decision", "allowed", "--source", "form",
        "--from", "2026-01-01", "--until", "2030-01-01",
    )  # fmt: skip
    assert grant["grant"]["id"] == grant["grant_id"] and grant["grant"]["subject"] == f"person:{pid}"
    assert cli.json("consent", "list", "--person", str(pid))["grants"] == [grant["grant"]]
    manifest = cli.json(
        "manifest", "build", "--model", "m", "--use", "commercial", "--default", "opt-out", "--as-of", "2026-06-01"
    )
    (tmp_path / "outputs.csv").write_text(
        "output_id,model_id,revenue,currency,occurred_at\no-1,m,3.00,EUR,2026-11-02T10:00:00Z\n"
    )
    (tmp_path / "scores.csv").write_text(f"output_id,work_id,score\no-1,{works[0]},0.6\no-1,{works[1]},0.4\n")
    accrued = cli.json(
        "accrue", "--outputs", str(tmp_path / "outputs.csv"), "--attributions", str(tmp_path / "scores.csv"),
        "--external", "hand-made", "--agreement", "json", "--batch-id", "nov-1",
    )  # fmt: skip
    return {"pid": pid, "works": works, "name_id": on_name["name_id"], "manifest": manifest, "accrued": accrued}


def test_a_script_follows_the_money_through_json(tmp_path: Path, db_url: str | None) -> None:
    cli = Cli(tmp_path / "data", db_url)
    w = _world(cli, tmp_path)
    pool = w["accrued"]["pool_microunits"]
    assert pool == 150_000_000  # half of 3.00 EUR

    balances = cli.json("ledger", "balances")
    eur = balances["currencies"]["EUR"]
    assert balances["conserved"] is True and eur["conserved"] is True
    assert eur["pool_microunits"] == pool
    assert eur["pool_microunits"] == eur["paid_microunits"] + eur["escrow_microunits"] + eur["suspense_microunits"]
    assert eur["escrow_microunits"] > 0 and eur["paid_microunits"] == 0  # nobody is verified yet
    assert "EUR conserved: pool 150000000 = paid 0 + escrow" in cli.run("ledger", "balances")

    # Verifying the person releases their escrow; claiming the name by the id `credits add` printed, the rest.
    verified = cli.json("people", "verify", str(w["pid"]), "--issuer", "guild")
    released = verified["released_microunits"]["EUR"]
    assert released > 0 and verified["transfers"]
    people = cli.json("people", "list")
    assert people["total"] == 1 and people["people"][0]["payable_microunits"] == {"EUR": released}
    claimed = cli.json("escrow", "claim", "--person", str(w["pid"]), "--name", str(w["name_id"]))
    after = cli.json("ledger", "balances")["currencies"]["EUR"]
    assert after["escrow_microunits"] == eur["escrow_microunits"] - released - claimed["released_microunits"]["EUR"]
    assert after["escrow_microunits"] == 0 and after["payable_microunits"] == pool - after["suspense_microunits"]
    assert after["conserved"] is True and after["pool_microunits"] == pool

    shown = cli.json("manifest", "show", w["manifest"]["manifest_id"], "--works", "--limit", "1")
    assert shown["included"] == 2 and len(shown["works"]) == 1
    assert shown["works"][0]["leaf"] == 0 and shown["works"][0]["title"] in ("First tune", "Second tune")
    everything = cli.json("manifest", "show", w["manifest"]["manifest_id"], "--works")["works"]
    assert sorted(x["work_id"] for x in everything) == sorted(w["works"])
    assert "included works (2 of 2)" in cli.run("manifest", "show", w["manifest"]["manifest_id"], "--works")
    assert "works" not in cli.json("manifest", "show", w["manifest"]["manifest_id"])
    assert cli.json("payouts", "list") == {"batches": []}


def test_credits_add_says_the_name_id_in_text_too(tmp_path: Path, db_url: str | None) -> None:
    cli = Cli(tmp_path / "data", db_url)
    cli.run("init")
    (tmp_path / "a.txt").write_text("a work\n")
    work = cli.json("works", "add", str(tmp_path / "a.txt"), "--title", "A")["work_id"]
    out = cli.run("credits", "add", work, "--name", "Mary Smith", "--role", "endcredits:composer")
    held = cli.json("credits", "list", work)["credits"][0]["payee"]
    assert held.startswith("name:") and f"(name_id {held.removeprefix('name:')})" in out


def test_ledger_balances_exits_1_when_a_currency_does_not_conserve(tmp_path: Path, db_url: str | None) -> None:
    cli = Cli(tmp_path / "data", db_url)
    w = _world(cli, tmp_path)
    cli.run("ledger", "fold")  # the accrual's legs into the account rows, where a bad edit can reach them
    store = open_store(tmp_path / "data", db_url)
    try:
        with store.write() as conn:  # what no endcredits code does: change a balance in place
            conn.execute(update(accounts).where(accounts.c.kind == "pool").values(balance_microunits=-(10**20)))
    finally:
        store.dispose()
    broken = cli.json("ledger", "balances", code=1)
    eur = broken["currencies"]["EUR"]
    assert broken["conserved"] is False and eur["conserved"] is False
    assert eur["pool_microunits"] == 10**20  # beyond int64, exact
    assert (
        eur["paid_microunits"] + eur["escrow_microunits"] + eur["suspense_microunits"]
        == w["accrued"]["pool_microunits"]
    )
    assert "EUR NOT CONSERVED" in cli.run("ledger", "balances", code=1)


def test_training_fees_are_posted_once_and_conserve(tmp_path: Path, db_url: str | None) -> None:
    import datetime as dt

    from endcredits.consent.terms import LicenceTerm, add_terms

    cli = Cli(tmp_path / "data", db_url)
    w = _world(cli, tmp_path)
    store = open_store(tmp_path / "data", db_url)
    try:
        with store.write() as conn:
            start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
            term = LicenceTerm(w["works"][0], "training", 25_000_000, "EUR", ("commercial",), "rsl", start, None, True)
            add_terms(conn, [term])
    finally:
        store.dispose()
    manifest = w["manifest"]["manifest_id"]
    first = cli.json("ledger", "training-fees", "--manifest", manifest, "--agreement", "json")
    assert (first["status"], first["total_microunits"], first["works"]) == ("created", 25_000_000, 1)
    again = cli.json("ledger", "training-fees", "--manifest", manifest, "--agreement", "json")
    assert (again["status"], again["total_microunits"]) == ("exists", 25_000_000)
    assert cli.json("ledger", "balances")["conserved"] is True
    assert cli.json("verify")["ok"] is True
