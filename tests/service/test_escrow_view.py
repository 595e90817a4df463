"""Who sees what of unclaimed residuals, on SQLite and PostgreSQL: the public and contributors names and
amounts only (a work nobody is credited on by its title, never an internal id); operators who read or
release escrow, and auditors, also the holder ids they act on."""

from __future__ import annotations

from typing import Any

from endcredits.ledger.accrue import accrue
from helpers_money import EXTERNAL, agreement, on_time

NAMES_ONLY = {"name", "currency", "amount", "amount_microunits"}


def _with_orphan_escrow(svc: Any) -> None:
    w = svc.world
    ag = agreement(pool_rate="0.5", payout_threshold="0.01")
    accrue(
        svc.store,
        w.usage([("o-orphan", 10**8, on_time(1, 4), {w.orphan: 1.0})], ag),
        ag,
        event_id="orphan",
        source=EXTERNAL,
    )


def test_the_public_and_contributors_see_names_and_amounts_only(svc: Any) -> None:
    _with_orphan_escrow(svc)
    for role in ("public", "contributor_a", "contributor_b", "op_ingest", "op_registry"):
        r = svc.client.get("/api/v1/escrow", headers=svc.headers(role))
        assert r.status_code == 200, (role, r.text)
        rows = r.json()["escrow"]
        assert rows and all(set(row) == NAMES_ONLY for row in rows), role
        for internal in ("work:", "person:", "name:", svc.world.orphan[:16]):
            assert internal not in r.text, (role, internal)
        assert "Nobody's (work, nobody credited yet)" in [row["name"] for row in rows]


def test_those_who_act_on_escrow_see_the_holders(svc: Any) -> None:
    _with_orphan_escrow(svc)
    for role in ("op_read", "op_payouts", "auditor"):
        rows = svc.client.get("/api/v1/escrow", headers=svc.headers(role)).json()["escrow"]
        assert rows and all(set(row) == NAMES_ONLY | {"holder"} for row in rows), role
        assert {row["holder"] for row in rows} >= {f"name:{svc.world.bob}", f"work:{svc.world.orphan}"}


def test_an_internal_id_matches_no_search(svc: Any) -> None:
    _with_orphan_escrow(svc)
    for who in ("public", "op_read"):
        by_id = svc.client.get("/api/v1/escrow", params={"q": f"work:{svc.world.orphan[:8]}"}, headers=svc.headers(who))
        assert by_id.status_code == 200 and by_id.json()["escrow"] == []
        everything = svc.client.get("/api/v1/escrow", headers=svc.headers(who)).json()["escrow"]
        assert "Nobody's (work, nobody credited yet)" in [row["name"] for row in everything]
