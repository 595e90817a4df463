"""Every role against every endpoint: who may, who is refused, and that a refusal changes nothing.

Denied answers are exact: 401 without valid credentials (the public, a revoked key, a forged key), 404
for another person's data (the same as for a person that does not exist), 403 for a role without the
right. Allowed answers are 2xx (attribution: 409, as no checkpoint is registered in this world)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from endcredits.consent.records import add_grants
from endcredits.consent.rules import Grant
from endcredits.service.auth import create_login_link, issue_challenge
from helpers_money import on_time, row_counts

ROLES = (
    "public",
    "contributor_a",
    "contributor_b",
    "op_ingest",
    "op_registry",
    "op_payouts",
    "op_read",
    "auditor",
    "guild_own",
    "guild_other",
    "revoked",
    "forged",
)
READERS = {"op_read", "auditor"}
UNAUTHENTICATED = {"public", "revoked", "forged"}


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: Callable[[Any, str], str]
    allowed: frozenset[str]
    body: Callable[[Any, str], Any] | None = None
    cross_person: frozenset[str] = frozenset()  # roles refused with 404 (another person's data)
    allowed_status: int | None = None  # when an allowed call does not answer 2xx
    content: Callable[[Any, str], bytes] | None = None


def _grant_on_a(s: Any, _role: str) -> str:
    with s.store.write() as conn:
        (gid,) = add_grants(
            conn,
            [
                Grant(
                    subject_kind="person",
                    subject_id=str(s.a),
                    use="research",
                    decision="allowed",
                    valid_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                    valid_until=None,
                    perpetual=True,
                    source="test",
                )
            ],
        )
    return f"/api/v1/consent-grants/{gid}/revoke"


def _signed(s: Any, _role: str) -> dict[str, str]:
    with s.store.write() as conn:
        c = issue_challenge(conn, s.a)
    sig = base64.urlsafe_b64encode(s.a_key.sign(c.message.encode())).decode()
    return {"challenge_id": c.id, "did": s.a_did, "signature": sig}


def _link(s: Any, _role: str) -> dict[str, str]:
    with s.store.write() as conn:
        return {"token": create_login_link(conn, s.b, created_by="test").token}


def _usage(s: Any, role: str) -> dict[str, Any]:
    return {
        "batch_id": f"m-{role}",
        "agreement_id": "test-2026",
        "external": {"reason": "the operator's own scores"},
        "outputs": [
            {
                "output_id": f"mo-{role}",
                "model_id": "m",
                "revenue": "3.10",
                "currency": "EUR",
                "occurred_at": on_time(2),
                "work_scores": {s.world.song: 1.0},
            }
        ],
    }


def _content(_s: Any, role: str) -> bytes:
    return f"blob for {role}".encode()


EVERYONE = frozenset(ROLES) - UNAUTHENTICATED
CASES = [
    Case("health", "GET", lambda s, r: "/api/v1/health", frozenset(ROLES)),
    Case("openapi", "GET", lambda s, r: "/openapi.json", frozenset(ROLES)),
    Case("ingest", "POST", lambda s, r: "/api/v1/usage-batches", frozenset({"op_ingest"}), _usage),
    Case("usage batch", "GET", lambda s, r: "/api/v1/usage-batches/m-op_ingest", frozenset({"op_ingest"}) | READERS),
    Case(
        "attribute",
        "POST",
        lambda s, r: "/api/v1/attributions",
        frozenset({"op_ingest"}),
        lambda s, r: {"manifest_id": s.world.manifest.id, "outputs": [{"output_id": "x", "text": "abc"}]},
        allowed_status=409,
    ),
    Case(
        "add person",
        "POST",
        lambda s, r: "/api/v1/people",
        frozenset({"op_registry"}),
        lambda s, r: {"handle": f"new-{r}"},
    ),
    Case(
        "get person",
        "GET",
        lambda s, r: f"/api/v1/people/{s.a}",
        frozenset({"contributor_a"}) | READERS,
        cross_person=frozenset({"contributor_b"}),
    ),
    Case(
        "statement",
        "GET",
        lambda s, r: f"/api/v1/people/{s.a}/statements/2026-01?currency=EUR",
        frozenset({"contributor_a"}) | READERS,
        cross_person=frozenset({"contributor_b"}),
    ),
    Case(
        "statement csv",
        "GET",
        lambda s, r: f"/api/v1/people/{s.b}/statements/2026-01?currency=EUR&format=csv",
        frozenset({"contributor_b"}) | READERS,
        cross_person=frozenset({"contributor_a"}),
    ),
    Case(
        "put blob",
        "PUT",
        lambda s, r: f"/api/v1/blobs/{hashlib.sha256(_content(s, r)).hexdigest()}",
        frozenset({"op_registry"}),
        content=_content,
    ),
    Case(
        "add work",
        "POST",
        lambda s, r: "/api/v1/works",
        frozenset({"op_registry"}),
        lambda s, r: {"title": f"<i>{r}</i>", "content_base64": base64.b64encode(f"work {r}".encode()).decode()},
    ),
    Case("get work", "GET", lambda s, r: f"/api/v1/works/{s.world.song}", READERS),
    Case(
        "add credit",
        "POST",
        lambda s, r: f"/api/v1/works/{s.world.film}/credits",
        frozenset({"op_registry"}),
        lambda s, r: {"role": "endcredits:vfx", "name": f"VFX {r}"},
    ),
    Case("list credits", "GET", lambda s, r: f"/api/v1/works/{s.world.song}/credits", READERS),
    Case(
        "grant consent",
        "POST",
        lambda s, r: "/api/v1/consent-grants",
        frozenset({"op_registry", "contributor_a"}),
        lambda s, r: {
            "use": "commercial",
            "decision": "notAllowed",
            "source": "portal",
            "person_id": s.a,
            "perpetual": True,
        },
        cross_person=frozenset({"contributor_b"}),
    ),
    Case(
        "revoke consent",
        "POST",
        _grant_on_a,
        frozenset({"op_registry", "contributor_a"}),
        lambda s, r: {},
        cross_person=frozenset({"contributor_b"}),
    ),
    Case(
        "list consent",
        "GET",
        lambda s, r: f"/api/v1/consent-grants?person_id={s.a}",
        frozenset({"contributor_a"}) | READERS,
        cross_person=frozenset({"contributor_b"}),
    ),
    Case("escrow search", "GET", lambda s, r: "/api/v1/escrow?q=dan", EVERYONE | {"public"}),
    Case("unclaimed list", "GET", lambda s, r: "/api/v1/unclaimed?format=csv", EVERYONE | {"public"}),
    Case(
        "escrow claim",
        "POST",
        lambda s, r: "/api/v1/escrow/claims",
        frozenset({"contributor_a", "op_payouts"}),
        lambda s, r: {"person_id": s.a},
        cross_person=frozenset({"contributor_b"}),
    ),
    Case(
        "create payouts",
        "POST",
        lambda s, r: "/api/v1/payout-batches",
        frozenset({"op_payouts"}),
        lambda s, r: {
            "batch_id": f"PB-{r[:8]}".replace("_", "-"),
            "agreement_id": "test-2026",
            "debtor": {"name": "Studio", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"},
        },
    ),
    Case("list payouts", "GET", lambda s, r: "/api/v1/payout-batches", READERS),
    Case(
        "payout status",
        "POST",
        lambda s, r: "/api/v1/payout-batches/PB-SEED/statuses",
        frozenset({"op_payouts"}),
        lambda s, r: {"statuses": {s.payout_e2e: "settled"}},
    ),
    Case(
        "login link",
        "POST",
        lambda s, r: "/api/v1/login-links",
        frozenset({"op_registry"}),
        lambda s, r: {"person_id": s.b},
    ),
    Case(
        "challenge",
        "POST",
        lambda s, r: "/api/v1/auth/challenges",
        EVERYONE | {"public"},
        lambda s, r: {"person_id": s.a},
    ),
    Case(
        "sign in signed", "POST", lambda s, r: "/api/v1/auth/sessions/signed-challenge", EVERYONE | {"public"}, _signed
    ),
    Case("sign in link", "POST", lambda s, r: "/api/v1/auth/sessions/login-link", EVERYONE | {"public"}, _link),
    Case("guild view", "GET", lambda s, r: f"/api/v1/guilds/{s.guild}/view", frozenset({"guild_own"}) | READERS),
    Case(
        "guild unclaimed",
        "GET",
        lambda s, r: f"/api/v1/guilds/{s.guild}/unclaimed?q=a",
        frozenset({"guild_own"}) | READERS,
    ),
    Case("me", "GET", lambda s, r: "/api/v1/me", frozenset({"contributor_a", "contributor_b"})),
    Case("sign out", "DELETE", lambda s, r: "/api/v1/auth/session", frozenset({"contributor_a", "contributor_b"})),
]


def _expected_denial(case: Case, role: str) -> int:
    if role in UNAUTHENTICATED:
        return 401
    if role in case.cross_person:
        return 404
    return 403


def test_every_role_against_every_endpoint(svc: Any) -> None:
    problems: list[str] = []
    for case in CASES:  # "sign out" is last: it ends the contributors' sessions
        for role in ROLES:
            path = case.path(svc, role)
            kwargs: dict[str, Any] = {"headers": svc.headers(role)}
            if case.content is not None:
                kwargs["content"] = case.content(svc, role)
            elif case.body is not None:
                kwargs["json"] = case.body(svc, role)
            before = row_counts(svc.store)
            r = svc.client.request(case.method, path, **kwargs)
            if role in case.allowed:
                ok = r.status_code == case.allowed_status if case.allowed_status else 200 <= r.status_code < 300
                if not ok:
                    problems.append(f"{case.name} as {role}: expected allowed, got {r.status_code} {r.text[:200]}")
            else:
                want = _expected_denial(case, role)
                if r.status_code != want:
                    problems.append(f"{case.name} as {role}: expected {want}, got {r.status_code} {r.text[:200]}")
                elif row_counts(svc.store) != before:
                    problems.append(f"{case.name} as {role}: refused but rows changed")
                elif r.json()["error"]["code"] not in ("unauthorized", "forbidden", "not_found"):
                    problems.append(f"{case.name} as {role}: error code {r.json()['error']['code']}")
    assert not problems, "\n".join(problems)


def test_the_public_sees_names_and_amounts_only(svc: Any) -> None:
    public = svc.client.get("/api/v1/escrow").json()["escrow"]
    assert public and all(set(row) == {"name", "currency", "amount", "amount_microunits"} for row in public)
    signed_in = svc.client.get("/api/v1/escrow", headers=svc.headers("contributor_b")).json()["escrow"]
    assert signed_in == public  # a contributor learns no one's id either


def test_a_session_sees_its_own_statement_only(svc: Any) -> None:
    mine = svc.client.get(
        f"/api/v1/people/{svc.b}/statements/2026-01?currency=EUR", headers=svc.headers("contributor_b")
    )
    assert mine.status_code == 200 and mine.json()["person_id"] == svc.b and mine.json()["reconciles"]
    theirs = svc.client.get(
        f"/api/v1/people/{svc.a}/statements/2026-01?currency=EUR", headers=svc.headers("contributor_b")
    )
    missing = svc.client.get(
        "/api/v1/people/999999/statements/2026-01?currency=EUR", headers=svc.headers("contributor_b")
    )
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["message"] == f"no person {svc.a}"
