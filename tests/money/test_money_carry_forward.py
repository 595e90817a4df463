"""carry_forward: accrued subunits become whole microunits to post; the fraction waits for the next batch."""

from __future__ import annotations

from fractions import Fraction
from math import floor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endcredits.errors import InvariantError
from endcredits.limits import SUBUNIT_BITS, SUBUNITS_PER_MICROUNIT
from endcredits.money import carry_forward, split_batch

# One output of pool 2 microunits split 1:4 gives the small payee exactly 2/5 microunit (before rounding).
SMALL, LARGE = 0, 1


def accrue(n_outputs: int) -> tuple[list[int], list[int]]:
    """One batch of n_outputs outputs, pool 2 over weights 1 (SMALL) and 4 (LARGE): per payee (micro, sub)."""
    offsets = np.arange(0, 2 * n_outputs + 1, 2, dtype=np.int64)
    split = split_batch([2] * n_outputs, offsets, [1, 4] * n_outputs, np.array([SMALL, LARGE] * n_outputs))
    micro = [int(split.microunits[payee::2].sum()) for payee in (SMALL, LARGE)]
    sub = [int(split.subunits[payee::2].sum()) for payee in (SMALL, LARGE)]
    return micro, sub


@settings(deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=25))
def test_two_fifths_of_a_microunit_accumulates(batch_sizes: list[int]) -> None:
    carry = [0, 0]
    posted = [0, 0]
    n = 0
    for size in batch_sizes:
        micro, sub = accrue(size)
        n += size
        for payee in (SMALL, LARGE):
            whole, carry[payee] = carry_forward(carry[payee], micro[payee], sub[payee])
            assert 0 <= carry[payee] < SUBUNITS_PER_MICROUNIT
            assert whole >= 0
            posted[payee] += whole
        # The small payee is owed 0.4 per output; each output rounds its share down by 0.4 subunit.
        exact_small = Fraction(2, 5) * n * SUBUNITS_PER_MICROUNIT
        held_small = (posted[SMALL] << SUBUNIT_BITS) + carry[SMALL]
        assert held_small == n * floor(Fraction(2, 5) * SUBUNITS_PER_MICROUNIT)
        assert 0 <= exact_small - held_small < n
        assert posted[SMALL] in (floor(Fraction(2, 5) * n) - 1, floor(Fraction(2, 5) * n))
        if n % 5:
            assert posted[SMALL] == floor(Fraction(2, 5) * n)
        # Nothing created or lost between the two payees.
        held = sum((p << SUBUNIT_BITS) + c for p, c in zip(posted, carry, strict=True))
        assert held == 2 * n << SUBUNIT_BITS
        assert sum(posted) in (2 * n - 1, 2 * n)


def test_five_outputs_post_two_microunits_less_rounding() -> None:
    carry, posted = 0, 0
    history = []
    for _ in range(10):
        micro, sub = accrue(1)
        whole, carry = carry_forward(carry, micro[SMALL], sub[SMALL])
        posted += whole
        history.append(posted)
    # 0.4, 0.8, 1.2, 1.6, 2.0 - 5 subunits, 2.4, 2.8, 3.2, 3.6, 4.0 - 10 subunits
    assert history == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert carry == SUBUNITS_PER_MICROUNIT - 4


@st.composite
def payee_batches(draw: st.DrawFn) -> list[tuple[list[int], list[list[tuple[int, int]]]]]:
    """Batches of outputs; each output has a pool and (payee, weight) lines with distinct payees."""
    n_payees = draw(st.integers(1, 6))
    batches = []
    for _ in range(draw(st.integers(1, 6))):
        pools, outputs = [], []
        for _ in range(draw(st.integers(1, 5))):
            payees = draw(st.lists(st.integers(0, n_payees - 1), min_size=1, max_size=n_payees, unique=True))
            weights = draw(st.lists(st.integers(0, 10**6), min_size=len(payees), max_size=len(payees)))
            if sum(weights) == 0:
                weights[0] = 1
            pools.append(draw(st.one_of(st.integers(0, 20), st.integers(0, 10**15))))
            outputs.append(list(zip(payees, weights, strict=True)))
        batches.append((pools, outputs))
    return batches


@settings(deadline=None)
@given(payee_batches())
def test_nothing_is_created_or_lost_over_random_batches(
    batches: list[tuple[list[int], list[list[tuple[int, int]]]]],
) -> None:
    carry: dict[int, int] = {}
    posted: dict[int, int] = {}
    accrued_subunits: dict[int, int] = {}
    exact: dict[int, Fraction] = {}
    lines_seen: dict[int, int] = {}
    pools_total = 0
    for pools, outputs in batches:
        lines = [line for output in outputs for line in output]
        offsets = np.cumsum([0] + [len(output) for output in outputs], dtype=np.int64)
        tie_keys = np.array([payee for payee, _ in lines], dtype=np.int64)
        split = split_batch(pools, offsets, [w for _, w in lines], tie_keys)
        micro: dict[int, int] = {}
        sub: dict[int, int] = {}
        for (payee, _), m, s in zip(lines, split.microunits, split.subunits, strict=True):
            micro[payee] = micro.get(payee, 0) + int(m)
            sub[payee] = sub.get(payee, 0) + int(s)
            accrued_subunits[payee] = accrued_subunits.get(payee, 0) + (int(m) << SUBUNIT_BITS) + int(s)
            lines_seen[payee] = lines_seen.get(payee, 0) + 1
        for pool, output in zip(pools, outputs, strict=True):
            weight_sum = sum(w for _, w in output)
            for payee, w in output:
                exact[payee] = exact.get(payee, Fraction(0)) + Fraction(pool * w, weight_sum)
        pools_total += sum(pools)
        for payee, payee_micro in micro.items():
            before = posted.get(payee, 0)
            whole, carry[payee] = carry_forward(carry.get(payee, 0), payee_micro, sub[payee])
            assert 0 <= carry[payee] < SUBUNITS_PER_MICROUNIT
            posted[payee] = before + whole
            assert posted[payee] >= before
    for payee, total in accrued_subunits.items():
        held = (posted[payee] << SUBUNIT_BITS) + carry[payee]
        assert held == total
        error = abs(Fraction(held, SUBUNITS_PER_MICROUNIT) - exact[payee])
        assert error < Fraction(lines_seen[payee], SUBUNITS_PER_MICROUNIT)  # under one subunit per line
    assert sum((posted[p] << SUBUNIT_BITS) + carry[p] for p in posted) == pools_total << SUBUNIT_BITS


@settings(deadline=None)
@given(
    st.integers(0, SUBUNITS_PER_MICROUNIT - 1),
    st.integers(0, 2**70),
    st.one_of(st.integers(0, SUBUNITS_PER_MICROUNIT - 1), st.integers(0, 2**50)),
)
def test_carry_forward_conserves_subunits(carry_in: int, microunits: int, subunits: int) -> None:
    posted, carry_out = carry_forward(carry_in, microunits, subunits)
    assert (posted << SUBUNIT_BITS) + carry_out == (microunits << SUBUNIT_BITS) + subunits + carry_in
    assert 0 <= carry_out < SUBUNITS_PER_MICROUNIT
    assert posted >= microunits


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, SUBUNITS_PER_MICROUNIT - 1)), min_size=1, max_size=30),
       st.data())  # fmt: skip
def test_batching_does_not_change_what_is_posted(accruals: list[tuple[int, int]], data: st.DataObject) -> None:
    """Posting after every output or once for a merged batch ends with the same posted total and carry."""
    carry, posted = 0, 0
    for micro, sub in accruals:
        whole, carry = carry_forward(carry, micro, sub)
        posted += whole
    cuts = sorted(data.draw(st.sets(st.integers(1, len(accruals)), max_size=len(accruals))) | {len(accruals)})
    carry2, posted2, start = 0, 0, 0
    for cut in cuts:
        chunk = accruals[start:cut]
        whole, carry2 = carry_forward(carry2, sum(m for m, _ in chunk), sum(s for _, s in chunk))
        posted2 += whole
        start = cut
    assert (posted2, carry2) == (posted, carry)


def test_carry_forward_examples() -> None:
    assert carry_forward(0, 0, 0) == (0, 0)
    assert carry_forward(0, 5, SUBUNITS_PER_MICROUNIT - 1) == (5, SUBUNITS_PER_MICROUNIT - 1)
    assert carry_forward(1, 5, SUBUNITS_PER_MICROUNIT - 1) == (6, 0)
    assert carry_forward(SUBUNITS_PER_MICROUNIT - 1, 0, SUBUNITS_PER_MICROUNIT - 1) == (1, SUBUNITS_PER_MICROUNIT - 2)
    assert carry_forward(3, 2**63, 3 * SUBUNITS_PER_MICROUNIT) == (2**63 + 3, 3)


@pytest.mark.parametrize("carry_in", [-1, SUBUNITS_PER_MICROUNIT, 2**40])
def test_carry_outside_one_microunit_is_refused(carry_in: int) -> None:
    with pytest.raises(InvariantError, match="carry must be below one microunit"):
        carry_forward(carry_in, 0, 0)
