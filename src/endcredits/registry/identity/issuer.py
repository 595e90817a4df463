"""The issuer's side: what a guild, a union or an identity provider runs to vouch for its members.

An issuer directory holds three files:

* ``issuer-key.json`` (mode 0600): the Ed25519 key pair as Multikey text and the ``did:key`` it makes.
  The secret never leaves this file: it is not printed, logged, or put in any credential or error.
* ``status-list.json``: the signed ``BitstringStatusListCredential`` to publish (verifiers load it with
  ``--status-list``); ``revoke`` sets a bit and signs it again.
* ``issued.json``: which status-list index each issued credential got, so ``revoke`` can find it.

Indexes are drawn at random from the unused ones, as the Bitstring Status List spec advises, so the
order of issuance does not show in the list.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from endcredits.errors import ConflictError, NotFoundError, ValidationError
from endcredits.registry.identity.credential import VC2_CONTEXT
from endcredits.registry.identity.eddsa_jcs import add_proof
from endcredits.registry.identity.identifiers import IDENTIFIER_VALIDATORS
from endcredits.registry.identity.multibase import decode_secret_key, did_key, secret_key_multibase
from endcredits.registry.identity.statuslist import (
    STATUS_LIST_BITS_MIN,
    decode_bits,
    encode_bits,
    list_subject,
    set_bit,
)

KEY_FILE = "issuer-key.json"
STATUS_LIST_FILE = "status-list.json"
ISSUED_FILE = "issued.json"
CREDENTIAL_VALIDITY_DAYS_MAX = 3660
"""Longest validity of one credential (about ten years): never perpetual; renew instead."""
SUBJECT_ID_LENGTH_MAX = 200


def _utc_text(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValidationError(f"time {value.isoformat()} has no timezone")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class IssuerKey:
    did: str
    secret: Ed25519PrivateKey

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return f"IssuerKey(did={self.did!r})"

    @property
    def public_key_multibase(self) -> str:
        return self.did.removeprefix("did:key:")

    @property
    def verification_method(self) -> str:
        return f"{self.did}#{self.public_key_multibase}"

    def sign(self, document: Mapping[str, Any], at: dt.datetime) -> dict[str, Any]:
        return add_proof(document, self.secret, self.verification_method, _utc_text(at))


def generate_key() -> IssuerKey:
    secret = Ed25519PrivateKey.generate()
    public = secret.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return IssuerKey(did_key(public), secret)


def key_from_seed(seed: bytes) -> IssuerKey:
    secret = Ed25519PrivateKey.from_private_bytes(seed)
    public = secret.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return IssuerKey(did_key(public), secret)


def load_key(directory: Path) -> IssuerKey:
    path = directory / KEY_FILE
    if not path.is_file():
        raise NotFoundError(f"no issuer key in {directory}: create one with `endcredits issuer init`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        seed = decode_secret_key(str(data["secretKeyMultibase"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValidationError):
        raise ValidationError(f"{path} is not an endcredits issuer key file") from None
    key = key_from_seed(seed)
    if data.get("did") != key.did:
        raise ValidationError(f"{path}: its did does not match its secret key")
    return key


@dataclass(frozen=True)
class Issuer:
    directory: Path
    key: IssuerKey
    status_list_id: str


def _blank_status_list(key: IssuerKey, list_id: str, at: dt.datetime) -> dict[str, Any]:
    return key.sign(_status_list_doc(key, list_id, bytearray(STATUS_LIST_BITS_MIN // 8), at), at)


def _status_list_doc(key: IssuerKey, list_id: str, bits: bytearray, at: dt.datetime) -> dict[str, Any]:
    return {
        "@context": [VC2_CONTEXT],
        "id": list_id,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": key.did,
        "validFrom": _utc_text(at),
        "credentialSubject": {
            "id": f"{list_id}#list",
            "type": "BitstringStatusList",
            "statusPurpose": "revocation",
            "encodedList": encode_bits(bits),
        },
    }


def init_issuer(directory: Path, *, status_list_id: str | None = None, at: dt.datetime) -> Issuer:
    """Create a key pair and an empty status list in ``directory``; refuses to overwrite a key."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / KEY_FILE).exists():
        raise ConflictError(f"{directory / KEY_FILE} already exists: an issuer key is never overwritten")
    list_id = status_list_id or f"urn:uuid:{uuid.uuid4()}"
    if ":" not in list_id:
        raise ValidationError(f"status list id {list_id!r} must be a URL, such as https://guild.example/status/1")
    key = generate_key()
    seed = key.secret.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    key_doc = {
        "did": key.did,
        "publicKeyMultibase": key.public_key_multibase,
        "secretKeyMultibase": secret_key_multibase(seed),
        "created": _utc_text(at),
    }
    _write_atomic(directory / KEY_FILE, json.dumps(key_doc, indent=2) + "\n", mode=0o600)
    _write_atomic(directory / STATUS_LIST_FILE, json.dumps(_blank_status_list(key, list_id, at), indent=2) + "\n")
    _write_atomic(directory / ISSUED_FILE, json.dumps({"status_list": list_id, "issued": {}}, indent=2) + "\n")
    return Issuer(directory, key, list_id)


def open_issuer(directory: Path) -> Issuer:
    key = load_key(directory)
    issued = _read_issued(directory)
    return Issuer(directory, key, str(issued["status_list"]))


def _read_issued(directory: Path) -> dict[str, Any]:
    path = directory / ISSUED_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise ValidationError(f"{path} is missing or not JSON: the issuer directory is damaged") from None
    if not isinstance(data, dict) or not isinstance(data.get("issued"), dict):
        raise ValidationError(f"{path} is not an endcredits issued-credentials file")
    return data


def _read_bits(issuer: Issuer) -> bytearray:
    doc = json.loads((issuer.directory / STATUS_LIST_FILE).read_text(encoding="utf-8"))
    return bytearray(decode_bits(str(list_subject(doc)["encodedList"])))


def issue_credential(
    issuer: Issuer,
    subject_id: str,
    *,
    valid_from: dt.datetime,
    valid_until: dt.datetime,
    at: dt.datetime,
    identifiers: Mapping[str, str] | None = None,
    types: tuple[str, ...] = ("MembershipCredential",),
) -> dict[str, Any]:
    """Sign a VC 2.0 for ``subject_id`` (a pseudonymous DID or URN is enough; no legal name), with a
    revocation entry in the issuer's status list. Both ends of the validity window are required."""
    subject_id = subject_id.strip()
    if ":" not in subject_id or len(subject_id) > SUBJECT_ID_LENGTH_MAX or any(c.isspace() for c in subject_id):
        raise ValidationError(f"subject id {subject_id!r} must be a URL such as did:key:... or urn:uuid:...")
    if valid_until <= valid_from:
        raise ValidationError(f"validUntil {_utc_text(valid_until)} must be after validFrom {_utc_text(valid_from)}")
    if valid_until - valid_from > dt.timedelta(days=CREDENTIAL_VALIDITY_DAYS_MAX):
        raise ValidationError(
            f"a credential is valid for at most {CREDENTIAL_VALIDITY_DAYS_MAX} days; renew it instead"
        )
    subject: dict[str, Any] = {"id": subject_id}
    for name, value in sorted((identifiers or {}).items()):
        if name not in IDENTIFIER_VALIDATORS:
            raise ValidationError(f"unknown identifier {name!r}: use one of {sorted(IDENTIFIER_VALIDATORS)}")
        subject[name] = IDENTIFIER_VALIDATORS[name](value)
    issued = _read_issued(issuer.directory)
    used = {int(i) for i in issued["issued"].values()}
    bits_total = len(_read_bits(issuer)) * 8
    if len(used) >= bits_total:
        raise ValidationError(f"status list {issuer.status_list_id} is full ({bits_total} credentials)")
    index = secrets.randbelow(bits_total)
    while index in used:
        index = secrets.randbelow(bits_total)
    cid = f"urn:uuid:{uuid.uuid4()}"
    doc = {
        "@context": [VC2_CONTEXT],
        "id": cid,
        "type": ["VerifiableCredential", *types],
        "issuer": issuer.key.did,
        "validFrom": _utc_text(valid_from),
        "validUntil": _utc_text(valid_until),
        "credentialSubject": subject,
        "credentialStatus": {
            "id": f"{issuer.status_list_id}#{index}",
            "type": "BitstringStatusListEntry",
            "statusPurpose": "revocation",
            "statusListIndex": str(index),
            "statusListCredential": issuer.status_list_id,
        },
    }
    signed = issuer.key.sign(doc, at)
    issued["issued"][cid] = index
    _write_atomic(issuer.directory / ISSUED_FILE, json.dumps(issued, indent=2, sort_keys=True) + "\n")
    return signed


def revoke_credential(issuer: Issuer, credential_id: str, *, at: dt.datetime) -> int:
    """Set the credential's bit and sign the status list again; returns the index. Idempotent."""
    issued = _read_issued(issuer.directory)
    if credential_id not in issued["issued"]:
        raise NotFoundError(f"credential {credential_id} was not issued from {issuer.directory}")
    index = int(issued["issued"][credential_id])
    bits = _read_bits(issuer)
    set_bit(bits, index)
    doc = issuer.key.sign(_status_list_doc(issuer.key, issuer.status_list_id, bits, at), at)
    _write_atomic(issuer.directory / STATUS_LIST_FILE, json.dumps(doc, indent=2) + "\n")
    return index
