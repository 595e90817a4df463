"""The portal's guild page, on both backends: a guild key entered once on the sign-in page opens its own
guild's aggregates and its members' unclaimed lines (the figures ``ledger.guilds`` computes), never one
person's details, never another guild's; operators who read and auditors name the guild."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient
from test_guild_api import _member

from endcredits.ledger.guilds import guild_unclaimed
from endcredits.service import create_app

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def _browser(svc: Any, role: str) -> TestClient:
    """A fresh browser signed in on the portal with the key of ``role``."""
    browser = TestClient(create_app(svc.store))
    page = browser.get("/portal/signin")
    found = CSRF.search(page.text)
    assert found is not None, page.text
    r = browser.post("/portal/operator/signin", data={"csrf": found.group(1), "api_key": svc.tokens[role]})
    assert r.status_code == 200, r.text
    return browser


def test_a_guild_key_opens_its_own_page_with_its_members_aggregates(svc: Any) -> None:
    _member(svc, svc.b)
    _member(svc, svc.world.dan)  # three members: the sums are shown
    browser = _browser(svc, "guild_own")
    page = browser.get("/portal/guild")
    assert page.status_code == 200 and "Guild members" in page.text
    assert svc.guild in page.text and "3 members" in page.text
    assert "Withheld" not in page.text and "EUR" in page.text
    with svc.store.read() as conn:
        expected = guild_unclaimed(conn, svc.guild, "")
    assert expected and all(f"<td>{u.name}</td>" in page.text for u in expected)
    assert "ann-a" not in page.text  # a verified member's name is never shown: only published unclaimed lines
    assert "person:" not in page.text and "name:" not in page.text  # no holder ids
    assert "No member's unclaimed line matches." in browser.get("/portal/guild", params={"q": "zzz"}).text
    other = browser.get("/portal/guild", params={"issuer": "did:web:other.example"})
    assert other.status_code == 403
    assert browser.get("/portal/operator").status_code == 403  # a guild key is not an operator


def test_few_members_withhold_the_sums(svc: Any) -> None:
    page = _browser(svc, "guild_own").get("/portal/guild")
    assert page.status_code == 200 and "1 member hold" in page.text and "Withheld" in page.text


def test_operators_and_auditors_name_the_guild(svc: Any) -> None:
    for role in ("op_read", "auditor"):
        browser = _browser(svc, role)
        assert browser.get("/portal/guild").status_code == 422  # which guild?
        page = browser.get(f"/portal/guild?issuer={quote(svc.guild, safe=':')}")
        assert page.status_code == 200 and svc.guild in page.text
    public = TestClient(create_app(svc.store))
    assert public.get("/portal/guild", follow_redirects=False).status_code == 303  # sign in first
