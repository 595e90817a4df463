"""split_batch: many outputs at once, each pool split over its lines to 2^-32 of a microunit."""

from __future__ import annotations

from fractions import Fraction
from math import floor
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endcredits import money
from endcredits.errors import ValidationError
from endcredits.limits import REVENUE_PER_OUTPUT_MICROUNITS_MAX, SUBUNIT_BITS, SUBUNITS_PER_MICROUNIT
from endcredits.money import Split, split_batch

I64_MAX = (1 << 63) - 1
Line = tuple[int, int]  # (weight, tie_key)
Output = tuple[int, list[Line]]  # (pool_microunits, lines)


def flatten(batch: list[Output]) -> tuple[list[int], np.ndarray, list[int], np.ndarray]:
    pools = [pool for pool, _ in batch]
    offsets = np.cumsum([0] + [len(lines) for _, lines in batch], dtype=np.int64)
    weights = [w for _, lines in batch for w, _ in lines]
    tie_keys = np.array([t for _, lines in batch for _, t in lines], dtype=np.int64)
    return pools, offsets, weights, tie_keys


def reference_split(batch: list[Output]) -> list[list[int]]:
    """Per output, per line: total subunits, by floor + largest remainder on exact Fractions."""
    result = []
    for pool, lines in batch:
        weight_sum = sum(w for w, _ in lines)
        exact = [Fraction(pool * SUBUNITS_PER_MICROUNIT * w, weight_sum) for w, _ in lines]
        parts = [floor(share) for share in exact]
        leftover = pool * SUBUNITS_PER_MICROUNIT - sum(parts)
        order = sorted(range(len(lines)), key=lambda i: (-(exact[i] - parts[i]), lines[i][1]))
        for i in order[:leftover]:
            parts[i] += 1
        result.append(parts)
    return result


def as_subunits(split: Split, batch: list[Output]) -> list[list[int]]:
    """Split -> per output, per line: microunits * 2^32 + subunits (Python ints)."""
    totals = [(int(m) << SUBUNIT_BITS) + int(s) for m, s in zip(split.microunits, split.subunits, strict=True)]
    out, start = [], 0
    for _, lines in batch:
        out.append(totals[start : start + len(lines)])
        start += len(lines)
    return out


def run(batch: list[Output]) -> Split:
    pools, offsets, weights, tie_keys = flatten(batch)
    return split_batch(pools, offsets, weights, tie_keys)


tie_key_values = st.integers(-(2**63), I64_MAX)


@st.composite
def outputs(draw: st.DrawFn, weight: st.SearchStrategy[int], pool_max: int = REVENUE_PER_OUTPUT_MICROUNITS_MAX,
            max_lines: int = 8) -> Output:  # fmt: skip
    n = draw(st.integers(1, max_lines))
    weights = draw(st.lists(weight, min_size=n, max_size=n))
    if sum(weights) == 0:
        weights[draw(st.integers(0, n - 1))] = 1
    ties = draw(st.lists(tie_key_values, min_size=n, max_size=n, unique=True))
    weight_sum = sum(weights)
    pool = draw(
        st.one_of(
            st.integers(0, min(100, pool_max)),
            st.integers(0, min(10**12, pool_max)),
            st.integers(0, pool_max),
            st.just(pool_max),
        )
    )
    assert weight_sum > 0
    return pool, list(zip(weights, ties, strict=True))


# Weights per line at most 2^59 with at most 8 lines: the sum stays below 2^63.
any_weight = st.one_of(st.integers(0, 3), st.integers(0, 1000), st.integers(0, 2**31), st.integers(0, 2**59))
batches = st.lists(outputs(any_weight), min_size=1, max_size=6)


@settings(deadline=None)
@given(batches)
def test_matches_the_fraction_reference(batch: list[Output]) -> None:
    split = run(batch)
    assert split.microunits.dtype == np.int64 and split.subunits.dtype == np.int64
    assert as_subunits(split, batch) == reference_split(batch)


@settings(deadline=None)
@given(batches)
def test_each_output_sums_to_its_pool_and_each_line_is_within_one_subunit(batch: list[Output]) -> None:
    split = run(batch)
    assert ((split.subunits >= 0) & (split.subunits < SUBUNITS_PER_MICROUNIT)).all()
    assert (split.microunits >= 0).all()
    for (pool, lines), parts in zip(batch, as_subunits(split, batch), strict=True):
        assert sum(parts) == pool << SUBUNIT_BITS
        weight_sum = sum(w for w, _ in lines)
        for (w, _), part in zip(lines, parts, strict=True):
            exact = Fraction(pool * SUBUNITS_PER_MICROUNIT * w, weight_sum)
            assert abs(part - exact) < 1
            if w == 0:
                assert part == 0


@settings(deadline=None)
@given(batches, st.data())
def test_permuting_lines_within_an_output_permutes_the_result(batch: list[Output], data: st.DataObject) -> None:
    permutations = [data.draw(st.permutations(range(len(lines)))) for _, lines in batch]
    permuted = [(pool, [lines[i] for i in perm]) for (pool, lines), perm in zip(batch, permutations, strict=True)]
    original = as_subunits(run(batch), batch)
    shuffled = as_subunits(run(permuted), permuted)
    for parts, perm, new_parts in zip(original, permutations, shuffled, strict=True):
        assert new_parts == [parts[i] for i in perm]


@settings(deadline=None)
@given(st.lists(outputs(any_weight), min_size=1, max_size=6), st.data())
def test_permuting_outputs_permutes_the_result(batch: list[Output], data: st.DataObject) -> None:
    perm = data.draw(st.permutations(range(len(batch))))
    original = as_subunits(run(batch), batch)
    permuted = [batch[i] for i in perm]
    assert as_subunits(run(permuted), permuted) == [original[i] for i in perm]


def _fits_int64(output: Output) -> bool:
    pool, lines = output
    weight_sum = sum(w for w, _ in lines)
    return weight_sum < (1 << 31) and pool * weight_sum <= I64_MAX


@st.composite
def int64_outputs(draw: st.DrawFn) -> Output:
    """An output the int64 fast path takes: weight sum below 2^31 and pool * weight sum within int64."""
    pool, lines = draw(outputs(st.one_of(st.integers(0, 5), st.integers(0, 2**28 - 1))))
    weight_sum = sum(w for w, _ in lines)
    pool = min(pool, I64_MAX // weight_sum)
    assert _fits_int64((pool, lines))
    return pool, lines


@settings(deadline=None)
@given(st.lists(int64_outputs(), min_size=1, max_size=6), outputs(st.integers(2**31, 2**59)))
def test_int64_fast_path_and_python_int_path_agree(batch: list[Output], huge: Output) -> None:
    pools, offsets, weights, tie_keys = flatten(batch)
    with (
        mock.patch.object(money, "_split_rows_int64", wraps=money._split_rows_int64) as fast_spy,
        mock.patch.object(money, "_split_rows", wraps=money._split_rows) as spy,
    ):
        fast = split_batch(pools, offsets, np.array(weights, dtype=np.int64), tie_keys)
        assert fast_spy.call_count == 1 and spy.call_count == 0, "expected the int64 path"
        fast_list = split_batch(pools, offsets, weights, tie_keys)
        assert fast_spy.call_count == 2, "expected the int64 path for a list of small ints"
        # One output whose weights sum beyond 2^31 sends the whole batch down the Python-int path.
        slow = run(batch + [huge])
        assert spy.call_count == 1 and spy.call_args.args[2].dtype == object, "expected the Python-int path"
        # The same rule written the plain way (every intermediate a new array), on the same int64 batch.
        plain = money._split_rows(
            np.asarray(pools, dtype=np.int64),
            np.asarray(offsets, dtype=np.int64),
            np.array(weights, dtype=np.int64),
            np.add.reduceat(np.array(weights, dtype=np.int64), np.asarray(offsets)[:-1]),
            np.asarray(tie_keys, dtype=np.int64),
        )
    n = len(weights)
    np.testing.assert_array_equal(fast.microunits, np.asarray(plain[0], dtype=np.int64))
    np.testing.assert_array_equal(fast.subunits, np.asarray(plain[1], dtype=np.int64))
    for other in (fast_list, slow):
        np.testing.assert_array_equal(fast.microunits, other.microunits[:n])
        np.testing.assert_array_equal(fast.subunits, other.subunits[:n])
    assert as_subunits(fast, batch) == reference_split(batch)


def test_examples() -> None:
    # 1 microunit over three equal lines: 2^32 = 3 * 1431655765 + 1, the extra subunit to the smallest tie key.
    split = split_batch([1], np.array([0, 3]), [1, 1, 1], np.array([30, 10, 20]))
    assert split.microunits.tolist() == [0, 0, 0]
    assert split.subunits.tolist() == [1431655765, 1431655766, 1431655765]
    # 2 microunits over weights 1 and 4: 0.4 and 1.6 microunits.
    split = split_batch([2], np.array([0, 2]), [1, 4], np.array([0, 1]))
    assert split.microunits.tolist() == [0, 1]
    assert split.subunits.tolist() == [1717986918, 2576980378]
    # a line that takes the whole pool, and one with nothing
    split = split_batch([REVENUE_PER_OUTPUT_MICROUNITS_MAX], np.array([0, 2]), [0, 5], np.array([0, 1]))
    assert split.microunits.tolist() == [0, REVENUE_PER_OUTPUT_MICROUNITS_MAX]
    assert split.subunits.tolist() == [0, 0]


def test_no_outputs_gives_empty_arrays() -> None:
    split = split_batch([], np.array([0]), [], np.array([], dtype=np.int64))
    assert split.microunits.shape == (0,) and split.subunits.shape == (0,)


def test_pool_at_the_revenue_bound_with_large_weights() -> None:
    batch: list[Output] = [(REVENUE_PER_OUTPUT_MICROUNITS_MAX, [(2**62, 0), (2**62 - 2, 1), (1, 2)])]
    assert as_subunits(run(batch), batch) == reference_split(batch)


def test_numpy_int64_pools_give_the_same_result_as_a_list() -> None:
    # pools as an int64 array (a common caller shape): pool * weight sum must not overflow int64 silently.
    pools = [2**40, 2**40]
    offsets = np.array([0, 2, 4])
    weights = [2**30, 1, 2**62, 1]
    tie_keys = np.array([0, 1, 0, 1])
    expected = split_batch(pools, offsets, weights, tie_keys)
    got = split_batch(np.array(pools, dtype=np.int64), offsets, weights, tie_keys)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got.microunits, expected.microunits)
    np.testing.assert_array_equal(got.subunits, expected.subunits)
    assert sum((int(m) << 32) + int(s) for m, s in zip(got.microunits[:2], got.subunits[:2])) == 2**40 << 32


def _bad(pools: list[object], offsets: list[int], weights: object, tie_keys: list[int]) -> None:
    split_batch(pools, np.array(offsets), weights, np.array(tie_keys))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pools", "offsets", "weights", "tie_keys", "message"),
    [
        ([1, 1], [0, 0, 2], [1, 1], [0, 1], r"every output needs at least one line"),
        ([1, 1], [0, 2, 2], [1, 1], [0, 1], r"every output needs at least one line"),
        ([1, 1], [0, 2, 1, 2], [1, 1], [0, 1], r"offsets must run from 0 to the line count"),
        ([1], [0, 2, 2], [1, 1], [0, 1], r"offsets must run from 0 to the line count"),
        ([1], [0, 3], [1, 1], [0, 1], r"offsets must run from 0 to the line count"),
        ([1], [1, 2], [1, 1], [0, 1], r"offsets must run from 0 to the line count"),
        ([1], [0, 2], [1, 1], [0, 1, 2], r"offsets must run from 0 to the line count"),
        ([1], [0, 2], [1, 1], [0], r"offsets must run from 0 to the line count"),
        ([1, 1], [0, 1, 2], [1, 0], [0, 1], r"weights sum to zero"),
        ([1], [0, 2], [0, 0], [0, 1], r"weights sum to zero"),
        ([1], [0, 2], [1, -1], [0, 1], r"weights must be >= 0"),
        ([1], [0, 2], np.array([3, -1], dtype=np.int64), [0, 1], r"weights must be >= 0"),
        ([-1], [0, 1], [1], [0], r"pools must be between 0 and REVENUE_PER_OUTPUT_MICROUNITS_MAX"),
        ([1, REVENUE_PER_OUTPUT_MICROUNITS_MAX + 1], [0, 1, 2], [1, 1], [0, 1], r"REVENUE_PER_OUTPUT_MICROUNITS_MAX"),
        ([2**70], [0, 1], [1], [0], r"REVENUE_PER_OUTPUT_MICROUNITS_MAX"),
    ],
)
def test_bad_batches_are_rejected(
    pools: list[object], offsets: list[int], weights: object, tie_keys: list[int], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _bad(pools, offsets, weights, tie_keys)


@settings(deadline=None, max_examples=50)
@given(
    st.lists(
        st.tuples(
            st.integers(0, REVENUE_PER_OUTPUT_MICROUNITS_MAX),
            st.lists(
                st.tuples(st.integers(0, 2**90), st.integers(-(2**40), 2**40)),
                min_size=1,
                max_size=6,
                unique_by=lambda wt: wt[1],
            ),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_weight_sums_beyond_int64_are_split_exactly(batch: list[Output]) -> None:
    # Exact credit shares can have large common denominators: such outputs are split in Python integers,
    # by the same rule, and agree with the Fraction reference.
    batch = [(pool, [(w + 2**63 if i == 0 else w, k) for i, (w, k) in enumerate(lines)]) for pool, lines in batch]
    assert as_subunits(run(batch), batch) == reference_split(batch)


@pytest.mark.parametrize(
    "weights",
    [[0.5, 0.5], np.array([0.5, 0.5]), [1.5, 2.0], [True, False], np.array([True, True]), [1, "2"]],
    ids=["float-list", "float-array", "float-list-2", "bool-list", "bool-array", "str"],
)
def test_non_integer_weights_are_rejected(weights: object) -> None:
    # Weights are documented as integers; a float (or bool) must not be truncated silently, which can
    # make a whole pool vanish (weights 0.5, 0.5 became 0, 0 while the weight sum stayed 1).
    with pytest.raises(ValidationError, match="weight"):
        _bad([7], [0, 2], weights, [0, 1])


@pytest.mark.parametrize("pool", [1.5, 2.0, True, "3"])
def test_non_integer_pools_are_rejected(pool: object) -> None:
    # A pool of 1.5 microunits was truncated to 1, destroying half a microunit without a word.
    with pytest.raises(ValidationError, match="pool"):
        _bad([pool], [0, 2], [1, 1], [0, 1])


@settings(deadline=None)
@given(st.lists(outputs(st.integers(2**60, 2**63 - 1)), min_size=1, max_size=4))
def test_int64_weights_whose_sums_pass_int64_stay_exact(batch: list[Output]) -> None:
    """int64 weights are summed per output in int64 only when no sum can overflow; otherwise exactly."""
    pools, offsets, weights, tie_keys = flatten(batch)
    split = split_batch(pools, offsets, np.array(weights, dtype=np.int64), tie_keys)
    assert as_subunits(split, batch) == reference_split(batch)
