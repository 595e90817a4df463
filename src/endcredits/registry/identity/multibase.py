"""Multibase text, Multikey Ed25519 keys and ``did:key`` identifiers.

Two multibase encodings are used by the specs we implement: base58btc (prefix ``z``) for proof values
and keys, and base64url without padding (prefix ``u``) for a status list's ``encodedList``.

base58btc is written here (a dozen lines) instead of taken from a package: the ``base58`` package on
PyPI last released in 2021, and the alphabet and the leading-zero rule are all there is to it.

A Multikey Ed25519 public key is the multicodec varint ``0xed 0x01`` followed by the 32 key bytes; a
secret key (as in the W3C test vectors' ``keyPair.json``) is ``0x80 0x26`` followed by the 32 seed bytes.
"""

from __future__ import annotations

import base64
import binascii

from endcredits.errors import ValidationError

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {ch: i for i, ch in enumerate(_B58_ALPHABET)}

ED25519_PUBLIC_PREFIX = b"\xed\x01"
ED25519_SECRET_PREFIX = b"\x80\x26"
ED25519_KEY_BYTES = 32
MULTIBASE_TEXT_LENGTH_MAX = 1 << 24
"""Longest multibase text decoded (16 MiB): a bound on memory before any decoding starts."""

_B58_DECODE_LENGTH_MAX = 4096
"""base58 decoding is quadratic; nothing we decode in base58 (keys, signatures) comes near this."""


def b58encode(data: bytes) -> str:
    zeros = len(data) - len(data.lstrip(b"\x00"))
    n = int.from_bytes(data, "big")
    digits = []
    while n:
        n, r = divmod(n, 58)
        digits.append(_B58_ALPHABET[r])
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str) -> bytes:
    if len(text) > _B58_DECODE_LENGTH_MAX:
        raise ValidationError(f"base58 text of {len(text)} characters is longer than {_B58_DECODE_LENGTH_MAX}")
    n = 0
    for ch in text:
        value = _B58_INDEX.get(ch)
        if value is None:
            raise ValidationError(f"{ch!r} is not a base58btc character")
        n = n * 58 + value
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * zeros + body


def multibase_decode(text: str, what: str) -> bytes:
    """Decode ``z`` (base58btc) or ``u`` (base64url, no padding) multibase text."""
    if not isinstance(text, str) or not text:
        raise ValidationError(f"{what} must be non-empty multibase text")
    if len(text) > MULTIBASE_TEXT_LENGTH_MAX:
        raise ValidationError(f"{what} is {len(text)} characters; at most {MULTIBASE_TEXT_LENGTH_MAX}")
    prefix, body = text[0], text[1:]
    if prefix == "z":
        try:
            return b58decode(body)
        except ValidationError as exc:
            raise ValidationError(f"{what}: {exc}") from None
    if prefix == "u":
        if "=" in body or any(c in body for c in "+/"):
            raise ValidationError(f"{what} is not base64url without padding")
        try:
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise ValidationError(f"{what} is not valid base64url") from None
    raise ValidationError(f"{what} has multibase prefix {prefix!r}; expected 'z' (base58btc) or 'u' (base64url)")


def base58btc(data: bytes) -> str:
    return "z" + b58encode(data)


def base64url(data: bytes) -> str:
    return "u" + base64.urlsafe_b64encode(data).decode().rstrip("=")


def public_key_multibase(public_key: bytes) -> str:
    if len(public_key) != ED25519_KEY_BYTES:
        raise ValidationError(f"an Ed25519 public key is {ED25519_KEY_BYTES} bytes, not {len(public_key)}")
    return base58btc(ED25519_PUBLIC_PREFIX + public_key)


def secret_key_multibase(seed: bytes) -> str:
    if len(seed) != ED25519_KEY_BYTES:
        raise ValidationError(f"an Ed25519 secret key is {ED25519_KEY_BYTES} bytes")
    return base58btc(ED25519_SECRET_PREFIX + seed)


def decode_public_key(multikey: str) -> bytes:
    """The 32 raw bytes of a Multikey Ed25519 public key (``z6Mk...``)."""
    raw = multibase_decode(multikey, "public key")
    if len(raw) != 2 + ED25519_KEY_BYTES or raw[:2] != ED25519_PUBLIC_PREFIX:
        raise ValidationError(
            f"public key {multikey[:16]}... is not an Ed25519 Multikey (multicodec 0xed01 + 32 bytes)"
        )
    return raw[2:]


def decode_secret_key(multikey: str) -> bytes:
    raw = multibase_decode(multikey, "secret key")
    if len(raw) != 2 + ED25519_KEY_BYTES or raw[:2] != ED25519_SECRET_PREFIX:
        raise ValidationError("secret key is not an Ed25519 Multikey (multicodec 0x8026 + 32 bytes)")
    return raw[2:]


def did_key(public_key: bytes) -> str:
    return "did:key:" + public_key_multibase(public_key)


def did_key_public_key(did: str) -> bytes:
    """The Ed25519 public key inside a ``did:key`` identifier (no network: the key is the identifier)."""
    if not did.startswith("did:key:"):
        raise ValidationError(f"{did!r} is not a did:key")
    return decode_public_key(did.removeprefix("did:key:"))
