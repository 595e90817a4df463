"""IBAN and BIC checks for payout files, and checksum-valid IBANs for demo and test data.

- ``normalize_iban``: free text -> compact upper-case IBAN, after four checks (characters, country,
  length and account format from ``BBAN_FORMAT_BY_COUNTRY``, ISO 7064 mod-97-10 check digits).
- ``normalize_bic`` / ``is_valid_bic``: ISO 9362 structure (8 or 11 characters).
- ``make_test_iban``: a deterministic, checksum-valid IBAN for a country and a seed.

Error messages show an IBAN masked (``DE89…3000``): an account number is personal data and error
messages end up in logs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from types import MappingProxyType

from endcredits.errors import ValidationError, invariant

IBAN_LENGTH_MAX = 34
"""ISO 13616: no IBAN is longer."""

IBAN_TEXT_LENGTH_MAX = 100
"""Longest text ``normalize_iban`` reads (an IBAN with generous spacing); longer input is refused."""

# Basic bank account number (BBAN) format per country, in the notation of the SWIFT IBAN registry:
# "8n10n" is 8 digits then 10 digits; n = digits, a = upper-case letters, c = letters or digits.
BBAN_FORMAT_BY_COUNTRY: Mapping[str, str] = MappingProxyType({
    # SEPA scheme countries and territories with their own IBAN prefix.
    "AD": "4n4n12c", "AL": "8n16c", "AT": "5n11n", "BE": "3n7n2n", "BG": "4a4n2n8c", "CH": "5n12c",
    "CY": "3n5n16c", "CZ": "4n6n10n", "DE": "8n10n", "DK": "4n9n1n", "EE": "2n2n11n1n",
    "ES": "4n4n1n1n10n", "FI": "3n11n", "FR": "5n5n11c2n", "GB": "4a6n8n", "GI": "4a15c",
    "GR": "3n4n16c", "HR": "7n10n", "HU": "3n4n1n15n1n", "IE": "4a6n8n", "IS": "4n2n6n10n",
    "IT": "1a5n5n12c", "LI": "5n12c", "LT": "5n11n", "LU": "3n13c", "LV": "4a13c", "MC": "5n5n11c2n",
    "MD": "2c18c", "ME": "3n13n2n", "MK": "3n10c2n", "MT": "4a5n18c", "NL": "4a10n", "NO": "4n6n1n",
    "PL": "8n16n", "PT": "4n4n11n2n", "RO": "4a16c", "SE": "3n16n1n", "SI": "5n8n2n", "SK": "4n6n10n",
    "SM": "1a5n5n12c", "VA": "3n15n",
    # Outside SEPA (payable through other rails, such as the payout CSV).
    "AE": "3n16n", "BA": "3n3n8n2n", "BH": "4a14c", "BR": "8n5n10n1a1c", "CR": "4n14n", "FO": "4n9n1n",
    "GE": "2a16n", "GL": "4n9n1n", "IL": "3n3n13n", "JO": "4a4n18c", "KW": "4a22c", "KZ": "3n13c",
    "LB": "4n20c", "PK": "4a16c", "QA": "4a21c", "RS": "3n13n2n", "SA": "2n18c", "TN": "2n3n13n2n",
    "TR": "5n1n16c", "UA": "6n19c", "XK": "4n10n2n",
})  # fmt: skip

SEPA_COUNTRIES: frozenset[str] = frozenset({
    "AD", "AL", "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GI", "GR",
    "HR", "HU", "IE", "IS", "IT", "LI", "LT", "LU", "LV", "MC", "MD", "ME", "MK", "MT", "NL", "NO", "PL",
    "PT", "RO", "SE", "SI", "SK", "SM", "VA",
})  # fmt: skip
"""IBAN country prefixes that a SEPA credit transfer can pay (French overseas departments use FR)."""

_FORMAT_PART_RE = re.compile(r"([1-9][0-9]*)([nac])")
_KIND_ALPHABET = {"n": "0123456789", "a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "c": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
_KIND_CLASS = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Z0-9]"}


def _parse_format(fmt: str) -> list[tuple[int, str]]:
    parts = [(int(count), kind) for count, kind in _FORMAT_PART_RE.findall(fmt)]
    invariant("".join(f"{count}{kind}" for count, kind in parts) == fmt, f"malformed BBAN format {fmt!r}")
    return parts


_BBAN_PARTS: dict[str, list[tuple[int, str]]] = {c: _parse_format(f) for c, f in BBAN_FORMAT_BY_COUNTRY.items()}
_BBAN_RE: dict[str, re.Pattern[str]] = {
    c: re.compile("".join(f"{_KIND_CLASS[kind]}{{{count}}}" for count, kind in parts))
    for c, parts in _BBAN_PARTS.items()
}

IBAN_LENGTH_BY_COUNTRY: Mapping[str, int] = MappingProxyType(
    {c: 4 + sum(count for count, _ in parts) for c, parts in _BBAN_PARTS.items()}
)
"""Total IBAN length per country: 2 letters, 2 check digits, then the BBAN."""

invariant(SEPA_COUNTRIES <= set(BBAN_FORMAT_BY_COUNTRY), "every SEPA country needs a BBAN format")
invariant(max(IBAN_LENGTH_BY_COUNTRY.values()) <= IBAN_LENGTH_MAX, "no IBAN is longer than 34 characters")

_BIC_RE = re.compile(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?")
BIC_TEXT_LENGTH_MAX = 40
"""Longest text ``normalize_bic`` reads."""


def _masked(compact: str) -> str:
    """Enough of an IBAN to find it in one's records, not enough to use it."""
    if len(compact) <= 8:
        return "…"
    return f"{compact[:4]}…{compact[-4:]}"


def _mod97(compact: str) -> int:
    """ISO 7064 mod-97-10 of an IBAN: move the first four characters to the end, letters to 10..35."""
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97


def _compact(text: object, what: str, text_length_max: int) -> str:
    if not isinstance(text, str):
        raise ValidationError(f"{what} must be text, got {type(text).__name__}")
    if len(text) > text_length_max:
        raise ValidationError(f"{what} text is {len(text)} characters; at most {text_length_max} are read")
    compact = "".join(text.split())
    if not compact:
        raise ValidationError(f"{what} is empty")
    if not compact.isascii() or not compact.isalnum():
        raise ValidationError(
            f"{what} {_masked(compact) if what == 'IBAN' else repr(compact)} contains characters other than "
            "letters A-Z and digits 0-9: remove punctuation such as '-', '.' or '/'"
        )
    return compact.upper()


def normalize_iban(text: str) -> str:
    """Return ``text`` as a compact upper-case IBAN, or raise ``ValidationError`` naming the failed check.

    Whitespace anywhere is removed and letters are upper-cased. The checks, in order: only ASCII
    letters and digits; a known country code (``BBAN_FORMAT_BY_COUNTRY``); the country's length;
    the country's account format; check digits 02..98 that pass ISO 7064 mod-97-10.
    """
    compact = _compact(text, "IBAN", IBAN_TEXT_LENGTH_MAX)
    country = compact[:2]
    if country not in BBAN_FORMAT_BY_COUNTRY:
        raise ValidationError(
            f"IBAN {_masked(compact)}: unknown country code {country!r}; an IBAN starts with a known "
            "two-letter country code such as 'DE' or 'FR' (see endcredits.payouts.iban.BBAN_FORMAT_BY_COUNTRY)"
        )
    length_expected = IBAN_LENGTH_BY_COUNTRY[country]
    if len(compact) != length_expected:
        raise ValidationError(
            f"IBAN {_masked(compact)}: length check failed: a {country} IBAN has {length_expected} characters, "
            f"this one has {len(compact)}; look for a missing or extra character"
        )
    check_digits = compact[2:4]
    if not check_digits.isdigit() or not 2 <= int(check_digits) <= 98:
        raise ValidationError(
            f"IBAN {_masked(compact)}: check digits {check_digits!r} are not two digits between 02 and 98"
        )
    if _BBAN_RE[country].fullmatch(compact[4:]) is None:
        raise ValidationError(
            f"IBAN {_masked(compact)}: format check failed: the account part of a {country} IBAN is "
            f"{BBAN_FORMAT_BY_COUNTRY[country]} (n digit, a letter, c letter or digit)"
        )
    if _mod97(compact) != 1:
        raise ValidationError(
            f"IBAN {_masked(compact)}: checksum failed (ISO 7064 mod-97-10): a character is mistyped or swapped"
        )
    return compact


def normalize_bic(text: str) -> str:
    """Return ``text`` as a compact upper-case BIC (ISO 9362: 8 or 11 characters), or raise."""
    compact = _compact(text, "BIC", BIC_TEXT_LENGTH_MAX)
    if _BIC_RE.fullmatch(compact) is None:
        raise ValidationError(
            f"BIC {compact!r} is malformed: a BIC is 4 letters or digits (institution), 2 letters (country), "
            "2 letters or digits (location) and optionally 3 more (branch), such as 'DEUTDEFF' or 'DEUTDEFF500'"
        )
    return compact


def is_valid_bic(text: str) -> bool:
    """True when ``normalize_bic(text)`` would succeed."""
    try:
        normalize_bic(text)
    except ValidationError:
        return False
    return True


def _check_digits(country: str, bban: str) -> str:
    remainder = _mod97(f"{country}00{bban}")
    return f"{98 - remainder:02d}"


def make_test_iban(country: str, seed: int) -> str:
    """A checksum-valid IBAN for ``country``, the same for the same ``seed``; for demo and test data only.

    The account part is drawn from SHA-256 of the country and the seed in the country's format, so it
    passes ``normalize_iban`` but is not known to belong to anyone. Never send money to it.
    """
    if country not in BBAN_FORMAT_BY_COUNTRY:
        raise ValidationError(
            f"cannot make a test IBAN for unknown country {country!r}: use one of BBAN_FORMAT_BY_COUNTRY, such as 'DE'"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValidationError(f"test IBAN seed must be a non-negative integer, got {seed!r}")
    chars: list[str] = []
    block = 0
    stream = b""
    for count, kind in _BBAN_PARTS[country]:
        alphabet = _KIND_ALPHABET[kind]
        for _ in range(count):
            if not stream:
                stream = hashlib.sha256(f"endcredits-test-iban:{country}:{seed}:{block}".encode()).digest()
                block += 1
            chars.append(alphabet[stream[0] % len(alphabet)])
            stream = stream[1:]
    bban = "".join(chars)
    return f"{country}{_check_digits(country, bban)}{bban}"


__all__ = [
    "BBAN_FORMAT_BY_COUNTRY",
    "IBAN_LENGTH_BY_COUNTRY",
    "IBAN_LENGTH_MAX",
    "SEPA_COUNTRIES",
    "is_valid_bic",
    "make_test_iban",
    "normalize_bic",
    "normalize_iban",
]
