"""to_minor_units: whole minor units a bank can pay (cents) and the dust left behind."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endcredits.errors import ValidationError
from endcredits.limits import AMOUNT_MICROUNITS_MAX
from endcredits.money import CURRENCY_MINOR_DIGITS, minor_unit_microunits, parse_amount, to_minor_units

CURRENCIES = sorted(CURRENCY_MINOR_DIGITS)


@settings(deadline=None)
@given(st.one_of(st.integers(0, AMOUNT_MICROUNITS_MAX), st.integers(0, 10**10)), st.sampled_from(CURRENCIES))
def test_minor_units_and_dust_add_back_exactly(microunits: int, currency: str) -> None:
    unit = minor_unit_microunits(currency)
    minor, dust = to_minor_units(microunits, currency)
    assert minor * unit + dust == microunits
    assert 0 <= dust < unit
    assert minor >= 0


@settings(deadline=None)
@given(st.integers(-AMOUNT_MICROUNITS_MAX, -1), st.sampled_from(CURRENCIES))
def test_negative_amounts_add_back_exactly(microunits: int, currency: str) -> None:
    minor, dust = to_minor_units(microunits, currency)
    assert minor * minor_unit_microunits(currency) + dust == microunits


@pytest.mark.parametrize("currency", CURRENCIES)
def test_minor_unit_size_follows_the_currency_digits(currency: str) -> None:
    assert minor_unit_microunits(currency) == 10 ** (8 - CURRENCY_MINOR_DIGITS[currency])


@pytest.mark.parametrize(
    ("text", "currency", "expected"),
    [
        ("12.34", "EUR", (1234, 0)),
        ("12.345", "EUR", (1234, 500_000)),
        ("0.00999999", "USD", (0, 999_999)),
        ("0.01", "USD", (1, 0)),
        ("1234", "JPY", (1234, 0)),
        ("1234.5", "JPY", (1234, 50_000_000)),
        ("0.99999999", "JPY", (0, 99_999_999)),
        ("1.234", "KWD", (1234, 0)),
        ("1.2345", "KWD", (1234, 50_000)),
        ("0.00000001", "KWD", (0, 1)),
        ("92233720368.54775808", "EUR", (9223372036854, 775_808)),
    ],
)
def test_examples(text: str, currency: str, expected: tuple[int, int]) -> None:
    assert to_minor_units(parse_amount(text, currency), currency) == expected


def test_jpy_and_kwd_digits() -> None:
    assert CURRENCY_MINOR_DIGITS["JPY"] == 0 and minor_unit_microunits("JPY") == 10**8
    assert CURRENCY_MINOR_DIGITS["KWD"] == 3 and minor_unit_microunits("KWD") == 10**5
    assert CURRENCY_MINOR_DIGITS["EUR"] == 2 and minor_unit_microunits("EUR") == 10**6


@pytest.mark.parametrize("currency", ["usd", "XXX", "EURO", ""])
def test_unknown_currency_is_rejected(currency: str) -> None:
    with pytest.raises(ValidationError, match=r"unknown currency .*ISO 4217"):
        to_minor_units(100, currency)


@pytest.mark.parametrize("microunits", [1.5, 100.0, True, "100"])
def test_non_integer_microunits_are_rejected(microunits: object) -> None:
    # Money is int microunits everywhere: to_minor_units(1.5, "EUR") answered (0.0, 1.5), a float cent count.
    with pytest.raises(ValidationError, match="must be an integer count of microunits"):
        to_minor_units(microunits, "EUR")  # type: ignore[arg-type]
