"""A trusted guild's API key: made only for an issuer on the trust list, it reads that guild's aggregate view
and its members' unclaimed lines (the same figures as ``ledger.guilds``), and stops working when the operator
distrusts the issuer. Both backends (the ``svc`` world's store)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from endcredits.cli import app as cli
from endcredits.errors import CredentialError, ValidationError
from endcredits.ledger.expiry import published_unclaimed
from endcredits.ledger.guilds import guild_view
from endcredits.registry.identity.trusted import distrust_issuer, trust_issuer
from endcredits.service.auth import create_api_key
from endcredits.store.engine import format_time
from endcredits.store.schema import credentials
from helpers_money import row_counts


def _member(svc: Any, person: int) -> None:
    """Record that ``person`` holds a valid credential of the ``svc`` guild (as ``attach_credential`` would)."""
    with svc.store.write() as conn:
        conn.execute(
            credentials.insert().values(
                person_id=person,
                credential_id=f"urn:uuid:member-{person}",
                issuer=svc.guild,
                subject=f"did:example:{person}",
                valid_until=format_time(dt.datetime(2036, 1, 1, tzinfo=dt.UTC)),
                credential_json="{}",
                added_at=format_time(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
            )
        )


def _get(svc: Any, role: str, what: str, query: str = "") -> Any:
    return svc.client.get(f"/api/v1/guilds/{quote(svc.guild, safe=':')}/{what}{query}", headers=svc.headers(role))


def test_a_guild_key_reads_its_view_as_the_stage_computes_it(svc: Any) -> None:
    alone = _get(svc, "guild_own", "view")
    assert alone.status_code == 200, alone.text
    assert alone.json()["members"] == 1 and alone.json()["accrued_microunits"] is None  # one member: withheld
    _member(svc, svc.b)
    _member(svc, svc.world.dan)
    answer = _get(svc, "guild_own", "view").json()
    with svc.store.read() as conn:
        expected = guild_view(conn, svc.guild, dt.datetime.now(dt.UTC)).to_json()
    assert answer == expected and answer["members"] == 3
    assert int(answer["accrued_microunits"]["EUR"]) > 0 and int(answer["escrow_microunits"]["EUR"]) > 0
    text = json.dumps(answer)
    assert all(handle not in text for handle in ("ann-a", "ben-b", "dan"))  # never one person's details
    assert _get(svc, "auditor", "view").json() == answer and _get(svc, "op_read", "view").json() == answer
    assert _get(svc, "guild_other", "view").status_code == 403


def test_a_guild_sees_its_members_unclaimed_lines_only(svc: Any) -> None:
    _member(svc, svc.world.dan)  # dan is not verified: his money waits in escrow
    r = _get(svc, "guild_own", "unclaimed")
    assert r.status_code == 200, r.text
    rows = r.json()["unclaimed"]
    with svc.store.read() as conn:
        public = [u.to_json() for u in published_unclaimed(conn, "", limit=100)]
    assert [row["name"] for row in rows] == ["dan"] and rows[0] in public
    assert len(public) > len(rows)  # the unclaimed name and the orphan work are not the guild's
    assert all("holder" not in row for row in rows)
    assert _get(svc, "guild_own", "unclaimed", "?q=zzz").json()["unclaimed"] == []
    assert _get(svc, "guild_other", "unclaimed").status_code == 403


def test_a_guild_key_is_refused_elsewhere_and_void_once_distrusted(svc: Any) -> None:
    assert svc.client.get("/api/v1/payout-batches", headers=svc.headers("guild_own")).status_code == 403
    assert svc.client.get(f"/api/v1/people/{svc.a}", headers=svc.headers("guild_own")).status_code == 403
    with svc.store.write() as conn:
        distrust_issuer(conn, svc.guild)
    refused = _get(svc, "guild_own", "view")
    assert refused.status_code == 401 and "no longer trusts" in refused.json()["error"]["message"]
    with svc.store.write() as conn:
        trust_issuer(conn, svc.guild, note="trusted again")
    assert _get(svc, "guild_own", "view").status_code == 200


@pytest.mark.parametrize(
    ("role", "scopes", "issuer", "error", "message"),
    [
        ("guild", [], None, ValidationError, "give --issuer ID"),
        ("guild", ["read"], "did:web:other-guild.example", ValidationError, "give no --scope"),
        ("guild", [], "did:web:stranger.example", CredentialError, "untrusted_issuer"),
        ("operator", ["read"], "did:web:other-guild.example", ValidationError, "--issuer is for a guild key"),
        ("auditor", [], "did:web:other-guild.example", ValidationError, "--issuer is for a guild key"),
    ],
)
def test_a_bad_guild_key_is_refused_with_nothing_written(
    svc: Any, role: str, scopes: list[str], issuer: str | None, error: type[Exception], message: str
) -> None:
    before = row_counts(svc.store)
    with pytest.raises(error, match=message), svc.store.write() as conn:
        create_api_key(conn, role=role, scopes=scopes, label="bad", issuer=issuer)
    assert row_counts(svc.store) == before


def test_the_cli_makes_a_guild_key_for_a_trusted_issuer_only(tmp_path: Path, db_url: str | None) -> None:
    where = ["--data", str(tmp_path / "data")] + (["--db", db_url] if db_url else [])
    issuer = "did:web:guild.example"
    runner = CliRunner()
    refused = runner.invoke(cli, [*where, "operator-key", "create", "--role", "guild", "--issuer", issuer])
    assert refused.exit_code == 1 and "untrusted_issuer" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert runner.invoke(cli, [*where, "guild", "trust", issuer, "--note", "the guild"]).exit_code == 0
    made = runner.invoke(cli, [*where, "operator-key", "create", "--role", "guild", "--issuer", issuer, "--json"])
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)
    assert key["role"] == "guild" and key["issuer"] == issuer and key["scopes"] == []
    assert key["key"].startswith("eck_")
    listed = json.loads(runner.invoke(cli, [*where, "operator-key", "list", "--json"]).stdout)["keys"]
    assert [(k["role"], k["issuer"], k["scopes"]) for k in listed] == [("guild", issuer, [])]
