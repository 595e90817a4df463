"""The portal's routes through the app, on SQLite and PostgreSQL: sign-in, who sees what, CSRF, escaping,
and that consent and claims go through the store functions the API uses (audited)."""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from portal_world import EVIL_HANDLE, EVIL_NAME, Seeded, TestClient, revoke
from sqlalchemy import func, select

from endcredits.consent.records import grants_for
from endcredits.ledger.records import account_balances
from endcredits.registry.identity import attach_credential, load_status_lists, load_trust
from endcredits.registry.identity.issuer import STATUS_LIST_FILE, init_issuer, issue_credential
from endcredits.registry.identity.multibase import did_key
from endcredits.service import create_app
from endcredits.service.auth import NOT_SIGNED_IN
from endcredits.store.schema import audit_log
from helpers_money import row_counts

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def _sign_in(client: TestClient, s: Seeded, person_id: int) -> None:
    r = client.get("/portal/login", params={"token": s.login_token(person_id)})
    assert r.status_code == 200 and "ec_session=ecs_" in r.headers["set-cookie"], r.text


def _csrf(client: TestClient, page: str) -> str:
    r = client.get(page)
    assert r.status_code == 200, r.text
    found = CSRF.search(r.text)
    assert found is not None, r.text
    return found.group(1)


def _audits(s: Seeded, kind: str) -> int:
    with s.store.read() as conn:
        return int(
            conn.execute(select(func.count()).select_from(audit_log).where(audit_log.c.kind == kind)).scalar_one()
        )


def test_login_link_sets_a_strict_http_only_session_cookie_and_works_once(client: TestClient, seeded: Seeded) -> None:
    token = seeded.login_token(seeded.alice)
    r = client.get("/portal/login", params={"token": token})
    assert r.status_code == 200 and "Welcome, alice" in r.text
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("ec_session="))
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/portal" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    assert (
        r.headers["referrer-policy"] == "no-referrer" and "default-src 'none'" in r.headers["content-security-policy"]
    )
    page = client.get(f"/portal/people/{seeded.alice}")
    assert page.status_code == 200 and "<svg" in page.text and "By month" in page.text and "2026-02" in page.text
    again = TestClient(create_app(seeded.store)).get("/portal/login", params={"token": token})
    assert again.status_code == 401 and "already used" in again.text


def test_session_cookie_is_secure_over_https(seeded: Seeded) -> None:
    with TestClient(create_app(seeded.store), base_url="https://testserver") as c:
        r = c.get("/portal/login", params={"token": seeded.login_token(seeded.alice)})
    cookie = next(x for x in r.headers.get_list("set-cookie") if x.startswith("ec_session="))
    assert "Secure" in cookie


def _record_validity(seeded: Seeded) -> None:
    from endcredits.attribution.settings import AttributionSettings
    from endcredits.attribution.validity import ValidityReport
    from endcredits.attribution.validity_records import record_validity

    report = ValidityReport(0.2, 0.31, 0.6, 0.77, 0.8, subsets=32, seeds=3, outputs=5, works=3, lds_per_output=())
    with seeded.store.write() as conn:
        record_validity(
            conn,
            report,
            manifest=seeded.world.manifest,
            checkpoint_sha256="c" * 64,
            model_kind="charlm",
            train_function="ops:train",
            settings=AttributionSettings(),
            draw_seed=1,
        )


def test_a_contributor_sees_only_their_own_data(client: TestClient, seeded: Seeded) -> None:
    from endcredits.ledger.accrue import ScoreSource, accrue_scored
    from endcredits.royalties.usage import OutputIn
    from helpers_money import record_scores_run

    w = seeded.world
    run = record_scores_run(seeded.store, w.manifest, {"o9": {w.song: 1.0, w.film: 0.5}})
    late = [OutputIn("o9", "m", 10**8, "EUR", "2026-01-20T12:00:00Z")]
    accrue_scored(seeded.store, late, None, source=ScoreSource.run(run.id), per=None, agreement_id="test-2026",
                  batch_id="from-run")  # fmt: skip
    _sign_in(client, seeded, seeded.alice)
    own = client.get(f"/portal/people/{seeded.alice}/statements/2026-01", params={"currency": "EUR"})
    assert own.status_code == 200
    assert (
        "A Song" in own.text
        and "Top works of o1" in own.text
        and "of each output&#39;s revenue is its pool" in own.text
    )
    assert "reconciles with the ledger" in own.text
    # Every line says where its scores came from: the run (and what made it), or the operator's reason.
    assert "Where the scores came from" in own.text and f"trak · <code>{run.id[:12]}</code>" in own.text
    assert f"checkpoint <code>{'c' * 16}</code>" in own.text and f"scores: attribution run {run.id} (trak)" in own.text
    assert "external: test weights" in own.text and "scores: external scores: test weights" in own.text
    assert "validity against retraining has not been measured" in own.text
    _record_validity(seeded)
    measured = client.get(f"/portal/people/{seeded.alice}/statements/2026-01", params={"currency": "EUR"}).text
    assert "How well this method predicts retraining" in measured
    assert "LDS 0.31 against the mean of 3 retrainings per subset (noise ceiling 0.80)" in measured
    csv = client.get(f"/portal/people/{seeded.alice}/statements/2026-01.csv")
    assert csv.status_code == 200 and csv.text.startswith("output_id,")
    assert f",{run.id},trak,," in csv.text and ",,,test weights," in csv.text
    for path in (
        f"/portal/people/{seeded.mal}",
        f"/portal/people/{seeded.mal}/statements/2026-01",
        f"/portal/people/{seeded.mal}/statements/2026-01.csv",
        "/portal/people/999999",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert EVIL_HANDLE not in r.text and "Mal" not in r.text
    assert client.get("/portal/operator").status_code == 403


def test_the_public_is_sent_to_sign_in(seeded: Seeded, client: TestClient) -> None:
    for path in (
        f"/portal/people/{seeded.alice}",
        f"/portal/people/{seeded.alice}/statements/2026-01",
        "/portal/consent",
        "/portal/operator",
    ):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/portal/signin", path
    signin = client.get("/portal/signin")
    assert signin.status_code == 200 and 'name="api_key"' in signin.text and 'name="person_id"' in signin.text


def test_names_are_escaped_everywhere(client: TestClient, seeded: Seeded) -> None:
    public = client.get("/portal/escrow", params={"q": "<script>"})
    assert public.status_code == 200
    assert (
        "<script>" not in public.text and "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt; Credited" in public.text
    )
    _sign_in(client, seeded, seeded.mal)
    for path in (
        f"/portal/people/{seeded.mal}",
        f"/portal/people/{seeded.mal}/statements/2026-01",
        "/portal/escrow",
        "/portal/consent",
    ):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "<script>" not in r.text, path
    assert "Mal &lt;script&gt;alert(&#39;handle&#39;)&lt;/script&gt;" in client.get(f"/portal/people/{seeded.mal}").text
    assert EVIL_NAME not in client.get(f"/portal/people/{seeded.mal}/statements/2026-01").text


def test_public_escrow_search_shows_names_and_amounts_only(client: TestClient, seeded: Seeded) -> None:
    r = client.get("/portal/escrow", params={"q": "bob"})
    assert r.status_code == 200 and "Bob Credited" in r.text and " EUR" in r.text
    assert "name:" not in r.text and "person:" not in r.text and "Claim it" not in r.text


def test_posts_without_the_session_csrf_token_change_nothing(client: TestClient, seeded: Seeded) -> None:
    _sign_in(client, seeded, seeded.alice)
    other = TestClient(create_app(seeded.store))
    _sign_in(other, seeded, seeded.mal)
    theirs = _csrf(other, "/portal/consent")
    before = row_counts(seeded.store)
    form = {"use": "commercial", "decision": "notAllowed", "perpetual": "yes"}
    missing = client.post("/portal/consent", data=form)
    assert missing.status_code == 422 and "csrf" in missing.text
    forged = client.post("/portal/consent", data={**form, "csrf": "0" * 64})
    assert forged.status_code == 403 and "another site" in forged.text
    # Another person's valid token is not this session's.
    assert client.post("/portal/consent", data={**form, "csrf": theirs}).status_code == 403
    assert client.post("/portal/escrow/claim", data={"csrf": theirs}).status_code == 403
    assert client.post(f"/portal/consent/{seeded.grant_id}/revoke", data={"csrf": "x"}).status_code == 403
    assert row_counts(seeded.store) == before


def test_consent_is_granted_and_revoked_through_the_store_and_audited(client: TestClient, seeded: Seeded) -> None:
    _sign_in(client, seeded, seeded.alice)
    token = _csrf(client, "/portal/consent")
    granted_before = _audits(seeded, "consent.granted")
    r = client.post(
        "/portal/consent",
        data={
            "csrf": token,
            "use": "ai_training",
            "decision": "notAllowed",
            "valid_from": "2026-03-01",
            "valid_until": "2031-03-01",
        },
    )
    assert r.status_code == 200 and "Your consent was recorded." in r.text
    assert "from 2026-03-01 00:00 UTC until 2031-03-01 00:00 UTC" in r.text
    neither = client.post("/portal/consent", data={"csrf": token, "use": "commercial", "decision": "allowed"})
    assert neither.status_code == 422 and "in perpetuity" in neither.text
    with seeded.store.read() as conn:
        mine = grants_for(conn, [], [str(seeded.alice)])
    new = [g for _i, g in mine if g.use == "ai_training"]
    assert len(new) == 1 and new[0].decision == "notAllowed" and new[0].perpetual is False
    assert _audits(seeded, "consent.granted") == granted_before + 1
    revoked = client.post(f"/portal/consent/{seeded.grant_id}/revoke", data={"csrf": token})
    assert revoked.status_code == 200 and "The grant was revoked." in revoked.text
    with seeded.store.read() as conn:
        g = dict(grants_for(conn, [], [str(seeded.alice)]))[seeded.grant_id]
    assert g.revoked_at is not None and _audits(seeded, "consent.revoked") == 1
    # Another person's grant is 'not found', and nothing moves.
    _sign_in(client, seeded, seeded.mal)
    with seeded.store.read() as conn:
        alice_new = next(i for i, g in grants_for(conn, [], [str(seeded.alice)]) if g.use == "ai_training")
    r = client.post(f"/portal/consent/{alice_new}/revoke", data={"csrf": _csrf(client, "/portal/consent")})
    assert r.status_code == 404
    assert _audits(seeded, "consent.revoked") == 1


def test_claim_moves_escrow_of_linked_names_to_the_person(client: TestClient, seeded: Seeded) -> None:
    _sign_in(client, seeded, seeded.mal)
    page = client.get("/portal/escrow")
    assert "Waiting for you" in page.text and "Claim it" in page.text
    with seeded.store.read() as conn:
        held = sum(account_balances(conn, kind="escrow", holder=f"name:{seeded.mal_name}").values())
    assert held > 0
    r = client.post("/portal/escrow/claim", data={"csrf": CSRF.search(page.text).group(1)})  # type: ignore[union-attr]
    assert r.status_code == 200 and "Released to your balance: 2.225 EUR." in r.text
    with seeded.store.read() as conn:
        assert sum(account_balances(conn, kind="escrow", holder=f"name:{seeded.mal_name}").values()) == 0
        assert account_balances(conn, kind="payable", holder=f"person:{seeded.mal}") == {
            f"payable:person:{seeded.mal}:EUR": held
        }


def test_an_unverified_person_cannot_claim(client: TestClient, seeded: Seeded) -> None:
    _sign_in(client, seeded, seeded.dan)
    page = client.get("/portal/escrow")
    assert "once you are verified" in page.text
    before = row_counts(seeded.store)
    r = client.post("/portal/escrow/claim", data={"csrf": CSRF.search(page.text).group(1)})  # type: ignore[union-attr]
    assert r.status_code == 409 and "not verified" in r.text
    assert row_counts(seeded.store) == before


def test_operator_pages_by_an_api_key_entered_once(client: TestClient, seeded: Seeded) -> None:
    token = _csrf(client, "/portal/signin")
    bad = client.post("/portal/operator/signin", data={"csrf": token, "api_key": "eck_nope_nope"})
    assert bad.status_code == 401
    r = client.post("/portal/operator/signin", data={"csrf": token, "api_key": seeded.keys["read"]})
    assert r.status_code == 200 and "Operator overview" in r.text
    for text in ("pool", "escrow", "suspense", "Payout batches", "Bob Credited", "pool = payable"):
        assert text in r.text, text
    assert "<script>" not in r.text
    assert client.get(f"/portal/people/{seeded.mal}/statements/2026-01").status_code == 200
    assert _audits(seeded, "auth.portal_session_opened") == 1
    out = client.post("/portal/logout", data={"csrf": _csrf(client, "/portal/operator")}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/portal/operator", follow_redirects=False).status_code == 303


def test_a_revoked_key_ends_the_operator_session(client: TestClient, seeded: Seeded) -> None:
    token = _csrf(client, "/portal/signin")
    client.post("/portal/operator/signin", data={"csrf": token, "api_key": seeded.keys["revoked"]})
    assert client.get("/portal/operator").status_code == 200
    revoke(seeded)
    assert client.get("/portal/operator", follow_redirects=False).status_code == 303
    ingest = client.post(
        "/portal/operator/signin", data={"csrf": _csrf(client, "/portal/signin"), "api_key": seeded.keys["ingest"]}
    )
    assert ingest.status_code == 403 and "scope read" in ingest.text


def test_a_forged_operator_cookie_is_the_public(seeded: Seeded) -> None:
    with TestClient(create_app(seeded.store)) as c:
        c.cookies.set("ec_operator", f"eco_abc.{2**40}.{'0' * 64}", path="/portal")
        assert c.get("/portal/operator", follow_redirects=False).status_code == 303


def test_sign_out_closes_the_session_in_the_store(client: TestClient, seeded: Seeded) -> None:
    _sign_in(client, seeded, seeded.alice)
    r = client.post("/portal/logout", data={"csrf": _csrf(client, "/portal/consent")})
    assert r.status_code == 200 and "You are signed out." in r.text
    assert _audits(seeded, "auth.session_closed") == 1
    assert client.get("/portal/consent", follow_redirects=False).status_code == 303


def test_sign_in_by_a_signed_challenge(client: TestClient, seeded: Seeded, tmp_path: Path) -> None:
    guild = init_issuer(tmp_path / "guild", status_list_id="https://guild.example/status/1", at=T0)
    key = Ed25519PrivateKey.generate()
    did = did_key(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    doc = issue_credential(guild, did, valid_from=T0, valid_until=T0.replace(year=2036), at=T0)
    with seeded.store.write() as conn:
        attach_credential(
            conn,
            seeded.alice,
            json.dumps(doc),
            load_trust([guild.key.did]),
            load_status_lists([guild.directory / STATUS_LIST_FILE]),
            dt.datetime.now(dt.UTC),
        )
    page = client.post(
        "/portal/signin/challenge/new", data={"csrf": _csrf(client, "/portal/signin"), "person_id": str(seeded.alice)}
    )
    assert page.status_code == 200
    message = html.unescape(re.search(r'<pre class="nonce" id="message">(.*?)</pre>', page.text, re.DOTALL).group(1))  # type: ignore[union-attr]
    challenge_id = re.search(r'name="challenge_id" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
    csrf = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    signature = base64.urlsafe_b64encode(key.sign(message.encode())).decode().rstrip("=")
    forged = base64.urlsafe_b64encode(Ed25519PrivateKey.generate().sign(message.encode())).decode().rstrip("=")
    bad = client.post(
        "/portal/signin/challenge", data={"csrf": csrf, "challenge_id": challenge_id, "did": did, "signature": forged}
    )
    assert bad.status_code == 401 and NOT_SIGNED_IN in bad.text
    ok = client.post(
        "/portal/signin/challenge",
        data={"csrf": csrf, "challenge_id": challenge_id, "did": did, "signature": signature},
    )
    assert ok.status_code == 200 and "Welcome, alice" in ok.text
    assert client.get(f"/portal/people/{seeded.alice}").status_code == 200
    replay = client.post(
        "/portal/signin/challenge",
        data={
            "csrf": _csrf(client, "/portal/signin"),
            "challenge_id": challenge_id,
            "did": did,
            "signature": signature,
        },
    )
    assert replay.status_code == 401 and NOT_SIGNED_IN in replay.text


def test_a_challenge_page_tells_nobody_who_exists(client: TestClient, seeded: Seeded) -> None:
    """Alice exists (without a did:key credential), 999999 does not: both get a challenge page, which only a
    holder of a did:key credential can ever use."""
    pages = [
        client.post(
            "/portal/signin/challenge/new", data={"csrf": _csrf(client, "/portal/signin"), "person_id": str(person)}
        )
        for person in (seeded.alice, 999_999)
    ]
    assert [p.status_code for p in pages] == [200, 200]
    assert all("Sign this challenge" in p.text and 'name="challenge_id"' in p.text for p in pages)


def test_a_contributor_sees_no_holder_ids_and_an_operator_does(client: TestClient, seeded: Seeded) -> None:
    _sign_in(client, seeded, seeded.mal)
    page = client.get("/portal/escrow")
    assert page.status_code == 200 and "Bob Credited" in page.text
    assert "name:" not in page.text and "person:" not in page.text and "<th>holder</th>" not in page.text
    operator = TestClient(create_app(seeded.store))
    operator.post(
        "/portal/operator/signin", data={"csrf": _csrf(operator, "/portal/signin"), "api_key": seeded.keys["read"]}
    )
    assert "<th>holder</th>" in operator.get("/portal/escrow").text


def test_operator_sign_out_makes_the_same_cookie_useless(client: TestClient, seeded: Seeded) -> None:
    client.post(
        "/portal/operator/signin", data={"csrf": _csrf(client, "/portal/signin"), "api_key": seeded.keys["read"]}
    )
    cookie = client.cookies.get("ec_operator")
    assert cookie and client.get("/portal/operator").status_code == 200
    other_browser = TestClient(client.app)
    other_browser.cookies.set("ec_operator", cookie, path="/portal")
    assert other_browser.get("/portal/operator").status_code == 200
    assert client.post("/portal/logout", data={"csrf": _csrf(client, "/portal/operator")}).status_code == 200
    for browser in (TestClient(client.app), other_browser):  # the stolen value, and a browser never signed out
        browser.cookies.set("ec_operator", cookie, path="/portal")
        assert browser.get("/portal/operator", follow_redirects=False).status_code == 303
    again = client.post(
        "/portal/operator/signin", data={"csrf": _csrf(client, "/portal/signin"), "api_key": seeded.keys["read"]}
    )
    assert again.status_code == 200 and client.cookies.get("ec_operator") != cookie


def test_operator_sign_outs_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from endcredits.service import operator_sessions
    from endcredits.service.operator_sessions import OperatorSessions

    monkeypatch.setattr(operator_sessions, "KEYS_SIGNED_OUT_MAX", 2)
    sessions = OperatorSessions()
    kept = sessions.cookie("k3", 2**40)
    assert sessions.key_id(kept, 0) == "k3" and sessions.key_id(kept, 2**40) is None  # expired at 2**40
    sessions.close("k1")
    sessions.close("k2")
    assert len(sessions) == 2 and sessions.key_id(kept, 0) == "k3"
    sessions.close("k1")
    assert sessions.key_id(kept, 0) == "k3"
    sessions.close("k4")  # a third key: the secret is replaced, every operator is signed out
    assert len(sessions) == 0 and sessions.key_id(kept, 0) is None
    assert sessions.key_id(sessions.cookie("k1", 2**40), 0) == "k1"
    for forged in ("eco_k1.0.9.x", "eco_k1.x.9." + "0" * 64, "eck_k1.0.9." + "0" * 64, "eco_" + "a" * 300):
        assert sessions.key_id(forged, 0) is None
