"""Carries cached per store between accruals (``ledger.carry_cache``) are the carries the store holds, exactly:
through folds, pending segments, a batch of two periods (whose second group reads the first's segment before
it commits), a batch rolled back after its first group posted, and an older copy of the database put back.
An accrual that reads them from the cache writes the very ledger an accrual that reads the store does."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

import endcredits.ledger.accrue as accrue_module
import endcredits.ledger.carry_cache as carry_cache
import endcredits.ledger.records as records_module
from endcredits.ledger.accrue import accrue
from endcredits.ledger.carry_cache import cached_carries, forget_carries
from endcredits.ledger.records import carried_fractions, fold_pending
from endcredits.ledger.routes import name_numbers
from endcredits.ledger.verify import verify
from endcredits.royalties.usage import UsageBatch
from endcredits.store.engine import Store, init_store
from helpers_money import EXTERNAL, agreement, ledger_state, names_usage, names_world


class _Refused(Exception):
    pass


def _cache_agrees(s: Store, payees: list[str]) -> None:
    """The cache's carries for ``payees`` and for payees it must tell apart from them (a name id written
    with a leading zero, another kind of payee, a name never paid) are the store's."""
    names = [*payees, *(p.replace("name:", "name:0") for p in payees[:5]), "name:999999999"]
    with s.read() as conn:
        held = carried_fractions(conn)
        for probes, numbers in ((names, name_numbers(pa.array(names))), ([*names, "work:w1"], None)):
            got = cached_carries(conn, "EUR", pa.array(probes, pa.string()), numbers)
            assert got is not None
            assert got.tolist() == [held.get((p, "EUR"), 0) for p in probes]


def _two_periods(usage: UsageBatch) -> UsageBatch:
    """The batch with its second half of outputs a month later: two groups of one currency."""
    n = len(usage.output_ids)
    return replace(usage, occurred_at=["2026-11-21T12:00:00Z"] * (n - n // 2) + ["2026-12-21T12:00:00Z"] * (n // 2))


def test_cached_carries_write_the_ledger_the_store_does(
    store_factory: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    cached, plain = store_factory(), store_factory()
    payees = [names_world(s, 60, names_per_person=2) for s in (cached, plain)][0]
    ag = agreement()
    examples = itertools.count()
    record_group = accrue_module._record_group

    def refused_second(conn: Any, batch: Any, plan: Any, *rest: Any) -> None:
        if plan.period == "2026-12":
            raise _Refused  # after the first group's segment and the second's carries were read
        record_group(conn, batch, plan, *rest)

    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.lists(st.tuples(st.integers(4, 40), st.booleans(), st.sampled_from(["one", "two", "refused"])), max_size=5),
        st.integers(0, 10**6),
    )
    def check(steps: list[tuple[int, bool, str]], seed: int) -> None:
        n = next(examples)
        for i, (paid, fold_after, kind) in enumerate(steps):
            rng = np.random.default_rng(seed + i)
            used = np.sort(rng.choice(60, size=paid, replace=False))
            codes = np.concatenate([rng.permutation(len(used))[:4] for _ in range(8)])
            usage = names_usage([payees[c] for c in used.tolist()], codes, 1000 * n + i, rng)
            usage = usage if kind == "one" else _two_periods(usage)
            for s in (plain, cached):
                with monkeypatch.context() as m:
                    if s is plain:
                        m.setattr(records_module, "cached_carries", lambda *a, **k: None)
                    if kind == "refused":
                        m.setattr(accrue_module, "_record_group", refused_second)
                        with pytest.raises(_Refused):
                            accrue(s, usage, ag, event_id=f"c{n}-{i}", source=EXTERNAL)
                    else:
                        accrue(s, usage, ag, event_id=f"c{n}-{i}", source=EXTERNAL)
                if fold_after:
                    with s.write() as conn:
                        fold_pending(conn)
            assert ledger_state(cached) == ledger_state(plain)
            _cache_agrees(cached, payees)

    check()
    assert verify(cached).ok


def test_a_batch_rolled_back_leaves_the_cache_as_it_was(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second group of a batch reads the first group's segment before it commits; the batch fails, and
    the cache, which never took that segment in, is used on as it was (not built again) and agrees."""
    payees = names_world(store, 30)
    ag = agreement()
    codes = np.arange(32) % 30
    accrue(store, names_usage(payees, codes, 1), ag, event_id="b1", source=EXTERNAL)
    record_group = accrue_module._record_group

    def refused_second(conn: Any, batch: Any, plan: Any, *rest: Any) -> None:
        if plan.period == "2026-12":
            raise _Refused
        record_group(conn, batch, plan, *rest)

    with monkeypatch.context() as m:
        m.setattr(accrue_module, "_record_group", refused_second)
        with pytest.raises(_Refused):
            accrue(store, _two_periods(names_usage(payees, (codes + 5) % 30, 2)), ag, event_id="b2", source=EXTERNAL)
    built = carry_cache._built
    calls: list[int] = []
    monkeypatch.setattr(carry_cache, "_built", lambda *a: calls.append(1) or built(*a))
    _cache_agrees(store, payees)
    assert calls == []


def test_an_older_copy_put_back_is_read_again(tmp_path: Any) -> None:
    """SQLite: the cache read through a segment the database no longer holds is built again."""
    s = init_store(tmp_path / "data", None)
    payees = names_world(s, 30)
    ag = agreement()
    codes = np.arange(24) % 30
    accrue(s, names_usage(payees, codes, 1), ag, event_id="b1", source=EXTERNAL)
    path = str(s.engine.url.database)
    saved = tmp_path / "older.sqlite"
    with sqlite3.connect(path) as src, sqlite3.connect(saved) as dst:
        src.backup(dst)
    accrue(s, names_usage(payees, (codes + 7) % 30, 2), ag, event_id="b2", source=EXTERNAL)
    _cache_agrees(s, payees)  # the cache now holds b2's carries
    s.dispose()
    with sqlite3.connect(saved) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    s = init_store(tmp_path / "data", None)
    try:
        _cache_agrees(s, payees)  # b1's carries again: b2's segment is gone
        accrue(s, names_usage(payees, (codes + 3) % 30, 3), ag, event_id="b3", source=EXTERNAL)
        _cache_agrees(s, payees)
        assert verify(s).ok
    finally:
        s.dispose()
        forget_carries()


def test_legacy_carry_rows_are_left_to_the_store(store: Store) -> None:
    """A store folded before the snapshot existed holds carry rows: the cache steps aside."""
    names_world(store, 12)
    with store.write() as conn:
        conn.execute(text("INSERT INTO carries (payee, currency, subunits) VALUES ('name:1', 'EUR', 5)"))
    with store.read() as conn:
        assert cached_carries(conn, "EUR", pa.array(["name:1"], pa.string())) is None
