"""ORCID, ISNI and IPI name numbers, on published examples and on one-character typos."""

from __future__ import annotations

import pytest

from endcredits.errors import ValidationError
from endcredits.registry.identity import validate_ipi, validate_isni, validate_orcid
from endcredits.registry.identity.identifiers import mod11_2_check


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("0000-0002-1825-0097", "0000-0002-1825-0097"),  # ORCID's documented example iD (Josiah Carberry)
        ("https://orcid.org/0000-0002-1825-0097", "0000-0002-1825-0097"),
        ("0000-0002-1694-233x", "0000-0002-1694-233X"),  # ORCID's documented example with an X check character
        ("0000000218250097", "0000-0002-1825-0097"),
    ],
)
def test_orcid_examples(raw: str, normal: str) -> None:
    assert validate_orcid(raw) == normal


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("0000 0001 2103 2683", "0000 0001 2103 2683"),
        ("0000000121032683", "0000 0001 2103 2683"),
        ("https://isni.org/isni/000000012281955X", "0000 0001 2281 955X"),
        ("0000-0001-2281-955x", "0000 0001 2281 955X"),
    ],
)
def test_isni_examples(raw: str, normal: str) -> None:
    assert validate_isni(raw) == normal


def test_check_character_of_the_examples() -> None:
    assert mod11_2_check("000000021825009") == "7"
    assert mod11_2_check("000000021694233") == "X"


@pytest.mark.parametrize(
    "raw",
    [
        "0000-0002-1825-0098",
        "0000-0002-1852-0097",
        "0000-0002-1825-009",
        "0000-0002-1825-00977",
        "0000-0002-1825-009A",
        "",
        "https://example.org/0000-0002-1825-0097",
    ],
)
def test_orcid_rejects(raw: str) -> None:
    with pytest.raises(ValidationError, match="ORCID"):
        validate_orcid(raw)


def test_every_single_digit_typo_is_caught() -> None:
    """MOD 11-2 catches every single-character substitution."""
    good = "000000021825009"
    for pos in range(15):
        for d in "0123456789":
            if d != good[pos]:
                wrong = good[:pos] + d + good[pos + 1 :] + "7"
                with pytest.raises(ValidationError, match="check digit"):
                    validate_orcid(wrong)


def test_isni_wrong_check_digit_says_what_it_expected() -> None:
    with pytest.raises(ValidationError, match="MOD 11-2 gives 3"):
        validate_isni("0000 0001 2103 2684")


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("00012345678", "00012345678"), ("12345678", "00012345678"), (" 000 123 456 78 ", "00012345678")],
)
def test_ipi_format(raw: str, normal: str) -> None:
    assert validate_ipi(raw) == normal


@pytest.mark.parametrize("raw", ["123456789012", "0001234567A", "", "00000000000", "１２３"])
def test_ipi_rejects(raw: str) -> None:
    with pytest.raises(ValidationError, match="IPI"):
        validate_ipi(raw)
