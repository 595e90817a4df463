"""A running API over a small world, on SQLite and PostgreSQL: people A (signed in by a signed challenge
with the did:key of their credential) and B (by a one-time login link), an accrual, a payout batch, and
one API key per role and scope (and a guild key each for two trusted guilds)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from endcredits.ledger.accrue import accrue
from endcredits.payouts.batches import create_payout_batch
from endcredits.payouts.files import Debtor
from endcredits.payouts.iban import make_test_iban
from endcredits.registry.identity import attach_credential, load_status_lists, load_trust
from endcredits.registry.identity.issuer import STATUS_LIST_FILE, init_issuer, issue_credential
from endcredits.registry.identity.multibase import did_key
from endcredits.registry.identity.trusted import trust_issuer
from endcredits.registry.records import add_person, name_ids
from endcredits.royalties.records import save_agreement
from endcredits.service import create_app
from endcredits.service.auth import create_api_key, create_login_link, revoke_api_key, sign_in_with_link
from endcredits.store.engine import Store
from helpers_money import EXTERNAL, World, agreement, agreement_text, on_time

with warnings.catch_warnings():
    # Starlette 1.10 would rather drive its test client with the newer httpx2; httpx 0.28 still works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

OTHER_GUILD = "did:web:other-guild.example"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2036, 1, 1, tzinfo=dt.UTC)


@dataclass
class Svc:
    store: Store
    client: TestClient
    world: World
    a: int  # person A: verified by a did:key credential
    b: int  # person B: signs in by a login link
    a_key: Ed25519PrivateKey
    a_did: str
    guild: str  # the issuer of A's credential, trusted by the operator
    tokens: dict[str, str] = field(default_factory=dict)  # role -> bearer token
    payout_e2e: str = ""

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"} if role in self.tokens else {}

    def sign_in_a(self) -> str:
        """A fresh session for A through the signed-challenge flow; returns the session token."""
        c = self.client.post("/api/v1/auth/challenges", json={"person_id": self.a})
        assert c.status_code == 201, c.text
        body = c.json()
        sig = base64.urlsafe_b64encode(self.a_key.sign(body["message"].encode())).decode().rstrip("=")
        r = self.client.post(
            "/api/v1/auth/sessions/signed-challenge",
            json={"challenge_id": body["challenge_id"], "did": self.a_did, "signature": sig},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["session_token"])


AGREEMENT = agreement_text(pool_rate="0.5", payout_threshold="0.01")


@pytest.fixture
def svc(store: Store, tmp_path: Path) -> Iterator[Svc]:
    w = World(store)
    ag = agreement(pool_rate="0.5", payout_threshold="0.01")
    guild = init_issuer(tmp_path / "guild", status_list_id="https://guild.example/status/1", at=T0)
    a_key = Ed25519PrivateKey.generate()
    a_did = did_key(a_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    doc = issue_credential(guild, a_did, valid_from=T0, valid_until=T1, at=T0)
    with store.write() as conn:
        save_agreement(conn, ag.id, ag.version, ag.body, ag.body_sha256)
        a = add_person(conn, "ann-a", iban=make_test_iban("DE", 7))
        b = add_person(conn, "ben-b")
        attach_credential(
            conn,
            a,
            json.dumps(doc),
            load_trust([guild.key.did]),
            load_status_lists([guild.directory / STATUS_LIST_FILE]),
            dt.datetime.now(dt.UTC),
        )
        name_ids(conn, ["Unclaimed <b>Star</b>"])
    accrue(
        store,
        w.usage([("o1", 10**9, on_time(1), {w.song: 0.6, w.film: 0.4})], ag),
        ag,
        event_id="seed-1",
        source=EXTERNAL,
    )
    from helpers_money import usage

    accrue(
        store,
        usage([("o2", 4 * 10**8, on_time(1, 3), [(f"person:{a}", 1), (f"person:{b}", 1)])]),
        ag,
        event_id="seed-2",
        source=EXTERNAL,
    )
    pb = create_payout_batch(
        store,
        batch_id="PB-SEED",
        currency="EUR",
        threshold_microunits=ag.payout_threshold_microunits,
        debtor=Debtor("Studio", make_test_iban("DE", 9), "DEUTDEFF"),
        execution_date=dt.date(2026, 2, 1),
    )
    tokens: dict[str, str] = {}
    with store.write() as conn:
        for scope in ("ingest", "registry", "payouts", "read"):
            tokens[f"op_{scope}"] = create_api_key(conn, role="operator", scopes=[scope], label=scope).key
        tokens["op_all"] = create_api_key(
            conn, role="operator", scopes=["ingest", "registry", "payouts", "read"], label="all"
        ).key
        tokens["auditor"] = create_api_key(conn, role="auditor", scopes=[], label="audit").key
        # Two trusted guilds: the issuer of A's credential, and another; each with its own guild key.
        for role, issuer in (("guild_own", guild.key.did), ("guild_other", OTHER_GUILD)):
            trust_issuer(conn, issuer, note=role)
            tokens[role] = create_api_key(conn, role="guild", scopes=[], label=role, issuer=issuer).key
        revoked = create_api_key(conn, role="operator", scopes=["ingest", "registry", "payouts", "read"], label="old")
        revoke_api_key(conn, revoked.id)
        tokens["revoked"] = revoked.key
        link = create_login_link(conn, b, created_by="test")
        tokens["contributor_b"] = sign_in_with_link(conn, link.token).token
    key_id = tokens["op_all"].split("_")[1]
    tokens["forged"] = f"eck_{key_id}_{'A' * 43}"
    with TestClient(create_app(store)) as client:
        s = Svc(
            store, client, w, a, b, a_key, a_did, guild.key.did, tokens, pb.items[0].end_to_end_id if pb.items else ""
        )
        tokens["contributor_a"] = s.sign_in_a()
        yield s
