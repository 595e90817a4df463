"""W3C Bitstring Status List v1.0: the bitstring that says which credentials an issuer has revoked.

``encodedList`` is multibase base64url (``u``, no padding) of the GZIP-compressed bitstring. Index 0 is
the left-most bit: the most significant bit of the first byte. One bit per credential (``statusSize``
1); a set bit means revoked (purpose ``revocation``) or suspended (purpose ``suspension``).
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from endcredits.errors import CredentialError, ValidationError
from endcredits.registry.identity.jsonfile import read_json_file
from endcredits.registry.identity.multibase import base64url, multibase_decode

STATUS_LIST_BITS_MIN = 131_072
"""The spec's minimum length (16 KiB): a list this long hides which credential a verifier asks about."""
STATUS_LIST_BITS_MAX = 1 << 27
"""Longest bitstring decompressed (16 MiB): a bound that stops a GZIP bomb."""
STATUS_LIST_FILE_BYTES_MAX = 1 << 24
STATUS_PURPOSES = ("revocation", "suspension")


def encode_bits(bits: bytes | bytearray) -> str:
    # mtime=0 so the same bits always encode to the same text.
    return base64url(gzip.compress(bytes(bits), mtime=0))


def decode_bits(encoded: str) -> bytes:
    try:
        compressed = multibase_decode(encoded, "encodedList")
    except ValidationError as exc:
        raise CredentialError("malformed", str(exc)) from None
    if not encoded.startswith("u"):
        raise CredentialError("malformed", "encodedList must be base64url multibase (prefix 'u')")
    limit = STATUS_LIST_BITS_MAX // 8
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(compressed)) as f:
            bits = f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise CredentialError("malformed", f"encodedList is not GZIP data: {exc}") from None
    if len(bits) > limit:
        raise CredentialError(
            "malformed", f"status list is longer than STATUS_LIST_BITS_MAX={STATUS_LIST_BITS_MAX} bits"
        )
    return bits


def bit_at(bits: bytes, index: int) -> bool:
    if not 0 <= index < len(bits) * 8:
        raise CredentialError("malformed", f"statusListIndex {index} is beyond the {len(bits) * 8}-bit status list")
    return bool(bits[index // 8] >> (7 - index % 8) & 1)


def set_bit(bits: bytearray, index: int, value: bool = True) -> None:
    if not 0 <= index < len(bits) * 8:
        raise ValidationError(f"index {index} is beyond the {len(bits) * 8}-bit status list")
    mask = 1 << (7 - index % 8)
    bits[index // 8] = bits[index // 8] | mask if value else bits[index // 8] & ~mask


def parse_index(value: Any) -> int:
    """``statusListIndex`` is the decimal text of a non-negative integer (a bare integer is accepted)."""
    if isinstance(value, bool):
        raise CredentialError("malformed", "statusListIndex must be a decimal string")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    raise CredentialError("malformed", f"statusListIndex {value!r} is not a non-negative decimal integer")


def status_entries(credential: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``BitstringStatusListEntry`` objects of a credential's ``credentialStatus``."""
    raw = credential.get("credentialStatus")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise CredentialError("malformed", "credentialStatus entries must be objects")
        if item.get("type") != "BitstringStatusListEntry":
            raise CredentialError(
                "unsupported", f"credentialStatus type {item.get('type')!r} is not BitstringStatusListEntry"
            )
        purpose = item.get("statusPurpose")
        if purpose not in STATUS_PURPOSES:
            raise CredentialError("unsupported", f"statusPurpose {purpose!r}: only revocation and suspension are read")
        if item.get("statusSize", 1) != 1:
            raise CredentialError("unsupported", "statusSize other than 1 is not supported")
        if not isinstance(item.get("statusListCredential"), str) or not item["statusListCredential"]:
            raise CredentialError("malformed", "credentialStatus.statusListCredential must be a URL")
        parse_index(item.get("statusListIndex"))
        out.append(item)
    return out


def list_subject(status_credential: Mapping[str, Any]) -> Mapping[str, Any]:
    types = status_credential.get("type")
    subject = status_credential.get("credentialSubject")
    if not isinstance(types, list) or "BitstringStatusListCredential" not in types or not isinstance(subject, dict):
        raise CredentialError("malformed", "a status list is a BitstringStatusListCredential with a credentialSubject")
    if subject.get("type") != "BitstringStatusList" or not isinstance(subject.get("encodedList"), str):
        raise CredentialError(
            "malformed", "the status list's credentialSubject must be a BitstringStatusList with encodedList"
        )
    return subject


def load_status_lists(paths: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """Status list credentials read from files, by their ``id`` (what ``statusListCredential`` names)."""
    lists: dict[str, dict[str, Any]] = {}
    for path in paths:
        doc = read_json_file(path, "status list file", STATUS_LIST_FILE_BYTES_MAX)
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            raise ValidationError(f"status list file {path} has no credential 'id'")
        list_subject(doc)
        lists[doc["id"]] = doc
    return lists
