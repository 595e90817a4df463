"""IBAN and BIC checks: published example IBANs, each failed check by name, generated test IBANs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endcredits.errors import ValidationError
from endcredits.payouts.iban import (
    BBAN_FORMAT_BY_COUNTRY,
    IBAN_LENGTH_BY_COUNTRY,
    SEPA_COUNTRIES,
    is_valid_bic,
    make_test_iban,
    normalize_bic,
    normalize_iban,
)

# Example IBANs published by national banks and the SWIFT IBAN registry, one per country in the table.
EXAMPLE_IBANS = [
    "AD1200012030200359100100", "AE070331234567890123456", "AL47212110090000000235698741",
    "AT611904300234573201", "BA391290079401028494", "BE68539007547034",
    "BG80BNBG96611020345678", "BH67BMAG00001299123456", "BR1800360305000010009795493C1",
    "CH9300762011623852957", "CR05015202001026284066", "CY17002001280000001200527600",
    "CZ6508000000192000145399", "DE89370400440532013000", "DK5000400440116243",
    "EE382200221020145685", "ES9121000418450200051332", "FI2112345600000785",
    "FO6264600001631634", "FR1420041010050500013M02606", "GB29NWBK60161331926819",
    "GE29NB0000000101904917", "GI75NWBK000000007099453", "GL8964710001000206",
    "GR1601101250000000012300695", "HR1210010051863000160", "HU42117730161111101800000000",
    "IE29AIBK93115212345678", "IL620108000000099999999", "IS140159260076545510730339",
    "IT60X0542811101000000123456", "JO94CBJO0010000000000131000302", "KW81CBKU0000000000001234560101",
    "KZ86125KZT5004100100", "LB62099900000001001901229114", "LI21088100002324013AA",
    "LT121000011101001000", "LU280019400644750000", "LV80BANK0000435195001",
    "MC5811222000010123456789030", "MD24AG000225100013104168", "ME25505000012345678951",
    "MK07250120000058984", "MT84MALT011000012345MTLCAST001S", "NL91ABNA0417164300",
    "NO9386011117947", "PK36SCBL0000001123456702", "PL61109010140000071219812874",
    "PT50000201231234567890154", "QA58DOHB00001234567890ABCDEFG", "RO49AAAA1B31007593840000",
    "RS35260005601001611379", "SA0380000000608010167519", "SE4550000000058398257466",
    "SI56263300012039086", "SK3112000000198742637541", "SM86U0322509800000000270100",
    "TN5910006035183598478831", "TR330006100519786457841326", "UA213223130000026007233566001",
    "VA59001123000012345678", "XK051212012345678906",
]  # fmt: skip


def test_examples_cover_every_country_in_the_table() -> None:
    assert sorted(iban[:2] for iban in EXAMPLE_IBANS) == sorted(BBAN_FORMAT_BY_COUNTRY)
    assert SEPA_COUNTRIES <= set(BBAN_FORMAT_BY_COUNTRY)


@pytest.mark.parametrize("iban", EXAMPLE_IBANS)
def test_published_examples_validate(iban: str) -> None:
    assert normalize_iban(iban) == iban
    assert len(iban) == IBAN_LENGTH_BY_COUNTRY[iban[:2]]


def test_spaces_and_lower_case_are_normalized() -> None:
    assert normalize_iban("  de89 3704 0044 0532 0130 00\t") == "DE89370400440532013000"
    assert normalize_iban("GB29\u00a0NWBK 6016 1331 9268 19") == "GB29NWBK60161331926819"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "IBAN is empty"),
        ("   ", "IBAN is empty"),
        ("DE89-3704-0044-0532-0130-00", "characters other than letters"),
        ("DE89 3704 0044 0532 0130 0ı", "characters other than letters"),  # dotless i upper-cases to ASCII I
        ("ZZ89370400440532013000", "unknown country code 'ZZ'"),
        ("DE8937040044053201300", "length check failed: a DE IBAN has 22 characters, this one has 21"),
        ("DE893704004405320130000", "length check failed"),
        ("DE00370400440532013000", "check digits '00' are not two digits between 02 and 98"),
        ("DEX9370400440532013000", "check digits 'X9'"),
        ("DE8937040044053201300A", "format check failed: the account part of a DE IBAN is 8n10n"),
        ("DE88370400440532013000", r"checksum failed \(ISO 7064 mod-97-10\)"),
        ("DE89370400440532031000", "checksum failed"),  # two adjacent digits swapped
        ("x" * 101, "at most 100 are read"),
    ],
)
def test_each_failed_check_is_named(text: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match) as info:
        normalize_iban(text)
    assert "\n" not in str(info.value)


def test_errors_mask_the_account_number() -> None:
    with pytest.raises(ValidationError) as info:
        normalize_iban("DE88370400440532013000")
    assert "0532013" not in str(info.value)
    assert "DE88…3000" in str(info.value)


def test_non_text_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be text"):
        normalize_iban(12345)  # type: ignore[arg-type]


@given(country=st.sampled_from(sorted(BBAN_FORMAT_BY_COUNTRY)), seed=st.integers(0, 2**64))
@settings(max_examples=200)
def test_generated_ibans_validate_and_any_digit_flip_breaks_them(country: str, seed: int) -> None:
    iban = make_test_iban(country, seed)
    assert iban == make_test_iban(country, seed)
    assert normalize_iban(iban) == iban
    assert len(iban) == IBAN_LENGTH_BY_COUNTRY[country]
    for position, ch in enumerate(iban):
        if not ch.isdigit():
            continue
        for replacement in "0123456789":
            if replacement == ch:
                continue
            flipped = iban[:position] + replacement + iban[position + 1 :]
            with pytest.raises(ValidationError):
                normalize_iban(flipped)


def test_generated_ibans_differ_by_seed_and_country() -> None:
    ibans = {make_test_iban("DE", seed) for seed in range(200)}
    assert len(ibans) == 200
    assert make_test_iban("DE", 1)[:2] == "DE" and make_test_iban("FR", 1)[:2] == "FR"


@pytest.mark.parametrize(("country", "seed"), [("ZZ", 1), ("de", 1), ("DE", -1), ("DE", True)])
def test_make_test_iban_refuses_bad_arguments(country: str, seed: int) -> None:
    with pytest.raises(ValidationError):
        make_test_iban(country, seed)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("DEUTDEFF", "DEUTDEFF"),
        ("deut de ff 500", "DEUTDEFF500"),
        ("COBADEFFXXX", "COBADEFFXXX"),
        ("AB1CDEF2", "AB1CDEF2"),
    ],
)
def test_valid_bics(text: str, normalized: str) -> None:
    assert normalize_bic(text) == normalized
    assert is_valid_bic(text)


@pytest.mark.parametrize(
    "text", ["", "DEUTDEF", "DEUTDEFF5", "DEUTDEFF5000", "DEUT1EFF", "DEUT-DEFF", "DEUTDÉFF", "X" * 41]
)
def test_invalid_bics(text: str) -> None:
    assert not is_valid_bic(text)
    with pytest.raises(ValidationError):
        normalize_bic(text)
