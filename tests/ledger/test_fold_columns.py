"""The fold's columnar arithmetic (``ledger.fold_columns``) equals a plain Python loop over the legs and
carries: random segments whose keys repeat across segments (and, in some, within one), amounts small, near
2^62 and beyond int64 (as decimal text), a base (the snapshot) that holds some keys; sums, last transfers,
positions in the base, the Python-int and text-form decisions and the carries' order all checked."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from endcredits.ledger.fold_columns import encoded, folded_carries, summed_legs
from endcredits.ledger.segments import Segment
from endcredits.ledger.snapshot import Snapshot, _text_balances, encode_snapshot


def _segment(rng: random.Random, transfer_id: int, size: str, repeats: bool) -> Segment:
    """Legs over 60 keys and carries over 60 payees; ``repeats``: a key or payee may come twice."""
    n = rng.randrange(1, 40)
    keys = [f"escrow:name:{rng.randrange(60)}:EUR" for _ in range(n)]
    payees = [f"name:{rng.randrange(60)}" for _ in range(n)]
    if not repeats:
        keys, payees = list(dict.fromkeys(keys)), list(dict.fromkeys(payees))
    top = {"small": 10**6, "near": 1 << 62, "huge": 10**25}[size]
    amounts = [rng.randrange(-top, top) or 1 for _ in keys]
    if size == "huge":
        amount_col = pa.array([str(a) for a in amounts], pa.string())
    else:
        amount_col = pa.array(amounts, pa.int64())
    subunits = pa.array([rng.randrange(1 << 40) for _ in payees], pa.int64())
    return Segment(transfer_id, "EUR", pa.array(keys), amount_col, pa.array(payees), subunits, "")


@pytest.mark.parametrize("seed", range(12))
def test_summed_legs_equal_a_plain_sum(seed: int) -> None:
    rng = random.Random(seed)
    size = ["small", "near", "huge"][seed % 3]
    segments = [_segment(rng, 10 + 3 * i, size, repeats=seed % 2 == 1) for i in range(rng.randrange(1, 9))]
    base = [f"escrow:name:{i}:EUR" for i in rng.sample(range(80), 30)]
    sums: dict[str, int] = {}
    last: dict[str, int] = {}
    for seg in segments:
        for key, amount in zip(seg.accounts.to_pylist(), seg.amount_list()):
            sums[key] = sums.get(key, 0) + amount
            last[key] = seg.transfer_id
    legs = summed_legs(segments, pa.array(base, pa.string()))
    keys = legs.keys.to_pylist()
    assert sorted(keys) == sorted(sums) and len(set(keys)) == len(keys)
    assert dict(zip(keys, (int(v) for v in legs.sums.tolist()))) == sums
    assert dict(zip(keys, legs.last.tolist())) == last
    assert legs.at_base.tolist() == [base.index(k) if k in base else -1 for k in keys]
    n_legs = sum(len(seg.accounts) for seg in segments)
    bound = max(abs(a) for seg in segments for a in seg.amount_list())
    assert legs.big == (size == "huge" or bound * n_legs >= (1 << 63))  # as the fold always decided it
    if size == "small":
        assert legs.sums.dtype == np.int64


@pytest.mark.parametrize("seed", range(8))
def test_folded_carries_equal_the_latest_in_transfer_order(seed: int) -> None:
    rng = random.Random(100 + seed)
    segments = [_segment(rng, 5 + i, "small", repeats=seed % 2 == 1) for i in range(rng.randrange(1, 9))]
    base = [f"name:{i}" for i in rng.sample(range(80), 25)]
    base_subunits = np.array([rng.randrange(1 << 40) for _ in base], dtype=np.int64)
    expected = dict(zip(base, base_subunits.tolist()))
    met: dict[str, None] = {}
    for seg in segments:
        assert seg.payees is not None and seg.subunits is not None
        for payee, carry in zip(seg.payees.to_pylist(), seg.subunits.to_pylist()):
            expected[payee] = carry  # the latest wins, within a segment too
            met[payee] = None
    payees, subunits, n = folded_carries(pa.array(base, pa.string()), base_subunits, segments)
    assert payees.to_pylist() == base + [p for p in met if p not in base]  # new payees in the order first met
    assert dict(zip(payees.to_pylist(), subunits.tolist())) == expected
    assert n == len(met)


def test_encoded_gives_a_repeated_base_key_its_first_position() -> None:
    dictionary, at_base, codes = encoded(pa.array(["b", "a", "b"]), [pa.array(["a", "c", "b"])])
    assert dictionary.to_pylist() == ["b", "a", "c"]
    assert at_base.tolist() == [0, 1, -1]
    assert [c.tolist() for c in codes] == [[1, 2, 0]]


def test_text_balances_from_int64_are_the_bytes_python_ints_give() -> None:
    """A snapshot kept as decimal text whose balances fit int64 (written by Arrow's cast) encodes to the
    same bytes as the same balances as Python ints (written by ``str``)."""
    values = [0, -1, 7, -(1 << 63), (1 << 63) - 1, 10**18, -123456789012345]
    keys = pa.array([f"escrow:name:{i}:EUR" for i in range(len(values))])
    none = pa.array([], pa.string())
    last = np.arange(len(values), dtype=np.int64)
    as_ints = np.array(values, dtype=object)
    plain = Snapshot(1, 0, keys, as_ints, last, none, none, np.zeros(0, np.int64), "")
    cast = Snapshot(1, 0, keys, np.array(values, dtype=np.int64), last, none, none, np.zeros(0, np.int64), "", True)
    assert encode_snapshot(cast) == encode_snapshot(plain)
    assert _text_balances(pa.array([str(v) for v in values])).tolist() == values
    assert _text_balances(pa.array(["1", str(1 << 70)])).tolist() == [1, 1 << 70]  # beyond int64: Python ints
