"""Contact and payment details, apart from the public registry and encrypted at rest.

A person's IBAN, BIC and e-mail address live in ``private_details``, never in ``people``: the registry,
manifests, statements, exports and the audit log carry none of them (the audit log records only that a
payout account was set and the IBAN's last four characters, as a bank statement does). Each value is
sealed with AES-256-GCM (``cryptography``) under a key the operator supplies:

- ``ENDCREDITS_SECRET_KEY``: 32 random bytes, base64 (``endcredits secret-key new`` prints one), or
- ``ENDCREDITS_SECRET_KEY_FILE``: a file holding that text (mode 0600 advised).

A sealed value is ``version (1 byte) | key id (8 bytes) | nonce (12 bytes) | ciphertext+tag``, and its
associated data binds it to its person and field, so a value copied onto another person or field does
not open. The key id (the first 8 bytes of SHA-256 of the key) names which key sealed a value, so a
wrong key is reported as such rather than as corrupt data. Without a key, storing or reading these
details is refused with a clear error; everything else works.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, delete, select

from endcredits.errors import StoreError, ValidationError
from endcredits.store.audit import append_audit
from endcredits.store.bulk import select_in
from endcredits.store.engine import utc_now
from endcredits.store.schema import private_details

KEY_ENV = "ENDCREDITS_SECRET_KEY"
KEY_FILE_ENV = "ENDCREDITS_SECRET_KEY_FILE"
KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = 1
FIELDS = ("iban", "bic", "email")
EMAIL_LENGTH_MAX = 254


@dataclass(frozen=True)
class SecretKey:
    raw: bytes

    def __repr__(self) -> str:  # never show the key, even in a traceback
        return f"SecretKey(id={self.key_id.hex()})"

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(self.raw).digest()[:8]


def new_key_text() -> str:
    """A fresh key as the text ``ENDCREDITS_SECRET_KEY`` takes."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def _parse(text: str, where: str) -> SecretKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise StoreError(f"{where} is not base64; make a key with `endcredits secret-key new`") from None
    if len(raw) != KEY_BYTES:
        raise StoreError(f"{where} holds {len(raw)} bytes; the key is {KEY_BYTES} random bytes, base64")
    return SecretKey(raw)


def load_key() -> SecretKey | None:
    """The operator's key from the environment, or None when none is configured."""
    text = os.environ.get(KEY_ENV)
    if text:
        return _parse(text, KEY_ENV)
    path = os.environ.get(KEY_FILE_ENV)
    if path:
        try:
            return _parse(Path(path).read_text(encoding="utf-8"), f"{KEY_FILE_ENV} file {path}")
        except OSError as exc:
            raise StoreError(f"cannot read {KEY_FILE_ENV} file {path}: {exc.strerror}") from None
    return None


def configured_key() -> SecretKey:
    """The operator's key; ``StoreError`` saying how to set one when none is configured."""
    key = load_key()
    if key is None:
        raise StoreError(
            f"contact and payment details are encrypted at rest: set {KEY_ENV} (or {KEY_FILE_ENV}) "
            "to the operator's key; `endcredits secret-key new` makes one"
        )
    return key


def _aad(person_id: int, field: str) -> bytes:
    return f"endcredits:private:person:{person_id}:{field}".encode()


def seal(key: SecretKey, person_id: int, field: str, value: str) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # here: a plain read starts faster

    nonce = secrets.token_bytes(NONCE_BYTES)
    return (
        bytes([VERSION]) + key.key_id + nonce + AESGCM(key.raw).encrypt(nonce, value.encode(), _aad(person_id, field))
    )


def unseal(key: SecretKey, person_id: int, field: str, blob: bytes) -> str:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(blob) < 1 + 8 + NONCE_BYTES + 16 or blob[0] != VERSION:
        raise StoreError(f"the sealed {field} of person {person_id} is malformed")
    if blob[1:9] != key.key_id:
        raise StoreError(
            f"the {field} of person {person_id} was sealed with another key (id {blob[1:9].hex()}); "
            f"set {KEY_ENV} to that key"
        )
    nonce, body = blob[9 : 9 + NONCE_BYTES], blob[9 + NONCE_BYTES :]
    try:
        return AESGCM(key.raw).decrypt(nonce, body, _aad(person_id, field)).decode()
    except InvalidTag:
        raise StoreError(f"the sealed {field} of person {person_id} does not open: altered or moved") from None


@dataclass(frozen=True)
class PrivateDetails:
    iban: str | None
    bic: str | None
    email: str | None


def check_email(email: str) -> str:
    value = email.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or len(value) > EMAIL_LENGTH_MAX or any(c.isspace() for c in value):
        raise ValidationError(f"e-mail address {email!r} is not of the form name@domain.example")
    return value


def set_private(
    conn: Connection, person_id: int, *, iban: str | None = None, bic: str | None = None, email: str | None = None
) -> None:
    """Seal and store the given details of ``person_id`` (others kept); at least one must be given."""
    given = {"iban": iban, "bic": bic, "email": email}
    if all(v is None for v in given.values()):
        return
    key = configured_key()
    row = conn.execute(select(private_details).where(private_details.c.person_id == person_id)).first()
    values: dict[str, bytes | None] = {f: seal(key, person_id, f, v) for f, v in given.items() if v is not None}
    if iban is not None and bic is None:
        values["bic"] = None  # a new account: its old BIC does not carry over
    if row is None:
        conn.execute(private_details.insert().values(person_id=person_id, updated_at=utc_now(), **values))
    else:
        conn.execute(
            private_details.update()
            .where(private_details.c.person_id == person_id)
            .values(updated_at=utc_now(), **values)
        )


def read_key_file(path: Path) -> SecretKey:
    """A key from a file holding its base64 text (as ``ENDCREDITS_SECRET_KEY_FILE`` does)."""
    try:
        return _parse(path.read_text(encoding="utf-8"), f"key file {path}")
    except OSError as exc:
        raise StoreError(f"cannot read key file {path}: {exc.strerror}") from None


def rotate_key(conn: Connection, old: SecretKey, new: SecretKey) -> int:
    """Re-seal every detail sealed under ``old`` with ``new``, in the caller's transaction; returns how many
    values were re-sealed. Values already under ``new`` are left as they are, so running it again changes
    nothing. A value under any other key, or one that does not open, stops the rotation with nothing
    changed (the caller's transaction rolls back): no detail is ever left unreadable by the new key."""
    if old.key_id == new.key_id:
        raise ValidationError(
            "the old and the new key are the same key; make a new one with `endcredits secret-key new`"
        )
    rows = conn.execute(
        select(
            private_details.c.person_id, private_details.c.iban, private_details.c.bic, private_details.c.email
        ).order_by(private_details.c.person_id)
    ).all()
    resealed = 0
    for row in rows:
        values: dict[str, bytes] = {}
        for field in FIELDS:
            blob = getattr(row, field)
            if blob is None or bytes(blob)[1:9] == new.key_id:
                continue
            values[field] = seal(new, row.person_id, field, unseal(old, row.person_id, field, bytes(blob)))
        if values:
            conn.execute(
                private_details.update()
                .where(private_details.c.person_id == row.person_id)
                .values(updated_at=utc_now(), **values)
            )
            resealed += len(values)
    append_audit(
        conn,
        "private.rekeyed",
        "private_details",
        {"old_key_id": old.key_id.hex(), "new_key_id": new.key_id.hex(), "values": resealed},
    )
    return resealed


def forget_private(conn: Connection, person_id: int) -> None:
    conn.execute(delete(private_details).where(private_details.c.person_id == person_id))


def with_payout_account(conn: Connection, person_ids: Iterable[int]) -> set[int]:
    """Which of ``person_ids`` have an IBAN on file (no key needed: nothing is opened)."""
    rows = select_in(
        conn, "SELECT person_id FROM private_details WHERE iban IS NOT NULL AND person_id {in}", sorted(set(person_ids))
    )
    return {int(r[0]) for r in rows}


def private_of(conn: Connection, person_ids: Iterable[int]) -> dict[int, PrivateDetails]:
    """The opened details of each person that has any (needs the key)."""
    ids = sorted(set(person_ids))
    if not ids:
        return {}
    key = configured_key()
    out: dict[int, PrivateDetails] = {}
    for person_id, iban, bic, email in select_in(
        conn, "SELECT person_id, iban, bic, email FROM private_details WHERE person_id {in}", ids
    ):
        pid = int(person_id)
        out[pid] = PrivateDetails(
            *(None if v is None else unseal(key, pid, f, bytes(v)) for f, v in zip(FIELDS, (iban, bic, email)))
        )
    return out


__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "PrivateDetails",
    "SecretKey",
    "check_email",
    "configured_key",
    "forget_private",
    "load_key",
    "new_key_text",
    "private_of",
    "read_key_file",
    "rotate_key",
    "seal",
    "set_private",
    "unseal",
    "with_payout_account",
]
