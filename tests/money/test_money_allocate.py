"""allocate: largest remainder split of a whole into integer parts that sum to it exactly."""

from __future__ import annotations

import random
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endcredits.errors import LimitExceededError, ValidationError
from endcredits.limits import PAYEES_PER_OUTPUT_MAX
from endcredits.money import allocate


def reference_allocate(total: int, weights: dict[str, int | Fraction]) -> dict[str, int]:
    """Pure-Fraction largest remainder: floor every exact share, leftover to the largest remainders,
    ties to the smallest key."""
    weight_sum = sum(Fraction(w) for w in weights.values())
    exact = {k: Fraction(total) * Fraction(w) / weight_sum for k, w in weights.items()}
    parts = {k: floor(share) for k, share in exact.items()}
    leftover = total - sum(parts.values())
    for k in sorted(weights, key=lambda k: (-(exact[k] - parts[k]), k))[:leftover]:
        parts[k] += 1
    return parts


totals = st.one_of(
    st.integers(0, 100),
    st.integers(0, 10**12),
    st.integers(0, 2**70),
    st.sampled_from([2**63 - 1, 2**63, 2**64 + 1, 10**30 - 1]),
)
int_weights = st.one_of(st.integers(0, 5), st.integers(0, 10**6), st.integers(0, 2**64))
keys = st.text(alphabet="abcdefgh", min_size=1, max_size=3)


@st.composite
def weight_maps(draw: st.DrawFn, weight: st.SearchStrategy[int | Fraction] = int_weights) -> dict[str, int | Fraction]:
    mapping = draw(st.dictionaries(keys, weight, min_size=1, max_size=12))
    if all(w == 0 for w in mapping.values()):
        mapping[draw(st.sampled_from(sorted(mapping)))] = draw(st.integers(1, 10**6))
    return mapping


fraction_weights = st.fractions(min_value=0, max_value=10**6, max_denominator=10**9)
mixed_weights = st.one_of(int_weights, fraction_weights)


@settings(deadline=None)
@given(totals, weight_maps(mixed_weights))
def test_parts_sum_to_total_and_are_floor_or_ceil_of_the_exact_share(
    total: int, weights: dict[str, int | Fraction]
) -> None:
    parts = allocate(total, weights)
    assert set(parts) == set(weights)
    assert sum(parts.values()) == total
    weight_sum = sum(Fraction(w) for w in weights.values())
    for key, part in parts.items():
        assert isinstance(part, int) and not isinstance(part, bool)
        assert part >= 0
        exact = Fraction(total) * Fraction(weights[key]) / weight_sum
        assert floor(exact) <= part <= floor(exact) + 1
        assert abs(part - exact) < 1
        if weights[key] == 0:
            assert part == 0


@settings(deadline=None)
@given(totals, weight_maps(mixed_weights))
def test_matches_the_fraction_reference(total: int, weights: dict[str, int | Fraction]) -> None:
    assert allocate(total, weights) == reference_allocate(total, weights)


@settings(deadline=None)
@given(totals, weight_maps(), st.randoms(use_true_random=False))
def test_input_order_does_not_matter(total: int, weights: dict[str, int | Fraction], rnd: random.Random) -> None:
    items = list(weights.items())
    rnd.shuffle(items)
    assert allocate(total, dict(items)) == allocate(total, weights)


@settings(deadline=None)
@given(totals, weight_maps(st.integers(0, 10**9)), st.integers(1, 10**12))
def test_fraction_weights_equal_the_same_weights_scaled_to_ints(
    total: int, weights: dict[str, int | Fraction], denominator: int
) -> None:
    as_fractions: dict[str, int | Fraction] = {k: Fraction(w, denominator) for k, w in weights.items()}
    assert allocate(total, as_fractions) == allocate(total, weights)
    scaled: dict[str, int | Fraction] = {k: w * 7 for k, w in weights.items()}
    assert allocate(total, scaled) == allocate(total, weights)


@settings(deadline=None)
@given(totals, weight_maps(), st.lists(keys, min_size=1, max_size=5))
def test_zero_weight_keys_get_nothing(total: int, weights: dict[str, int | Fraction], extra: list[str]) -> None:
    with_zeros = dict(weights)
    for key in extra:
        with_zeros.setdefault("z" + key, 0)
    parts = allocate(total, with_zeros)
    for key, weight in with_zeros.items():
        if weight == 0:
            assert parts[key] == 0
    assert {k: parts[k] for k in weights} == allocate(total, weights)


def test_leftover_goes_to_the_smallest_key_on_ties() -> None:
    assert allocate(2, {"b": 1, "a": 1, "c": 1}) == {"a": 1, "b": 1, "c": 0}
    assert allocate(1, {"c": 1, "b": 1, "a": 1}) == {"a": 1, "b": 0, "c": 0}
    assert allocate(1, {2: 1, 10: 1}) == {2: 1, 10: 0}  # ints order numerically, not as text


def test_leftover_goes_to_the_largest_remainder_first() -> None:
    # exact shares 10/7*{1,2,4} = 1.43, 2.86, 5.71: floors 1+2+5 = 8, two left, remainders .43 .86 .71
    assert allocate(10, {"a": 1, "b": 2, "c": 4}) == {"a": 1, "b": 3, "c": 6}
    assert allocate(100, {"x": 1, "y": 1, "z": 1}) == {"x": 34, "y": 33, "z": 33}


def test_examples() -> None:
    assert allocate(0, {"a": 1, "b": 2}) == {"a": 0, "b": 0}
    assert allocate(7, {"only": 3}) == {"only": 7}
    assert allocate(5, {"a": 0, "b": 1}) == {"a": 0, "b": 5}
    assert allocate(1, {"a": Fraction(1, 3), "b": Fraction(2, 3)}) == {"a": 0, "b": 1}


def test_totals_beyond_int64_are_exact() -> None:
    total = 2**64 + 1
    assert allocate(total, {"a": 1, "b": 1}) == {"a": 2**63 + 1, "b": 2**63}
    parts = allocate(10**30 - 1, {"a": 1, "b": 2, "c": 3})
    # a and c both have remainder 1/2; the one leftover goes to the smaller key, "a"
    assert parts == {"a": 166666666666666666666666666667, "b": 333333333333333333333333333333,
                     "c": 499999999999999999999999999999}  # fmt: skip
    huge = allocate(2**100, {"a": 2**64 + 1, "b": 3})
    assert sum(huge.values()) == 2**100


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"a": True, "b": 1}, r"weight for 'a' must be an int or Fraction, got bool"),
        ({"a": 1, "b": 0.5}, r"weight for 'b' must be an int or Fraction, got float"),
        ({"a": 1, "b": "2"}, r"weight for 'b' must be an int or Fraction, got str"),
        ({"a": 1, "b": None}, r"weight for 'b' must be an int or Fraction, got NoneType"),
        ({"a": 1, "b": -1}, r"weight for 'b' is negative \(-1\)"),
        ({"a": 1, "b": Fraction(-1, 2)}, r"weight for 'b' is negative \(-1/2\)"),
        ({"a": 0, "b": 0}, r"weights sum to zero"),
        ({"a": Fraction(0)}, r"weights sum to zero"),
        ({}, r"weights sum to zero"),
    ],
)
def test_bad_weights_are_rejected(weights: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        allocate(10, weights)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("total", "message"),
    [
        (-1, r"total -1 is negative"),
        (-(2**64), r"is negative"),
        (True, r"total must be an integer count of microunits, got bool"),
        (10.0, r"total must be an integer count of microunits, got float"),
        (Fraction(10), r"total must be an integer count of microunits, got Fraction"),
        ("10", r"total must be an integer count of microunits, got str"),
    ],
)
def test_bad_totals_are_rejected(total: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        allocate(total, {"a": 1})  # type: ignore[arg-type]


def test_too_many_parts_is_a_limit_error() -> None:
    with pytest.raises(LimitExceededError, match="PAYEES_PER_OUTPUT_MAX"):
        allocate(10, dict.fromkeys(range(PAYEES_PER_OUTPUT_MAX + 1), 1))
