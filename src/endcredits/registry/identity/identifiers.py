"""Person identifiers a credential or a registration may carry: ORCID, ISNI, IPI name number.

* ORCID iD and ISNI are both 16 characters, 15 digits and an ISO/IEC 7064 MOD 11-2 check character
  (``0``-``9`` or ``X``). An ORCID iD is an ISNI from a block ISNI reserved for ORCID, so one check covers
  both; ``validate_orcid`` returns the hyphenated form (``0000-0002-1825-0097``), ``validate_isni`` the
  spaced form (``0000 0001 2103 2683``). What is not checked: whether the number was ever assigned
  (that needs the registry, over the network), and ORCID's assigned ranges, which ORCID may widen.
* IPI name number (CISAC's Interested Parties Information): 11 decimal digits, written with leading
  zeros. Its last two digits are check digits, but CISAC publishes neither the algorithm nor a reference
  implementation, so only the form is checked: exactly 11 digits, not all zero. A typo in the body of
  an IPI number is therefore not caught here.
"""

from __future__ import annotations

import re

from endcredits.errors import ValidationError

_SIXTEEN = re.compile(r"[0-9]{15}[0-9X]")
_ORCID_PREFIXES = ("https://orcid.org/", "http://orcid.org/")
_ISNI_PREFIXES = ("https://isni.org/isni/", "http://isni.org/isni/", "isni:")


def mod11_2_check(digits: str) -> str:
    """The ISO/IEC 7064 MOD 11-2 check character of a string of decimal digits."""
    total = 0
    for ch in digits:
        if not "0" <= ch <= "9":
            raise ValidationError(f"{digits!r} must be decimal digits")
        total = (total + int(ch)) * 2
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def _sixteen(raw: str, what: str, prefixes: tuple[str, ...], example: str) -> str:
    if not isinstance(raw, str):
        raise ValidationError(f"{what} must be text")
    text = raw.strip()
    for prefix in prefixes:
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
            break
    compact = text.replace("-", "").replace(" ", "").upper()
    if not _SIXTEEN.fullmatch(compact):
        raise ValidationError(f"{what} {raw!r} must be 16 characters: 15 digits and a check digit, such as {example}")
    expected = mod11_2_check(compact[:15])
    if compact[15] != expected:
        raise ValidationError(f"{what} {raw!r} has check digit {compact[15]}; ISO 7064 MOD 11-2 gives {expected}")
    return compact


def validate_orcid(raw: str) -> str:
    """An ORCID iD (bare, or as an ``https://orcid.org/`` URI) in its hyphenated form."""
    c = _sixteen(raw, "ORCID iD", _ORCID_PREFIXES, "0000-0002-1825-0097")
    return "-".join(c[i : i + 4] for i in range(0, 16, 4))


def validate_isni(raw: str) -> str:
    """An ISNI (spaces, hyphens or an ``isni.org`` URI allowed) in its spaced form."""
    c = _sixteen(raw, "ISNI", _ISNI_PREFIXES, "0000 0001 2103 2683")
    return " ".join(c[i : i + 4] for i in range(0, 16, 4))


def validate_ipi(raw: str) -> str:
    """An IPI name number as 11 digits (shorter numbers are padded with leading zeros, as CISAC writes them)."""
    if not isinstance(raw, str):
        raise ValidationError("IPI name number must be text")
    text = raw.strip().replace(" ", "").replace(".", "")
    if not text.isascii() or not text.isdigit() or not 1 <= len(text) <= 11:
        raise ValidationError(f"IPI name number {raw!r} must be up to 11 decimal digits, such as 00012345678")
    padded = text.zfill(11)
    if padded == "0" * 11:
        raise ValidationError("IPI name number 00000000000 is not a name number")
    return padded


IDENTIFIER_VALIDATORS = {"orcid": validate_orcid, "isni": validate_isni, "ipi": validate_ipi}
"""Subject properties a credential may carry, each checked when present."""
