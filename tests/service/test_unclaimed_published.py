"""The published list of unclaimed residuals over the API, on SQLite and PostgreSQL: anyone can search it
and download one fund's list as CSV; it shows names, amounts and dates, and never an id or a private detail;
past the escrow period it shows what moved to the fund, still claimable."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest

from endcredits.ledger.accrue import accrue
from endcredits.ledger.expiry import expire_escrow
from endcredits.money import format_amount
from endcredits.royalties import parse_agreement
from helpers_money import EXTERNAL, agreement_text, balances, on_time

PUBLIC_KEYS = {"name", "currency", "amount", "amount_microunits", "status", "owed_since", "due_on", "fund", "moved_on"}


def test_anyone_searches_the_published_list_with_dates_and_no_ids(svc: Any) -> None:
    held = {k: v for k, v in balances(svc.store, kind="escrow").items() if v}
    r = svc.client.get("/api/v1/unclaimed")
    assert r.status_code == 200, r.text
    rows = r.json()["unclaimed"]
    assert rows and all(set(row) == PUBLIC_KEYS for row in rows)
    assert sum(row["amount_microunits"] for row in rows) == sum(held.values())
    assert {row["status"] for row in rows} == {"escrow"}
    assert all(row["owed_since"] and row["due_on"] for row in rows)  # the agreement's period: 1095 days
    for internal in ("work:", "person:", "name:", "@example", "iban"):
        assert internal not in r.text.lower(), internal
    dan = svc.client.get("/api/v1/unclaimed", params={"q": "DAN"}).json()["unclaimed"]
    assert [row["name"] for row in dan] == ["dan"]


def test_one_funds_list_downloads_as_csv_after_expiry(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    w = svc.world
    text = agreement_text(pool_rate="0.5", agreement_id="fund-terms")
    ag = parse_agreement(
        text.replace("escrow_period_days = 1095", 'escrow_period_days = 30\nescrow_expiry_fund = "actors-fund"')
    )
    monkeypatch.setattr("endcredits.ledger.accrue.utc_now", lambda: "2025-01-10T09:00:00.000000Z")
    accrue(svc.store, w.usage([("o-old", 10**9, on_time(1), {w.orphan: 1.0})], ag), ag, event_id="old", source=EXTERNAL)
    monkeypatch.undo()
    held = balances(svc.store)[f"escrow:work:{w.orphan}:EUR"]
    assert svc.client.get("/api/v1/unclaimed", params={"fund": "actors-fund", "format": "csv"}).text.count("\n") == 2
    assert expire_escrow(svc.store, dt.date(2025, 2, 9)).transfers
    r = svc.client.get("/api/v1/unclaimed", params={"fund": "actors-fund", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    (row,) = csv.DictReader(io.StringIO(r.text))
    assert row == {
        "name": "Nobody's (work, nobody credited yet)",
        "currency": "EUR",
        "amount": format_amount(held, "EUR"),
        "amount_microunits": str(held),
        "status": "fund",
        "owed_since": "",
        "due_on": "",
        "fund": "actors-fund",
        "moved_on": dt.datetime.now(dt.UTC).date().isoformat(),
    }
    assert w.orphan[:16] not in r.text
    bad = svc.client.get("/api/v1/unclaimed", params={"fund": "Not A Fund"})
    assert bad.status_code == 422
