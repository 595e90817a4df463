"""The operator's trust list: which issuers' keys may sign the credentials endcredits accepts.

An entry is one of

* ``did:key:z6Mk...`` — the issuer is that DID and its key is inside the identifier;
* ``z6Mk...`` — a bare Multikey: whoever signs with it is trusted, and the issuer is the controller named
  before the ``#`` of the proof's ``verificationMethod`` (``https://vc.example/issuers/5678#z6Mk...``);
* a JSON file holding a DID document (``did:web:guild.example``) or a controller document (an ``https``
  issuer): the keys of its ``verificationMethod`` entries that its ``assertionMethod`` lists.
  Key types: ``Multikey`` and ``Ed25519VerificationKey2020`` (``publicKeyMultibase``), ``JsonWebKey``
  and ``JsonWebKey2020`` with an ``OKP``/``Ed25519`` ``publicKeyJwk``.

Nothing is fetched: a ``did:web`` document is read from the file the operator saved.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from endcredits.errors import CredentialError, ValidationError
from endcredits.registry.identity.jsonfile import read_json_file
from endcredits.registry.identity.multibase import ED25519_KEY_BYTES, decode_public_key, did_key_public_key

TRUST_FILE_BYTES_MAX = 1 << 20
TRUST_ENTRIES_MAX = 10_000


@dataclass(frozen=True)
class ResolvedKey:
    """A key allowed to sign for ``controller`` (the issuer id it speaks for)."""

    verification_method: str
    controller: str
    public_key: bytes


@dataclass
class TrustList:
    did_keys: set[str] = field(default_factory=set)
    bare_keys: dict[str, bytes] = field(default_factory=dict)
    methods: dict[str, ResolvedKey] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.did_keys) + len(self.bare_keys) + len(self.methods)

    @property
    def issuers(self) -> list[str]:
        """What the list names, for messages: DIDs, controller ids and bare keys."""
        return sorted(self.did_keys | {m.controller for m in self.methods.values()} | set(self.bare_keys))

    def resolve(self, verification_method: str) -> ResolvedKey:
        """The key behind a proof's ``verificationMethod``; ``untrusted_issuer`` when the list has none."""
        base, _, fragment = verification_method.partition("#")
        if base.startswith("did:key:"):
            if fragment and fragment != base.removeprefix("did:key:"):
                raise CredentialError(
                    "malformed", f"did:key verification method {verification_method} names another key"
                )
            try:
                key = did_key_public_key(base)
            except ValidationError as exc:
                raise CredentialError("malformed", f"verification method {verification_method}: {exc}") from None
            resolved = ResolvedKey(verification_method, base, key)
            if base not in self.did_keys:
                raise _Untrusted(resolved)
            return resolved
        if verification_method in self.methods:
            return self.methods[verification_method]
        if fragment in self.bare_keys:
            return ResolvedKey(verification_method, base, self.bare_keys[fragment])
        raise CredentialError(
            "untrusted_issuer",
            f"verification method {verification_method} is not in the trust list: add the issuer's did:key, key or "
            "DID document with --trust",
        )


class _Untrusted(CredentialError):
    """A did:key we can check the signature with but do not trust: the signature is checked first, so a
    forged credential reads as forged, not merely untrusted."""

    def __init__(self, key: ResolvedKey) -> None:
        super().__init__("untrusted_issuer", f"issuer {key.controller} is not in the trust list")
        self.key = key


def _jwk_key(jwk: Any, where: str) -> bytes:
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
        raise ValidationError(f"{where}: publicKeyJwk must be a public OKP Ed25519 key")
    x = jwk.get("x")
    try:
        raw = base64.urlsafe_b64decode(str(x) + "=" * (-len(str(x)) % 4))
    except (binascii.Error, ValueError):
        raise ValidationError(f"{where}: publicKeyJwk.x is not base64url") from None
    if len(raw) != ED25519_KEY_BYTES:
        raise ValidationError(f"{where}: publicKeyJwk.x is {len(raw)} bytes, not 32")
    return raw


def _method_key(method: Mapping[str, Any], where: str) -> bytes:
    kind = method.get("type")
    if kind in ("Multikey", "Ed25519VerificationKey2020"):
        return decode_public_key(str(method.get("publicKeyMultibase", "")))
    if kind in ("JsonWebKey", "JsonWebKey2020"):
        return _jwk_key(method.get("publicKeyJwk"), where)
    raise ValidationError(f"{where}: verification method type {kind!r} is not an Ed25519 key type we read")


def _absolute(ref: str, doc_id: str) -> str:
    return doc_id + ref if ref.startswith("#") else ref


def load_controller_document(doc: Any, source: str) -> list[ResolvedKey]:
    """The assertion keys of a DID document or controller document."""
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not doc["id"]:
        raise ValidationError(f"{source}: a DID or controller document is a JSON object with an 'id'")
    doc_id: str = doc["id"]
    methods: dict[str, Mapping[str, Any]] = {}
    for m in doc.get("verificationMethod", []) or []:
        if isinstance(m, dict) and isinstance(m.get("id"), str):
            methods[_absolute(m["id"], doc_id)] = m
    keys = []
    for ref in doc.get("assertionMethod", []) or []:
        if isinstance(ref, str):
            mid = _absolute(ref, doc_id)
            if mid not in methods:
                raise ValidationError(f"{source}: assertionMethod {ref} is not among its verificationMethod entries")
            method = methods[mid]
        elif isinstance(ref, dict) and isinstance(ref.get("id"), str):
            mid, method = _absolute(ref["id"], doc_id), ref
        else:
            raise ValidationError(f"{source}: an assertionMethod entry is neither a reference nor a method")
        controller = method.get("controller", doc_id)
        if controller != doc_id:
            raise ValidationError(f"{source}: method {mid} is controlled by {controller}, not by {doc_id}")
        keys.append(ResolvedKey(mid, doc_id, _method_key(method, f"{source}: {mid}")))
    if not keys:
        raise ValidationError(f"{source}: the document lists no assertionMethod key, so it can sign nothing")
    return keys


def load_trust(entries: Iterable[str]) -> TrustList:
    """Build a trust list from ``--trust`` values: ``did:key:...``, a bare ``z6Mk...`` key, or a file path."""
    trust = TrustList()
    for entry in entries:
        entry = entry.strip()
        if entry.startswith("did:key:"):
            base = entry.partition("#")[0]
            did_key_public_key(base)
            trust.did_keys.add(base)
        elif entry.startswith("z6Mk") and not Path(entry).exists():
            trust.bare_keys[entry] = decode_public_key(entry)
        else:
            path = Path(entry)
            if not path.is_file():
                raise ValidationError(
                    f"trust entry {entry!r} is neither a did:key, a z6Mk... key, nor a DID document file"
                )
            doc = read_json_file(path, "trust file", TRUST_FILE_BYTES_MAX)
            for key in load_controller_document(doc, str(path)):
                trust.methods[key.verification_method] = key
        if len(trust) > TRUST_ENTRIES_MAX:
            raise ValidationError(f"more than {TRUST_ENTRIES_MAX} trusted keys")
    return trust
