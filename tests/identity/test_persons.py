"""Verified humans in the store, on SQLite and PostgreSQL: attach a credential, refresh, un-verify."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from endcredits.errors import ConflictError, CredentialError, NotFoundError, ValidationError
from endcredits.registry.identity import attach_credential, load_status_lists, load_trust, refresh_verification
from endcredits.registry.identity.issuer import (
    STATUS_LIST_FILE,
    Issuer,
    init_issuer,
    issue_credential,
    revoke_credential,
)
from endcredits.registry.records import add_person, get_person
from endcredits.store.audit import iter_audit
from endcredits.store.engine import Store
from endcredits.store.schema import audit_log, credentials, people

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
MID = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@pytest.fixture
def guild(tmp_path: Path) -> Issuer:
    return init_issuer(tmp_path / "guild", status_list_id="https://guild.example/status/1", at=T0)


def _issue(guild: Issuer, subject: str, until: dt.datetime = T1) -> dict[str, Any]:
    return issue_credential(guild, subject, valid_from=T0, valid_until=until, at=T0)


def _lists(guild: Issuer) -> dict[str, dict[str, Any]]:
    return load_status_lists([guild.directory / STATUS_LIST_FILE])


def _counts(store: Store) -> tuple[int, int, list[Any]]:
    with store.read() as conn:
        return (
            int(conn.execute(select(func.count()).select_from(credentials)).scalar_one()),
            int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one()),
            [tuple(r) for r in conn.execute(select(people.c.id, people.c.verified_at, people.c.verified_by))],
        )


def _person(store: Store, handle: str) -> int:
    with store.write() as conn:
        return add_person(conn, handle)


def test_attach_verifies_the_person(store: Store, guild: Issuer) -> None:
    pid = _person(store, "ann")
    doc = _issue(guild, "did:example:ann")
    with store.write() as conn:
        done = attach_credential(conn, pid, json.dumps(doc), load_trust([guild.key.did]), _lists(guild), MID)
    assert done.new and done.credential.subject == "did:example:ann"
    with store.read() as conn:
        person = get_person(conn, pid)
        row = conn.execute(select(credentials)).one()
        kinds = [e.kind for e in iter_audit(conn)]
    assert person.verified_by == guild.key.did and person.verified_at == "2026-06-01T00:00:00.000000Z"
    assert (row.person_id, row.credential_id, row.issuer, row.subject) == (
        pid,
        doc["id"],
        guild.key.did,
        "did:example:ann",
    )
    assert (row.valid_until, row.status_list, row.status_index) == (
        "2027-01-01T00:00:00.000000Z",
        "https://guild.example/status/1",
        int(doc["credentialStatus"]["statusListIndex"]),
    )
    assert json.loads(row.credential_json) == doc
    assert kinds[-2:] == ["credential.attached", "person.verified"]
    with store.write() as conn:  # the same credential again: nothing new
        again = attach_credential(conn, pid, doc, load_trust([guild.key.did]), _lists(guild), MID)
    assert not again.new and _counts(store)[0] == 1


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "revoked",
        "untrusted",
        "forged",
        "no_status_list",
        "no_person",
        "no_valid_until",
        "taken_credential",
        "taken_subject",
    ],
)
def test_bad_credentials_change_nothing(store: Store, guild: Issuer, tmp_path: Path, case: str) -> None:
    ann, bob = _person(store, "ann"), _person(store, "bob")
    doc = _issue(guild, "did:example:ann")
    trust, lists, person, at = load_trust([guild.key.did]), _lists(guild), ann, MID
    if case in ("taken_credential", "taken_subject"):
        with store.write() as conn:
            attach_credential(conn, bob if case == "taken_credential" else ann, doc, trust, lists, MID)
        if case == "taken_subject":
            doc, person = _issue(guild, "did:example:ann"), bob
    before = _counts(store)
    expected: type[Exception] = CredentialError
    if case == "expired":
        at = T1 + dt.timedelta(days=1)
    elif case == "revoked":
        revoke_credential(guild, doc["id"], at=MID)
        lists = _lists(guild)
    elif case == "untrusted":
        trust = load_trust([init_issuer(tmp_path / "other", at=T0).key.did])
    elif case == "forged":
        doc = {**doc, "credentialSubject": {"id": "did:example:mallory"}}
    elif case == "no_status_list":
        lists = {}
    elif case == "no_person":
        person, expected = 999, NotFoundError
    elif case == "no_valid_until":
        body = {k: v for k, v in doc.items() if k not in ("proof", "validUntil")}
        doc = guild.key.sign(body, T0)
    else:
        expected = ConflictError
    with pytest.raises(expected) as err, store.write() as conn:
        attach_credential(conn, person, doc, trust, lists, at)
    assert "\n" not in str(err.value)
    assert _counts(store) == before


def test_refresh_unverifies_expired_and_revoked(store: Store, guild: Issuer) -> None:
    ann, bob, cat = _person(store, "ann"), _person(store, "bob"), _person(store, "cat")
    docs = {
        ann: _issue(guild, "did:example:ann", until=MID + dt.timedelta(days=30)),
        bob: _issue(guild, "did:example:bob"),
        cat: _issue(guild, "did:example:cat"),
    }
    trust = load_trust([guild.key.did])
    with store.write() as conn:
        for pid, doc in docs.items():
            attach_credential(conn, pid, doc, trust, _lists(guild), MID)
    revoke_credential(guild, docs[bob]["id"], at=MID)
    with store.write() as conn:
        assert refresh_verification(conn, MID, trust, _lists(guild))[0].person_id == bob
    later = MID + dt.timedelta(days=60)
    with store.write() as conn:
        lost = refresh_verification(conn, later, trust, _lists(guild))
    assert [(u.person_id, u.reason) for u in lost] == [(ann, "expired")]
    with store.read() as conn:
        verified = {r.id: r.verified_by for r in conn.execute(select(people))}
        invalid = {r.person_id: r.invalid_reason for r in conn.execute(select(credentials))}
        unverified = [json.loads(e.payload)["reason"] for e in iter_audit(conn, kind="person.unverified")]
    assert verified == {ann: None, bob: None, cat: guild.key.did}
    assert invalid == {ann: "expired", bob: "revoked", cat: None}
    assert unverified == ["revoked", "expired"]
    with store.write() as conn:  # nothing left to change
        assert refresh_verification(conn, later, trust, _lists(guild)) == []


def test_refresh_keeps_a_person_with_one_good_credential(store: Store, guild: Issuer, tmp_path: Path) -> None:
    union = init_issuer(tmp_path / "union", status_list_id="https://union.example/status/1", at=T0)
    ann = _person(store, "ann")
    trust = load_trust([guild.key.did, union.key.did])
    lists = {**_lists(guild), **load_status_lists([union.directory / STATUS_LIST_FILE])}
    first, second = _issue(guild, "did:example:ann"), _issue(union, "did:example:ann")
    with store.write() as conn:
        attach_credential(conn, ann, first, trust, lists, MID)
        attach_credential(conn, ann, second, trust, lists, MID)
    revoke_credential(union, second["id"], at=MID)
    lists = {**_lists(guild), **load_status_lists([union.directory / STATUS_LIST_FILE])}
    with store.write() as conn:
        assert refresh_verification(conn, MID, trust, lists) == []
    with store.read() as conn:
        assert get_person(conn, ann).verified_by == guild.key.did


def test_refresh_without_status_list_or_trust_changes_nothing(store: Store, guild: Issuer) -> None:
    ann = _person(store, "ann")
    trust = load_trust([guild.key.did])
    with store.write() as conn:
        attach_credential(conn, ann, _issue(guild, "did:example:ann"), trust, _lists(guild), MID)
    before = _counts(store)
    with pytest.raises(CredentialError, match="status_unknown"), store.write() as conn:
        refresh_verification(conn, MID, trust, {})
    with pytest.raises(ValidationError, match="trust list"), store.write() as conn:
        refresh_verification(conn, MID, load_trust([]), _lists(guild))
    assert _counts(store) == before
