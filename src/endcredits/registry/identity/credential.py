"""Verifying a W3C Verifiable Credential 2.0 secured with an ``eddsa-jcs-2022`` proof.

``verify_credential`` checks, in this order, and stops at the first failure with a ``CredentialError``
whose ``reason`` names it:

1. form (``malformed``/``unsupported``): a JSON object without duplicate keys, the VC 2.0 ``@context``
   first, ``VerifiableCredential`` among its types, an ``issuer``, a ``credentialSubject`` with an ``id``,
   ``validFrom``/``validUntil`` as date-times with a timezone, any ORCID/ISNI/IPI in the subject valid;
2. the proof (``signature``): one ``DataIntegrityProof`` with cryptosuite ``eddsa-jcs-2022`` for
   ``assertionMethod``, verifying under the key its ``verificationMethod`` names;
3. trust (``untrusted_issuer``): that key is in the operator's trust list and speaks for the credential's
   ``issuer`` (the verification method's controller is the issuer);
4. time (``not_yet_valid``/``expired``): ``validFrom <= at <= validUntil``, and the proof's ``expires``;
5. status (``revoked``/``suspended``/``status_unknown``): every ``BitstringStatusListEntry`` is looked up
   in a status list the caller supplies (no network); that list's own proof is verified when it has one,
   and it must come from the same issuer. A credential that has a status entry but whose list was not
   supplied is refused: we do not pay on a credential whose revocation we could not check.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from endcredits.errors import CredentialError, ValidationError
from endcredits.registry.identity.eddsa_jcs import split_proof, verify_proof
from endcredits.registry.identity.identifiers import IDENTIFIER_VALIDATORS
from endcredits.registry.identity.statuslist import bit_at, decode_bits, list_subject, parse_index, status_entries
from endcredits.registry.identity.trust import TrustList, _Untrusted

VC2_CONTEXT = "https://www.w3.org/ns/credentials/v2"
CREDENTIAL_BYTES_MAX = 1 << 16
"""Largest credential accepted (64 KiB); an identity credential is a few hundred bytes."""
ID_LENGTH_MAX = 200


@dataclass(frozen=True)
class StatusCheck:
    purpose: str
    list_id: str
    index: int


@dataclass(frozen=True)
class VerifiedCredential:
    """What a credential proved, once every check passed."""

    id: str | None
    issuer: str
    subject: str
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None
    verification_method: str
    status: tuple[StatusCheck, ...]
    document: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {
            "valid": True,
            "credential_id": self.id,
            "issuer": self.issuer,
            "subject": self.subject,
            "valid_from": _iso(self.valid_from),
            "valid_until": _iso(self.valid_until),
            "verification_method": self.verification_method,
            "status": [{"purpose": s.purpose, "list": s.list_id, "index": s.index} for s in self.status],
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise CredentialError("malformed", f"the JSON has the member {key!r} twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise CredentialError("malformed", f"the JSON contains {name}, which JSON does not allow")


def parse_json(text: str | bytes, what: str = "credential") -> dict[str, Any]:
    """A JSON object with unique member names and no NaN/Infinity (I-JSON, as RFC 8785 requires)."""
    if len(text) > CREDENTIAL_BYTES_MAX:
        raise CredentialError("malformed", f"{what} is {len(text)} bytes; at most {CREDENTIAL_BYTES_MAX}")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CredentialError("malformed", f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CredentialError("malformed", f"{what} must be a JSON object")
    return value


def parse_datetime(value: Any, what: str) -> dt.datetime:
    """An XML Schema dateTimeStamp: ISO-8601 with a timezone (``2026-01-01T00:00:00Z``)."""
    if not isinstance(value, str) or "T" not in value:
        raise CredentialError("malformed", f"{what} {value!r} must be a date-time such as 2026-01-01T00:00:00Z")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CredentialError("malformed", f"{what} {value!r} is not an ISO-8601 date-time") from None
    if parsed.tzinfo is None:
        raise CredentialError("malformed", f"{what} {value!r} has no timezone: add Z for UTC")
    return parsed.astimezone(dt.UTC)


def _id_of(value: Any, what: str) -> str:
    ident = value.get("id") if isinstance(value, dict) else value
    if not isinstance(ident, str) or ":" not in ident or len(ident) > ID_LENGTH_MAX or ident != ident.strip():
        raise CredentialError(
            "malformed",
            f"{what} must be a URL (such as did:key:... or https://...), at most {ID_LENGTH_MAX} characters",
        )
    return ident


def _check_form(doc: Mapping[str, Any]) -> tuple[str, str, dt.datetime | None, dt.datetime | None]:
    context = doc.get("@context")
    if not isinstance(context, list) or not context or context[0] != VC2_CONTEXT:
        raise CredentialError("malformed", f"@context must be a list starting with {VC2_CONTEXT} (VC 2.0)")
    types = doc.get("type")
    types = [types] if isinstance(types, str) else types
    if not isinstance(types, list) or "VerifiableCredential" not in types:
        raise CredentialError("malformed", "type must include VerifiableCredential")
    if "id" in doc:
        _id_of(doc["id"], "the credential id")
    issuer = _id_of(doc.get("issuer"), "issuer")
    subject = doc.get("credentialSubject")
    if isinstance(subject, list):
        if len(subject) != 1:
            raise CredentialError("unsupported", "credentialSubject must name exactly one subject")
        subject = subject[0]
    if not isinstance(subject, dict):
        raise CredentialError("malformed", "credentialSubject must be an object")
    subject_id = _id_of(subject.get("id"), "credentialSubject.id")
    for key, validate in IDENTIFIER_VALIDATORS.items():
        if key in subject:
            try:
                validate(subject[key])
            except ValidationError as exc:
                raise CredentialError("malformed", f"credentialSubject.{key}: {exc}") from None
    valid_from = parse_datetime(doc["validFrom"], "validFrom") if "validFrom" in doc else None
    valid_until = parse_datetime(doc["validUntil"], "validUntil") if "validUntil" in doc else None
    if valid_from is not None and valid_until is not None and valid_until < valid_from:
        raise CredentialError("malformed", f"validUntil {doc['validUntil']} is before validFrom {doc['validFrom']}")
    status_entries(doc)
    return issuer, subject_id, valid_from, valid_until


def _check_proof(doc: Mapping[str, Any], trust: TrustList, issuer: str, at: dt.datetime, what: str) -> str:
    """Verify the proof and that its key is trusted for ``issuer``; returns the verification method."""
    _, options, _ = split_proof(doc)
    method = options.get("verificationMethod")
    if not isinstance(method, str) or not method:
        raise CredentialError("malformed", f"{what}: proof.verificationMethod must be a URL")
    if options.get("proofPurpose") != "assertionMethod":
        raise CredentialError(
            "unsupported", f"{what}: proofPurpose {options.get('proofPurpose')!r} is not assertionMethod"
        )
    if "created" in options:
        parse_datetime(options["created"], f"{what}: proof.created")
    try:
        key = trust.resolve(method)
    except _Untrusted as exc:
        verify_proof(doc, exc.key.public_key)  # a forgery reads as a forgery, not as "untrusted"
        raise CredentialError(exc.reason, f"{what}: {str(exc).partition(': ')[2]}") from None
    verify_proof(doc, key.public_key)
    if key.controller != issuer:
        raise CredentialError(
            "untrusted_issuer", f"{what} says issuer {issuer}, but is signed by a key of {key.controller}"
        )
    if "expires" in options and parse_datetime(options["expires"], f"{what}: proof.expires") < at:
        raise CredentialError("expired", f"{what}: its proof expired at {options['expires']}")
    return method


def _check_window(valid_from: dt.datetime | None, valid_until: dt.datetime | None, at: dt.datetime, what: str) -> None:
    if valid_from is not None and at < valid_from:
        raise CredentialError("not_yet_valid", f"{what} is valid from {_iso(valid_from)}, after {_iso(at)}")
    if valid_until is not None and at > valid_until:
        raise CredentialError("expired", f"{what} expired at {_iso(valid_until)}, before {_iso(at)}")


def _check_status(
    doc: Mapping[str, Any],
    issuer: str,
    trust: TrustList,
    status_lists: Mapping[str, Mapping[str, Any]],
    at: dt.datetime,
    what: str,
) -> tuple[StatusCheck, ...]:
    checks = []
    for entry in status_entries(doc):
        list_id, purpose, index = (
            entry["statusListCredential"],
            entry["statusPurpose"],
            parse_index(entry["statusListIndex"]),
        )
        status_list = status_lists.get(list_id)
        if status_list is None:
            raise CredentialError(
                "status_unknown",
                f"{what} has {purpose} status in list {list_id}, which was not "
                "supplied: pass the issuer's status list file with --status-list",
            )
        list_what = f"status list {list_id}"
        subject = list_subject(status_list)
        list_issuer = _id_of(status_list.get("issuer"), f"{list_what} issuer")
        if list_issuer != issuer:
            raise CredentialError("untrusted_issuer", f"{list_what} is issued by {list_issuer}, not by {issuer}")
        if "proof" in status_list:
            _check_proof(status_list, trust, issuer, at, list_what)
        # A list signed after ``at`` still answers (revocation is not back-dated); a lapsed one does not.
        if "validUntil" in status_list and parse_datetime(status_list["validUntil"], f"{list_what} validUntil") < at:
            raise CredentialError(
                "status_unknown",
                f"{list_what} lapsed at {status_list['validUntil']}: get a current one from the issuer",
            )
        if subject.get("statusPurpose") != purpose:
            raise CredentialError(
                "malformed", f"{list_what} has purpose {subject.get('statusPurpose')!r}, not {purpose!r}"
            )
        if bit_at(decode_bits(subject["encodedList"]), index):
            reason = "revoked" if purpose == "revocation" else "suspended"
            raise CredentialError(reason, f"{what} is {reason}: bit {index} of {list_id} is set")
        checks.append(StatusCheck(purpose, list_id, index))
    return tuple(checks)


def verify_credential(
    credential: str | bytes | Mapping[str, Any],
    trust: TrustList,
    status_lists: Mapping[str, Mapping[str, Any]],
    at: dt.datetime,
) -> VerifiedCredential:
    """Every check above, or ``CredentialError`` naming the first that failed."""
    if at.tzinfo is None:
        raise ValidationError("verification time needs a timezone")
    doc = parse_json(credential) if isinstance(credential, (str, bytes)) else dict(credential)
    issuer, subject, valid_from, valid_until = _check_form(doc)
    cid = doc.get("id")
    what = f"credential {cid}" if isinstance(cid, str) else "the credential"
    method = _check_proof(doc, trust, issuer, at, what)
    _check_window(valid_from, valid_until, at, what)
    status = _check_status(doc, issuer, trust, status_lists, at, what)
    return VerifiedCredential(
        cid if isinstance(cid, str) else None, issuer, subject, valid_from, valid_until, method, status, doc
    )
