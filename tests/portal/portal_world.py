"""The portal tests' world (imported as ``portal_world``): people, works, credits, two accruals, a consent
grant, a name that waits in escrow and is linked to its person, a name with markup in it, and API keys."""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, field

from endcredits.consent.records import add_grants
from endcredits.consent.rules import Grant
from endcredits.ledger.accrue import accrue
from endcredits.registry.records import CreditIn, add_credits, add_person, claim_name, name_ids, verify_person
from endcredits.royalties.records import save_agreement
from endcredits.service.auth import create_api_key, create_login_link, revoke_api_key
from endcredits.store.engine import Store
from helpers_money import EXTERNAL, World, agreement, on_time

with warnings.catch_warnings():
    # Starlette 1.10 would rather drive its test client with the newer httpx2; httpx 0.28 still works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

__all__ = ["EVIL_HANDLE", "EVIL_NAME", "Seeded", "TestClient", "revoke", "seed"]

EVIL_HANDLE = "Mal <script>alert('handle')</script>"
EVIL_NAME = "Mal <script>alert('name')</script> Credited"


@dataclass
class Seeded:
    store: Store
    world: World
    alice: int  # verified, composer and rights holder of the song
    dan: int  # not verified
    mal: int  # verified; her credited name (with markup) waits in escrow, linked to her after the accruals
    mal_name: int
    grant_id: int  # alice's own grant, to revoke
    keys: dict[str, str] = field(default_factory=dict)
    revoked_key_id: str = ""

    def login_token(self, person_id: int) -> str:
        with self.store.write() as conn:
            return create_login_link(conn, person_id, created_by="test").token


def seed(store: Store) -> Seeded:
    """The world; every amount comes from two real accruals (January and February 2026)."""
    w = World(store)
    ag = agreement(pool_rate="0.5", payout_threshold="0.01")
    with store.write() as conn:
        save_agreement(conn, ag.id, ag.version, ag.body, ag.body_sha256)
        mal = add_person(conn, EVIL_HANDLE)
        verify_person(conn, mal, verified_by="test-guild")
        mal_name = name_ids(conn, [EVIL_NAME])[EVIL_NAME]
        add_credits(conn, [CreditIn(w.film, f"name:{mal_name}", "endcredits:vfx", 1)])
        (grant_id,) = add_grants(
            conn,
            [
                Grant(
                    subject_kind="person",
                    subject_id=str(w.alice),
                    use="research",
                    decision="allowed",
                    valid_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                    valid_until=dt.datetime(2036, 1, 1, tzinfo=dt.UTC),
                    perpetual=False,
                    source="alice's letter",
                )
            ],
        )
    # The film was in the manifest before Mal's name was credited on it: rebuild it so her name is paid.
    from endcredits.manifest.build import build_manifest

    w.manifest = build_manifest(
        store, model_id="m", uses=["commercial"], as_of=dt.datetime(2026, 1, 2, tzinfo=dt.UTC), default="opt-out"
    )
    accrue(
        store,
        w.usage(
            [
                ("o1", 10**9, on_time(1), {w.song: 0.6, w.film: 0.4}),
                ("o2", 3 * 10**8, on_time(1, 9), {w.song: 0.2, w.film: 0.8}),
            ],
            ag,
        ),
        ag,
        event_id="seed-1",
        source=EXTERNAL,
    )
    accrue(
        store,
        w.usage([("o3", 5 * 10**8, on_time(2, 2), {w.song: 0.5, w.film: 0.5})], ag),
        ag,
        event_id="seed-2",
        source=EXTERNAL,
    )
    with store.write() as conn:
        claim_name(conn, mal_name, mal)  # the operator linked it; the money still waits for her claim
        keys = {
            "read": create_api_key(conn, role="operator", scopes=["read"], label="read").key,
            "ingest": create_api_key(conn, role="operator", scopes=["ingest"], label="ingest").key,
        }
        old = create_api_key(conn, role="operator", scopes=["read"], label="old")
        keys["revoked"] = old.key
    s = Seeded(store, w, w.alice, w.dan, mal, mal_name, grant_id, keys, old.id)
    return s


def revoke(s: Seeded) -> None:
    with s.store.write() as conn:
        revoke_api_key(conn, s.revoked_key_id)
