"""Flows and hostile input over HTTP: idempotent ingestion, one-use challenges and links, and every kind
of bad request answered with a 4xx, a clear message, and no row changed."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from endcredits.payouts.pain002 import write_pain002
from endcredits.service.auth import NOT_SIGNED_IN
from helpers_money import on_time, row_counts

OP = "op_all"


def _batch(svc: Any, batch_id: str = "api-1", revenue: str = "12.34", **extra: Any) -> dict[str, Any]:
    out = {
        "output_id": f"{batch_id}-o",
        "model_id": "m",
        "revenue": revenue,
        "currency": "EUR",
        "occurred_at": on_time(1, 5),
        "work_scores": {svc.world.song: 0.7, svc.world.film: 0.3},
    }
    out.update(extra)
    external = {"reason": "the operator's own scores"}
    return {"batch_id": batch_id, "agreement_id": "test-2026", "external": external, "outputs": [out]}


def test_usage_batches_are_idempotent_by_batch_id(svc: Any) -> None:
    c, h = svc.client, {**svc.headers(OP), "Prefer": "wait"}
    first = c.post("/api/v1/usage-batches", json=_batch(svc), headers=h)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "created" and first.json()["pool"] == "6.17"
    before = row_counts(svc.store)
    again = c.post("/api/v1/usage-batches", json=_batch(svc), headers=h)
    assert (again.status_code, again.json()) == (200, first.json())
    assert row_counts(svc.store) == before
    other = c.post("/api/v1/usage-batches", json=_batch(svc, revenue="12.35"), headers=h)
    assert other.status_code == 409 and "other content" in other.json()["error"]["message"]
    assert row_counts(svc.store) == before
    assert c.get("/api/v1/usage-batches/api-1", headers=svc.headers("auditor")).json() == first.json()


def test_a_signed_challenge_works_once(svc: Any) -> None:
    c = svc.client
    ch = c.post("/api/v1/auth/challenges", json={"person_id": svc.a}).json()
    sig = base64.urlsafe_b64encode(svc.a_key.sign(ch["message"].encode())).decode()
    body = {"challenge_id": ch["challenge_id"], "did": svc.a_did, "signature": sig}
    assert c.post("/api/v1/auth/sessions/signed-challenge", json=body).status_code == 201
    before = row_counts(svc.store)
    replay = c.post("/api/v1/auth/sessions/signed-challenge", json=body)
    assert replay.status_code == 401 and replay.json()["error"]["message"] == NOT_SIGNED_IN
    ch2 = c.post("/api/v1/auth/challenges", json={"person_id": svc.a}).json()
    before = row_counts(svc.store)
    wrong = c.post("/api/v1/auth/sessions/signed-challenge", json={**body, "challenge_id": ch2["challenge_id"]})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == NOT_SIGNED_IN
    no_did = c.post("/api/v1/auth/challenges", json={"person_id": svc.b})
    assert no_did.status_code == 201 and set(no_did.json()) == set(ch2)
    assert row_counts(svc.store) == before


def test_a_login_link_works_once_and_sign_out_ends_the_session(svc: Any) -> None:
    c = svc.client
    token = c.post("/api/v1/login-links", json={"person_id": svc.b}, headers=svc.headers(OP)).json()["token"]
    session = c.post("/api/v1/auth/sessions/login-link", json={"token": token}).json()["session_token"]
    assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {session}"}).json()["person_id"] == svc.b
    assert c.post("/api/v1/auth/sessions/login-link", json={"token": token}).status_code == 401
    assert c.delete("/api/v1/auth/session", headers={"Authorization": f"Bearer {session}"}).status_code == 204
    gone = c.get("/api/v1/me", headers={"Authorization": f"Bearer {session}"})
    assert gone.status_code == 401 and "signed out" in gone.json()["error"]["message"]


def test_names_with_sql_and_html_are_stored_verbatim_and_escaped(svc: Any) -> None:
    c, h = svc.client, svc.headers(OP)
    for handle in ("Robert'); DROP TABLE people;--", "<script>alert(1)</script> & co"):
        r = c.post("/api/v1/people", json={"handle": handle}, headers=h)
        assert r.status_code == 201
        assert "<script>" not in r.text and r.json()["handle"] == handle
        got = c.get(f"/api/v1/people/{r.json()['person_id']}", headers=h)
        assert got.json()["handle"] == handle and "<" not in got.text
    public = c.get("/api/v1/escrow", params={"q": "star"})
    assert "<b>" not in public.text


def test_payout_statuses_by_pain002_and_json(svc: Any) -> None:
    c, h = svc.client, svc.headers(OP)
    import datetime as dt

    xml = write_pain002(
        {svc.payout_e2e: "RJCT"},
        original_message_id="x",
        message_id="y",
        created_at=dt.datetime(2026, 2, 2, tzinfo=dt.UTC),
    )
    r = c.post("/api/v1/payout-batches/PB-SEED/statuses", content=xml, headers={**h, "Content-Type": "application/xml"})
    assert r.status_code == 200, r.text
    assert r.json()["failed"] == 1
    listed = c.get("/api/v1/payout-batches", headers=h).json()["batches"]
    assert [b["batch_id"] for b in listed] == ["PB-SEED"]


BAD: list[tuple[str, str, str, Any, dict[str, str], int, str]] = [
    # (case, method, path, json body or raw bytes, extra headers, status, message fragment)
    ("wrong type", "POST", "/api/v1/people", {"handle": 5}, {}, 422, "handle"),
    ("unknown field", "POST", "/api/v1/people", {"handle": "x", "admin": True}, {}, 422, "admin"),
    ("string for int", "POST", "/api/v1/login-links", {"person_id": "1"}, {}, 422, "person_id"),
    ("malformed json", "POST", "/api/v1/people", b"{not json", {"Content-Type": "application/json"}, 422, "JSON"),
    ("huge body", "POST", "/api/v1/people", b"x" * (2 << 20), {"Content-Type": "application/json"}, 413, "exceeds"),
    (
        "huge usage body",
        "POST",
        "/api/v1/usage-batches",
        b"x" * (33 << 20),
        {"Content-Type": "application/json"},
        413,
        "exceeds",
    ),
    ("control chars", "POST", "/api/v1/people", {"handle": "a\u0000b"}, {}, 422, "control"),
    ("too long", "POST", "/api/v1/people", {"handle": "x" * 201}, {}, 422, "handle"),
    ("huge id", "GET", "/api/v1/people/99999999999999999999", None, {}, 422, "person_id"),
    ("unknown person", "GET", "/api/v1/people/424242", None, {}, 404, "no person 424242"),
    ("bad period", "GET", "/api/v1/people/1/statements/2026-1x?currency=EUR", None, {}, 422, "YYYY-MM"),
    ("no currency", "GET", "/api/v1/people/1/statements/2026-01", None, {}, 422, "currency"),
    ("float revenue", "POST", "/api/v1/usage-batches", "float", {}, 422, "revenue"),
    ("exponent revenue", "POST", "/api/v1/usage-batches", "1e5", {}, 422, "revenue"),
    ("negative revenue", "POST", "/api/v1/usage-batches", "-1.00", {}, 422, "revenue"),
    ("naive time", "POST", "/api/v1/usage-batches", "naive", {}, 422, "timezone"),
    ("unknown work", "POST", "/api/v1/usage-batches", "unknown-work", {}, 422, "not in manifest"),
    ("both scores", "POST", "/api/v1/usage-batches", "both", {}, 422, "exactly one"),
    (
        "nan score",
        "POST",
        "/api/v1/usage-batches",
        (
            b'{"batch_id":"n","agreement_id":"test-2026","outputs":[{"output_id":'
            b'"o","model_id":"m","revenue":"1","currency":"EUR","occurred_at":"2026-01-01T00:00:00Z","payee_scores":'
            b'{"person:1":NaN}}]}'
        ),
        {"Content-Type": "application/json"},
        422,
        "payee_scores",
    ),
    ("unknown agreement", "POST", "/api/v1/usage-batches", "agreement", {}, 404, "agreement"),
    ("scores of no source", "POST", "/api/v1/usage-batches", "no-source", {}, 422, "give attribution_run_id"),
    ("two sources", "POST", "/api/v1/usage-batches", "two-sources", {}, 422, "give attribution_run_id"),
    ("unknown run", "POST", "/api/v1/usage-batches", "unknown-run", {}, 404, "no attribution run run-nothing"),
    ("run and scores", "POST", "/api/v1/usage-batches", "run-and-scores", {}, 422, "brings its own scores"),
    ("long reason", "POST", "/api/v1/usage-batches", "long-reason", {}, 422, "reason"),
    ("multi-line reason", "POST", "/api/v1/usage-batches", "newline-reason", {}, 422, "the reason for external"),
    (
        "xml garbage",
        "POST",
        "/api/v1/payout-batches/PB-SEED/statuses",
        b"<a><b></a>",
        {"Content-Type": "application/xml"},
        422,
        "",
    ),
    (
        "xml entity",
        "POST",
        "/api/v1/payout-batches/PB-SEED/statuses",
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x "y">]><d>&x;</d>',
        {"Content-Type": "application/xml"},
        422,
        "",
    ),
    (
        "status text",
        "POST",
        "/api/v1/payout-batches/PB-SEED/statuses",
        b"settled",
        {"Content-Type": "text/plain"},
        422,
        "application/xml",
    ),
    (
        "status value",
        "POST",
        "/api/v1/payout-batches/PB-SEED/statuses",
        {"statuses": {"E": "paid"}},
        {},
        422,
        "statuses",
    ),
    ("blob mismatch", "PUT", "/api/v1/blobs/" + "0" * 64, b"abc", {}, 422, "hashes to"),
    ("work without content", "POST", "/api/v1/works", {"title": "t"}, {}, 422, "exactly one"),
    ("work unknown blob", "POST", "/api/v1/works", {"title": "t", "sha256": "1" * 64}, {}, 404, "content"),
    (
        "credit unknown work",
        "POST",
        "/api/v1/works/" + "2" * 64 + "/credits",
        {"role": "endcredits:vfx", "payee": "person:1"},
        {},
        404,
        "not registered",
    ),
    ("bad role", "POST", "/api/v1/works/{song}/credits", {"role": "Bad Role", "payee": "person:1"}, {}, 422, "role"),
    (
        "consent no end",
        "POST",
        "/api/v1/consent-grants",
        {"use": "commercial", "decision": "allowed", "source": "s", "person_id": 1},
        {},
        422,
        "perpetual",
    ),
    (
        "consent unknown use",
        "POST",
        "/api/v1/consent-grants",
        {"use": "mind_reading", "decision": "allowed", "source": "s", "person_id": 1, "perpetual": True},
        {},
        422,
        "use",
    ),
    ("revoke unknown", "POST", "/api/v1/consent-grants/777/revoke", {}, {}, 404, "777"),
    ("claim unverified", "POST", "/api/v1/escrow/claims", {"person_id": "B"}, {}, 409, "not verified"),
    ("forged token", "GET", "/api/v1/payout-batches", None, {"Authorization": "Bearer eck_abc_def"}, 401, "unknown"),
    ("forged session", "GET", "/api/v1/me", None, {"Authorization": "Bearer ecs_" + "x" * 43}, 401, "unknown session"),
    ("basic auth", "GET", "/api/v1/me", None, {"Authorization": "Basic dXNlcjpwYXNz"}, 401, "Bearer"),
    ("huge token", "GET", "/api/v1/me", None, {"Authorization": "Bearer " + "e" * 5000}, 401, "malformed"),
    ("unknown route", "GET", "/api/v1/nothing-here", None, {}, 404, "Not Found"),
]


def _usage_body(svc: Any, kind: str) -> dict[str, Any]:
    body = _batch(svc, "bad-1")
    out = body["outputs"][0]
    if kind == "float":
        out["revenue"] = 12.5
    elif kind in ("1e5", "-1.00"):
        out["revenue"] = kind
    elif kind == "naive":
        out["occurred_at"] = "2026-01-05T12:00:00"
    elif kind == "unknown-work":
        out["work_scores"] = {"3" * 64: 1.0}
    elif kind == "both":
        out["payee_scores"] = {f"person:{svc.a}": 1.0}
    elif kind == "agreement":
        body["agreement_id"] = "no-such-agreement"
    elif kind in ("no-source", "two-sources", "unknown-run", "run-and-scores"):
        if kind != "two-sources":
            del body["external"]
        if kind != "no-source":
            body["attribution_run_id"] = "run-nothing"
        if kind == "unknown-run":
            del out["work_scores"]
    elif kind == "long-reason":
        body["external"]["reason"] = "x" * 501
    elif kind == "newline-reason":
        body["external"]["reason"] = "mine\nall mine"
    return body


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_and_changes_nothing(svc: Any, case: tuple[Any, ...]) -> None:
    _, method, path, body, headers, status, fragment = case
    h = {**svc.headers(OP), **headers}
    if isinstance(body, str):
        body = _usage_body(svc, body)
    if isinstance(body, dict) and body.get("person_id") == "B":
        body = {"person_id": svc.b}
    path = path.replace("{song}", svc.world.song)
    before = row_counts(svc.store)
    if isinstance(body, bytes):
        r = svc.client.request(method, path, content=body, headers=h)
    else:
        r = svc.client.request(method, path, json=body, headers=h)
    assert r.status_code == status, r.text[:500]
    error = r.json()["error"]
    assert fragment.lower() in error["message"].lower() and error["code"]
    assert row_counts(svc.store) == before


def test_a_streamed_body_over_the_bound_is_refused(svc: Any) -> None:
    def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65_536

    before = row_counts(svc.store)
    r = svc.client.post(
        "/api/v1/people", content=chunks(), headers={**svc.headers(OP), "Content-Type": "application/json"}
    )
    assert r.status_code == 413 and json.loads(r.text)["error"]["code"] == "limit_exceeded"
    assert row_counts(svc.store) == before


def test_a_near_duplicate_work_is_linked_to_the_registered_one(svc: Any) -> None:
    """POST /works fingerprints a new work like `endcredits works add`: an edited copy is not a new payee."""
    c, h = svc.client, svc.headers(OP)
    text = " ".join(f"verse {i} of the ballad of the long road home" for i in range(40))
    first = c.post(
        "/api/v1/works",
        json={"title": "ballad", "kind": "text", "content_base64": base64.b64encode(text.encode()).decode()},
        headers=h,
    )
    assert first.status_code == 201, first.text
    assert first.json()["canonical_work_id"] is None
    edited = text.replace("verse 7 ", "verse seven ")
    second = c.post(
        "/api/v1/works",
        json={"title": "ballad, edited", "kind": "text", "content_base64": base64.b64encode(edited.encode()).decode()},
        headers=h,
    )
    assert second.status_code == 201, second.text
    assert second.json()["created"] is True
    assert second.json()["canonical_work_id"] == first.json()["work_id"]
