"""Contact and payment details: apart from the registry, sealed at rest, never in the audit log — both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from endcredits.errors import StoreError, ValidationError
from endcredits.registry.private import KEY_ENV, KEY_FILE_ENV, new_key_text, private_of, with_payout_account
from endcredits.registry.records import add_person, set_payout_account
from endcredits.store.engine import Store
from endcredits.store.schema import audit_log, people, private_details

IBAN = "DE89370400440532013000"


def test_details_are_sealed_apart_from_the_registry_and_open_with_the_key(store: Store) -> None:
    with store.write() as conn:
        a = add_person(conn, "a", iban=IBAN, bic="COBADEFF", email="a@example.org")
        b = add_person(conn, "b")
    with store.read() as conn:
        assert with_payout_account(conn, [a, b]) == {a}
        got = private_of(conn, [a, b])
        assert set(got) == {a} and (got[a].iban, got[a].bic, got[a].email) == (IBAN, "COBADEFF", "a@example.org")
        raw = conn.execute(select(private_details)).one()
        sealed = b"".join(bytes(v) for v in (raw.iban, raw.bic, raw.email))
        assert IBAN.encode() not in sealed and b"a@example.org" not in sealed
        assert not hasattr(conn.execute(select(people)).first(), "iban")
        audit = " ".join(str(r.payload) for r in conn.execute(select(audit_log)))
        assert IBAN not in audit and "example.org" not in audit


def test_a_new_account_replaces_the_old_one_and_its_bic(store: Store) -> None:
    with store.write() as conn:
        a = add_person(conn, "a", iban=IBAN, bic="COBADEFF")
        set_payout_account(conn, a, iban="FR1420041010050500013M02606", bic=None)
    with store.read() as conn:
        d = private_of(conn, [a])[a]
        assert (d.iban, d.bic) == ("FR1420041010050500013M02606", None)


def test_a_wrong_key_or_a_moved_value_does_not_open(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    with store.write() as conn:
        a = add_person(conn, "a", iban=IBAN)
        b = add_person(conn, "b", iban="FR1420041010050500013M02606")
    with store.write() as conn:  # copy a's sealed IBAN onto b: it is bound to a
        sealed = conn.execute(select(private_details.c.iban).where(private_details.c.person_id == a)).scalar_one()
        conn.execute(update(private_details).where(private_details.c.person_id == b).values(iban=sealed))
    with store.read() as conn, pytest.raises(StoreError, match=f"sealed iban of person {b} does not open"):
        private_of(conn, [b])
    monkeypatch.setenv(KEY_ENV, new_key_text())
    with store.read() as conn, pytest.raises(StoreError, match="sealed with another key"):
        private_of(conn, [a])


def test_without_a_key_details_are_refused_and_nothing_is_written(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    with pytest.raises(StoreError, match="encrypted at rest: set ENDCREDITS_SECRET_KEY"), store.write() as conn:
        add_person(conn, "a", iban=IBAN)
    with store.read() as conn:
        assert conn.execute(select(people)).first() is None
    with store.write() as conn:
        add_person(conn, "no details")  # the rest works without a key
    monkeypatch.setenv(KEY_ENV, "not base64!")
    with pytest.raises(StoreError, match="is not base64"), store.write() as conn:
        add_person(conn, "b", iban=IBAN)
    with pytest.raises(ValidationError, match="not of the form"), store.write() as conn:
        add_person(conn, "c", email="nobody")


def _sealed_rows(store: Store) -> list[tuple[object, ...]]:
    with store.read() as conn:
        return [tuple(r) for r in conn.execute(select(private_details).order_by(private_details.c.person_id))]


def test_rotating_the_key_reseals_every_detail_and_running_it_again_changes_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from endcredits.registry.private import SecretKey, configured_key, rotate_key

    with store.write() as conn:
        a = add_person(conn, "a", iban=IBAN, bic="COBADEFF", email="a@example.org")
        b = add_person(conn, "b", email="b@example.org")
        add_person(conn, "c")
    old = configured_key()
    new_text = new_key_text()
    monkeypatch.setenv(KEY_ENV, new_text)
    new = configured_key()
    with store.read() as conn, pytest.raises(StoreError, match="sealed with another key"):
        private_of(conn, [a])  # before rotation the new key cannot open them
    with store.write() as conn:
        assert rotate_key(conn, old, new) == 4
    with store.read() as conn:
        got = private_of(conn, [a, b])
        assert (got[a].iban, got[a].bic, got[a].email, got[b].email) == (
            IBAN,
            "COBADEFF",
            "a@example.org",
            "b@example.org",
        )
        rekeyed = [r.payload for r in conn.execute(select(audit_log).where(audit_log.c.kind == "private.rekeyed"))]
        assert len(rekeyed) == 1 and new.key_id.hex() in rekeyed[0] and new_text not in rekeyed[0]
    before = _sealed_rows(store)
    with store.write() as conn:
        assert rotate_key(conn, old, new) == 0  # already under the new key: nothing to do
    assert _sealed_rows(store) == before
    with pytest.raises(ValidationError, match="same key"), store.write() as conn:
        rotate_key(conn, new, new)
    stranger = SecretKey(b"\x01" * 32)
    with pytest.raises(StoreError, match="sealed with another key"), store.write() as conn:
        rotate_key(conn, stranger, SecretKey(b"\x02" * 32))  # the details are under neither: nothing changes
    assert _sealed_rows(store) == before
