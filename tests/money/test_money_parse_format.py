"""parse_amount / format_amount: exact text <-> integer microunits, each the inverse of the other."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endcredits.errors import LimitExceededError, ValidationError
from endcredits.limits import AMOUNT_MICROUNITS_MAX, MICROUNITS_PER_UNIT
from endcredits.money import CURRENCY_MINOR_DIGITS, format_amount, parse_amount

CURRENCIES = sorted(CURRENCY_MINOR_DIGITS)

amounts = st.one_of(
    st.integers(-AMOUNT_MICROUNITS_MAX, AMOUNT_MICROUNITS_MAX),
    st.integers(-(10**12), 10**12),
    st.integers(-(2**64), 2**64),
    st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, -(2**63), AMOUNT_MICROUNITS_MAX, -AMOUNT_MICROUNITS_MAX]),
)
currencies = st.sampled_from(CURRENCIES)


@st.composite
def amount_texts(draw: st.DrawFn) -> str:
    """Well-formed amount text within the storable range: -?(0|[1-9][0-9]*)(.[0-9]{1,8})?"""
    sign = draw(st.sampled_from(["", "-"]))
    whole = str(draw(st.integers(0, 10**22 - 1)))
    n_decimals = draw(st.integers(0, 8))
    frac = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=n_decimals, max_size=n_decimals)))
    pad = draw(st.sampled_from(["", " ", "\t", "\n "]))
    return f"{pad}{sign}{whole}{'.' + frac if frac else ''}{pad}"


@settings(deadline=None)
@given(amounts, currencies)
def test_format_then_parse_is_identity(microunits: int, currency: str) -> None:
    text = format_amount(microunits, currency)
    assert parse_amount(text, currency) == microunits


@settings(deadline=None)
@given(amount_texts(), currencies)
def test_parse_is_exact_and_parse_format_parse_is_stable(text: str, currency: str) -> None:
    microunits = parse_amount(text, currency)
    assert microunits == Fraction(text.strip()) * MICROUNITS_PER_UNIT
    canonical = format_amount(microunits, currency)
    assert parse_amount(canonical, currency) == microunits
    assert format_amount(parse_amount(canonical, currency), currency) == canonical


@settings(deadline=None)
@given(amounts, currencies)
def test_format_shows_at_least_the_minor_digits_and_no_more_than_needed(microunits: int, currency: str) -> None:
    minor = CURRENCY_MINOR_DIGITS[currency]
    text = format_amount(microunits, currency)
    assert text.startswith("-") == (microunits < 0)
    whole, dot, frac = text.lstrip("-").partition(".")
    assert whole.isascii() and whole.isdigit() and (whole == "0" or not whole.startswith("0"))
    assert len(frac) >= minor
    assert len(frac) <= 8
    if len(frac) > minor:
        assert not frac.endswith("0"), f"{text!r} has a needless trailing zero"
    if minor == 0 and microunits % MICROUNITS_PER_UNIT == 0:
        assert dot == "", f"{text!r}: a whole amount in a currency without minor units has no point"


@pytest.mark.parametrize(
    ("microunits", "currency", "text"),
    [
        (0, "EUR", "0.00"),
        (0, "JPY", "0"),
        (0, "KWD", "0.000"),
        (1, "EUR", "0.00000001"),
        (-1, "EUR", "-0.00000001"),
        (1234000000, "EUR", "12.34"),
        (1234500000, "EUR", "12.345"),
        (1234500000, "JPY", "12.345"),
        (1200000000, "JPY", "12"),
        (1200000000, "KWD", "12.000"),
        (-5 * MICROUNITS_PER_UNIT, "USD", "-5.00"),
        (2**63, "EUR", "92233720368.54775808"),
        (AMOUNT_MICROUNITS_MAX, "EUR", "9999999999999999999999.99999999"),
        (-AMOUNT_MICROUNITS_MAX, "JPY", "-9999999999999999999999.99999999"),
    ],
)
def test_format_examples(microunits: int, currency: str, text: str) -> None:
    assert format_amount(microunits, currency) == text
    assert parse_amount(text, currency) == microunits


def test_smallest_amount_is_one_microunit() -> None:
    assert parse_amount("0.00000001", "EUR") == 1
    assert parse_amount("-0.00000001", "EUR") == -1
    assert parse_amount("0.1", "EUR") == 10_000_000


def test_amounts_beyond_int64_parse_exactly() -> None:
    assert parse_amount("92233720368.54775807", "EUR") == 2**63 - 1
    assert parse_amount("92233720368.54775808", "EUR") == 2**63
    assert parse_amount("-92233720368.54775809", "EUR") == -(2**63) - 1
    assert parse_amount("9999999999999999999999.99999999", "EUR") == AMOUNT_MICROUNITS_MAX


def test_surrounding_whitespace_and_minus_zero() -> None:
    assert parse_amount("  12.34\n", "EUR") == 1_234_000_000
    assert parse_amount("-0", "EUR") == 0
    assert parse_amount("0.00000000", "EUR") == 0


MALFORMED = [
    "1e5", "1E5", "1.5e-3", "NaN", "nan", "inf", "-inf", "Infinity",
    "1,000.00", "1 000", "1_000", "1'000", "+5", "1.", ".5", "-.5", "-", "--1", "- 1",
    "0x10", "0b1", "١٢", "１２", "1.٢", "007", "00.5", "-01", "1.2.3", "12a", "$12", "12 EUR", "1/2",
]  # fmt: skip


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_text_is_rejected(text: str) -> None:
    with pytest.raises(ValidationError, match=r"malformed amount .*plain decimal digits"):
        parse_amount(text, "EUR")


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_text_is_rejected(text: str) -> None:
    with pytest.raises(ValidationError, match="amount is empty"):
        parse_amount(text, "EUR")


@pytest.mark.parametrize("text", ["0.000000001", "1.123456789", "-0.000000000"])
def test_more_than_eight_decimals_is_rejected(text: str) -> None:
    with pytest.raises(ValidationError, match=r"has 9 decimals; at most 8"):
        parse_amount(text, "EUR")


@pytest.mark.parametrize("text", [12, 12.5, None, b"12.34"])
def test_non_text_is_rejected(text: object) -> None:
    with pytest.raises(ValidationError, match="amount must be text"):
        parse_amount(text, "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["usd", "XXX", "EURO", "", " EUR", None, 978])
def test_unknown_currency_is_rejected(currency: object) -> None:
    with pytest.raises(ValidationError, match=r"unknown currency .*ISO 4217"):
        parse_amount("1.00", currency)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"unknown currency .*ISO 4217"):
        format_amount(100, currency)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["10000000000000000000000", "-10000000000000000000000", "99999999999999999999999.9"])
def test_parse_beyond_the_bound_is_a_limit_error(text: str) -> None:
    with pytest.raises(LimitExceededError, match="beyond the largest storable amount"):
        parse_amount(text, "EUR")


@pytest.mark.parametrize("n_digits", [31, 100, 4301, 10_000])
def test_very_long_digit_strings_are_a_limit_error(n_digits: int) -> None:
    # Python refuses int() of more than 4300 digits with a bare ValueError; parse_amount must still answer
    # with one of its own errors (and should not spend time converting digits it will refuse anyway).
    with pytest.raises(LimitExceededError, match="beyond the largest storable amount"):
        parse_amount("9" * n_digits, "EUR")


@pytest.mark.parametrize("microunits", [AMOUNT_MICROUNITS_MAX + 1, -AMOUNT_MICROUNITS_MAX - 1, 10**40])
def test_format_beyond_the_bound_is_a_limit_error(microunits: int) -> None:
    with pytest.raises(LimitExceededError, match="beyond the largest storable amount"):
        format_amount(microunits, "EUR")


@pytest.mark.parametrize("microunits", [True, 1.0, "100", None])
def test_format_rejects_non_integers(microunits: object) -> None:
    with pytest.raises(ValidationError, match="must be an integer count of microunits"):
        format_amount(microunits, "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", CURRENCIES)
def test_every_currency_round_trips_its_smallest_minor_unit(currency: str) -> None:
    minor = CURRENCY_MINOR_DIGITS[currency]
    one_minor = 10 ** (8 - minor)
    text = format_amount(one_minor, currency)
    assert text == ("0." + "0" * (minor - 1) + "1" if minor else "1")
    assert parse_amount(text, currency) == one_minor
