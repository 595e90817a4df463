"""Signed-challenge sign-in under abuse, on SQLite and PostgreSQL: one client cannot lock a person out,
anonymous challenges leave no audit entry, expired ones are removed (a bounded number per issue), the
table has a bound, and neither the challenge nor a failed sign-in tells who exists or holds a did:key."""

from __future__ import annotations

import base64
import datetime as dt
import warnings
from typing import Any

import pytest
from sqlalchemy import func, select

from endcredits.service import auth, create_app
from endcredits.service.auth import NOT_SIGNED_IN, issue_challenge
from endcredits.service.throttle import ClientBudget
from endcredits.store.engine import Store
from endcredits.store.schema import audit_log, auth_challenges
from helpers_money import row_counts

with warnings.catch_warnings():  # as in conftest.py: starlette would rather have httpx2
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

NOBODY = 999_999


def _count(store: Store, table: Any) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _sign(svc: Any, message: str) -> str:
    return base64.urlsafe_b64encode(svc.a_key.sign(message.encode())).decode().rstrip("=")


def _sign_in(client: TestClient, challenge_id: str, did: str, signature: str) -> Any:
    body = {"challenge_id": challenge_id, "did": did, "signature": signature}
    return client.post("/api/v1/auth/sessions/signed-challenge", json=body)


def test_one_client_cannot_lock_a_person_out(svc: Any) -> None:
    app = create_app(svc.store)
    audits = _count(svc.store, audit_log)
    with TestClient(app, client=("203.0.113.7", 40_000)) as attacker, TestClient(app) as person:
        answers = [attacker.post("/api/v1/auth/challenges", json={"person_id": svc.a}) for _ in range(25)]
        assert [r.status_code for r in answers] == [201] * auth.CHALLENGES_PER_CLIENT_BURST + [429] * 5
        refused = answers[-1]
        assert refused.json()["error"]["code"] == "rate_limited" and int(refused.headers["retry-after"]) >= 1
        assert _count(svc.store, audit_log) == audits  # anonymous: nothing permanent
        ch = person.post("/api/v1/auth/challenges", json={"person_id": svc.a})
        assert ch.status_code == 201, ch.text
        signed_in = _sign_in(person, ch.json()["challenge_id"], svc.a_did, _sign(svc, ch.json()["message"]))
        assert signed_in.status_code == 201, signed_in.text
        other = TestClient(app, client=("198.51.100.3", 40_001))
        assert other.post("/api/v1/auth/challenges", json={"person_id": svc.a}).status_code == 201


def test_the_budget_refills_and_remembers_a_bounded_number_of_clients() -> None:
    now = [0.0]
    budget = ClientBudget(burst=2, refill_s=10, clients_max=3, clock=lambda: now[0])
    assert [budget.take("a"), budget.take("a"), budget.take("a")] == [0, 0, 10]
    now[0] = 5.0
    assert budget.take("a") == 5  # half a token back: a refusal spends nothing
    now[0] = 10.0
    assert budget.take("a") == 0 and budget.take("a") == 10
    for client in ("b", "c", "d", "e"):
        assert budget.take(client) == 0
    assert len(budget) == 3  # "a" and "b", the least recently seen, are forgotten
    assert budget.take("a") == 0
    with pytest.raises(ValueError, match="burst"):
        ClientBudget(burst=0, refill_s=1, clients_max=1)


def test_expired_challenges_are_removed_a_bounded_number_at_a_time(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert _count(svc.store, auth_challenges) == 0  # the fixture's own sign-in used its challenge up
    with svc.store.write() as conn:
        old = [issue_challenge(conn, svc.a, now=past) for _ in range(5)]
    assert _count(svc.store, auth_challenges) == 5
    late = _sign_in(svc.client, old[0].id, svc.a_did, _sign(svc, old[0].message))
    assert (late.status_code, late.json()["error"]["message"]) == (401, NOT_SIGNED_IN)
    monkeypatch.setattr(auth, "EXPIRED_CHALLENGES_SWEPT_MAX", 3)
    with svc.store.write() as conn:
        issue_challenge(conn, svc.a)
    assert _count(svc.store, auth_challenges) == 5 - 3 + 1
    with svc.store.write() as conn:
        issue_challenge(conn, svc.a)
    assert _count(svc.store, auth_challenges) == 2  # only the two live ones are left


def test_a_full_table_refuses_everyone_alike_and_changes_nothing(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "CHALLENGES_STORED_MAX", 2)
    for _ in range(2):
        assert svc.client.post("/api/v1/auth/challenges", json={"person_id": svc.a}).status_code == 201
    before = row_counts(svc.store)
    full = [svc.client.post("/api/v1/auth/challenges", json={"person_id": p}) for p in (svc.a, svc.b, NOBODY)]
    assert {r.status_code for r in full} == {429}
    assert len({r.text for r in full}) == 1 and full[0].headers["retry-after"] == str(auth.CHALLENGE_TTL_S)
    assert row_counts(svc.store) == before


def test_the_answers_tell_nobody_who_exists_or_holds_a_did_key(svc: Any) -> None:
    """A (a did:key credential), B (none) and a person who does not exist get the same kind of answer, and
    every failed sign-in the same one; only A's challenge is kept, and nothing is audited."""
    audits = _count(svc.store, audit_log)
    answers = [svc.client.post("/api/v1/auth/challenges", json={"person_id": p}) for p in (svc.a, svc.b, NOBODY)]
    assert [r.status_code for r in answers] == [201, 201, 201]
    shapes = {
        tuple((k, type(v).__name__, len(str(v))) for k, v in sorted(r.json().items()) if k != "person_id")
        for r in answers
    }
    assert len(shapes) == 1, shapes
    assert [r.json()["person_id"] for r in answers] == [svc.a, svc.b, NOBODY]
    assert _count(svc.store, auth_challenges) == 1 and _count(svc.store, audit_log) == audits
    failures = [
        _sign_in(svc.client, answers[0].json()["challenge_id"], svc.a_did, _sign(svc, "something else")),
        _sign_in(svc.client, answers[1].json()["challenge_id"], svc.a_did, _sign(svc, answers[1].json()["message"])),
        _sign_in(svc.client, answers[2].json()["challenge_id"], svc.a_did, _sign(svc, answers[2].json()["message"])),
        _sign_in(svc.client, "0" * 32, svc.a_did, _sign(svc, "x")),
        _sign_in(svc.client, answers[0].json()["challenge_id"], "did:key:zNotAKey", "AAAA"),
    ]
    assert {(r.status_code, r.text) for r in failures} == {
        (401, '{"error":{"code":"unauthorized","message":"' + NOT_SIGNED_IN + '"}}')
    }
    assert _count(svc.store, audit_log) == audits
