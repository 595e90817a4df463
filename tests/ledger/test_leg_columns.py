"""Columnar legs (``LegColumns``): checked, hashed and stored as a dict of the same legs is; and a batch
whose payee dictionary holds payees it does not pay accrues the ledger the compact batch does."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endcredits.errors import LedgerError, ValidationError
from endcredits.ledger import LegColumns, TransferRequest, _needs_escape, check_transfer
from endcredits.ledger.accrue import accrue
from endcredits.ledger.segments import encode_legs
from endcredits.ledger.verify import verify
from endcredits.registry.records import route_arrays, route_columns
from endcredits.store.engine import Store
from helpers_money import EXTERNAL, agreement, ledger_state, names_usage, names_world


def _request(keys: list[str], amounts: list[int]) -> TransferRequest:
    legs = LegColumns(pa.array(keys, pa.string()), np.array(amounts, dtype=np.int64))
    return TransferRequest(event_id="t1", code="accrual", currency="EUR", legs=legs)


def _many(n: int) -> tuple[list[str], list[int]]:
    keys = [f"escrow:name:{i}:EUR" for i in range(n, 0, -1)] + ["pool:EUR"]
    amounts = [i * 7 + 1 for i in range(n)]
    return keys, [*amounts, -sum(amounts)]


@pytest.mark.parametrize("n", [3, 5000])  # below and above the size where the hash is built in Arrow
def test_columns_hash_and_store_as_the_same_dict(n: int) -> None:
    keys, amounts = _many(n)
    columns = _request(keys, amounts)
    plain = TransferRequest(event_id="t1", code="accrual", currency="EUR", legs=dict(zip(keys, amounts)))
    check_transfer(columns)
    assert columns.content_sha256() == plain.content_sha256()
    assert dict(columns.legs) == plain.legs
    assert encode_legs(columns.legs.accounts, columns.legs.amounts) == encode_legs(keys, amounts)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("keys", "amounts", "error", "message"),
    [
        (["escrow:name:1:EUR", "pool:EUR"], [5, -4], LedgerError, "does not balance"),
        (["escrow:name:1:EUR", "pool:USD"], [5, -5], LedgerError, "is not in EUR"),
        (["escrow:name:1:EUR", "vault:EUR"], [5, -5], ValidationError, "malformed account key"),
        (["escrow:name:1:EUR", "escrow:name:2:EUR", "pool:EUR"], [5, 0, -5], LedgerError, "is zero"),
        (["escrow:name:1:EUR", "escrow:name:1:EUR", "pool:EUR"], [5, 5, -10], LedgerError, "more than one leg"),
    ],
)
def test_bad_columns_are_refused_in_one_line(
    keys: list[str], amounts: list[int], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        check_transfer(_request(keys, amounts))


def test_columns_need_text_keys_and_int64_amounts() -> None:
    with pytest.raises(ValidationError, match="int64 amount"):
        LegColumns(pa.array(["pool:EUR", None], pa.string()), np.array([1, -1], dtype=np.int64))
    with pytest.raises(ValidationError, match="int64 amount"):
        LegColumns(pa.array(["pool:EUR"], pa.string()), np.array([1.0]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(1 << 63), (1 << 63) - 1), min_size=1, max_size=300))
def test_total_is_exact_where_an_int64_sum_overflows(amounts: list[int]) -> None:
    legs = LegColumns(pa.array([f"pool:{i}" for i in range(len(amounts))]), np.array(amounts, dtype=np.int64))
    assert legs.total() == sum(amounts)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=12), st.integers(0, 3))
def test_keys_needing_a_json_escape_are_found_by_their_bytes(keys: list[str], cut: int) -> None:
    """The bytes' table finds what a regular expression finds, in a slice of an array too."""
    array = pa.array(["pool:EUR", *keys], pa.string()).slice(min(cut, len(keys)))
    want = bool(pc.any(pc.match_substring_regex(array, r'["\\\x00-\x1f]')).as_py()) if len(array) else False
    assert _needs_escape(array) is want


def test_unpaid_payees_in_the_dictionary_change_nothing(store_factory: Callable[[], Store]) -> None:
    ag = agreement()
    stores = [store_factory(), store_factory()]
    payees = [names_world(s, 60) for s in stores][0]
    for b in range(3):
        rng = np.random.default_rng(100 + b)
        used = np.sort(rng.choice(60, size=20, replace=False))  # always 0 (claimed) among them, others vary
        used[0] = 0
        codes = np.stack([rng.permutation(len(used))[:4] for _ in range(10)]).ravel()
        # One store gets the whole dictionary, the other only the payees the batch pays.
        accrue(stores[0], names_usage(payees, used[codes], b), ag, event_id=f"b{b}", source=EXTERNAL)
        accrue(stores[1], names_usage([payees[i] for i in used], codes, b), ag, event_id=f"b{b}", source=EXTERNAL)
    seen = []
    for s in stores:
        assert verify(s).ok, verify(s).problems
        seen.append(ledger_state(s))
    assert seen[0] == seen[1]
    assert any(k.startswith("payable:person:") for k in seen[0][1])  # a claimed name was paid to its person


def test_route_arrays_route_as_route_columns(store: Store) -> None:
    payees = names_world(store, 30)
    with store.read() as conn:
        kinds, holders = route_arrays(conn, pa.array(payees, pa.string()))
        assert (kinds.to_pylist(), holders.to_pylist()) == route_columns(conn, payees)
        assert "payable" in kinds.to_pylist() and "escrow" in kinds.to_pylist()


def test_legs_hashed_in_order_depend_on_every_key_amount_and_their_order() -> None:
    keys, amounts = _many(6)
    legs = LegColumns(pa.array(keys, pa.string()), np.array(amounts, dtype=np.int64), distinct=True)

    def content(k: list[str], a: list[int], **memo: str) -> str:
        columns = LegColumns(pa.array(k, pa.string()), np.array(a, dtype=np.int64), distinct=True)
        return TransferRequest("t1", "accrual", "EUR", columns, memo, legs_in_order=True).content_sha256()

    first = content(keys, amounts)
    assert first == content(list(keys), list(amounts))  # the same legs in the same order: the same hash
    assert first != TransferRequest("t1", "accrual", "EUR", legs).content_sha256()  # not the sorted text's
    assert first != content(keys[::-1], amounts[::-1])
    assert first != content(keys, [amounts[0] + 1, amounts[1] - 1, *amounts[2:]])
    assert first != content(["escrow:name:6:EU", "Rescrow:name:5:EUR", *keys[2:]], amounts)  # key bytes moved
    assert first != content(keys, amounts, batch="b")
    with pytest.raises(ValidationError, match="only leg columns"):
        TransferRequest("t1", "accrual", "EUR", dict(zip(keys, amounts)), legs_in_order=True).content_sha256()


def test_keys_known_distinct_are_not_sorted_to_be_checked() -> None:
    keys, amounts = _many(3)
    legs = LegColumns(pa.array(keys, pa.string()), np.array(amounts, dtype=np.int64), distinct=True)
    check_transfer(TransferRequest("t1", "accrual", "EUR", legs))
    assert legs._order is None
