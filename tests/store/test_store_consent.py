"""Consent grants in the store: kept, never deleted; a revocation is recorded and audited, and the
models already trained on the work can be found (invariant 4)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from endcredits.consent.records import add_grants, grants_for, revoke_grant
from endcredits.consent.rules import Grant
from endcredits.errors import ConflictError, NotFoundError
from endcredits.manifest.build import build_manifest
from endcredits.manifest.records import manifests_using
from endcredits.registry.records import WorkIn, add_works
from endcredits.store.audit import iter_audit
from endcredits.store.engine import Store
from endcredits.store.schema import consent_grants
from helpers_money import row_counts

UTC = dt.UTC
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)


def allowed(work_id: str) -> Grant:
    return Grant(
        subject_kind="work",
        subject_id=work_id,
        use="commercial",
        decision="allowed",
        valid_from=T0,
        valid_until=None,
        perpetual=True,
        source="license.txt",
    )


def test_grants_are_stored_and_must_name_a_registered_subject(store: Store) -> None:
    with store.write() as conn:
        (work,) = add_works(conn, [WorkIn(b"w", "W", "text")])
        (gid,) = add_grants(conn, [allowed(work)])
    with store.read() as conn:
        assert grants_for(conn, [work], []) == [(gid, allowed(work))]
    before = row_counts(store)
    with pytest.raises(NotFoundError, match="consent names work nope, which is not registered"), store.write() as conn:
        add_grants(conn, [allowed("nope")])
    with pytest.raises(NotFoundError, match="no consent grant 999"), store.write() as conn:
        revoke_grant(conn, 999, dt.datetime(2026, 1, 1, tzinfo=UTC))
    assert row_counts(store) == before


def test_a_revocation_is_recorded_once_and_reported_against_trained_models(store: Store) -> None:
    with store.write() as conn:
        (work,) = add_works(conn, [WorkIn(b"w", "W", "text")])
        (gid,) = add_grants(conn, [allowed(work)])
    trained = build_manifest(
        store, model_id="m", uses=["commercial"], as_of=dt.datetime(2025, 6, 1, tzinfo=UTC), default="opt-in"
    )
    assert trained.included == (work,)
    when = dt.datetime(2025, 9, 1, tzinfo=UTC)
    with store.write() as conn:
        revoked = revoke_grant(conn, gid, when)
    assert revoked.revoked_at == when and revoked.use == "commercial"
    with store.read() as conn:
        assert conn.execute(select(consent_grants.c.revoked_at).where(consent_grants.c.id == gid)).scalar_one() == (
            "2025-09-01T00:00:00.000000Z"
        )
        assert [e.subject for e in iter_audit(conn, kind="consent.revoked")] == [f"grant:{gid}"]
        assert manifests_using(conn, work) == [(trained.id, "m")]  # who must be told
    with pytest.raises(ConflictError, match=f"consent grant {gid} was already revoked"), store.write() as conn:
        revoke_grant(conn, gid, when)
    later = build_manifest(
        store, model_id="m", uses=["commercial"], as_of=dt.datetime(2026, 1, 1, tzinfo=UTC), default="opt-in"
    )
    assert later.included == ()
