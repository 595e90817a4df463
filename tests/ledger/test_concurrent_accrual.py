"""Accruals side by side: on PostgreSQL several batches are prepared at once and only their carries and
postings take turns (``ACCRUAL_LOCK``); on SQLite one writer takes them in turn. Either way the same batch
sent twice at once accrues once, and the ledger ends as a serial run of the same batches leaves it."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from endcredits.ledger.accrue import ACCRUAL_LOCK, AccrualSummary, accrue
from endcredits.ledger.records import account_balances, carried_fractions
from endcredits.ledger.verify import verify
from endcredits.registry.records import add_person, name_ids, verify_person
from endcredits.royalties import Agreement
from endcredits.royalties.records import save_agreement
from endcredits.store.engine import Store, init_store
from endcredits.store.schema import accrual_batches, transfers
from helpers_money import EXTERNAL, agreement, on_time, register_model, usage

BATCHES = 8
THREADS = 4


def _world(store: Store) -> tuple[Agreement, list[str]]:
    ag = agreement(pool_rate="0.37")
    register_model(store)
    with store.write() as conn:
        save_agreement(conn, ag.id, ag.version, ag.body, ag.body_sha256)
        people = [add_person(conn, f"p{i}") for i in range(4)]
        verify_person(conn, people[0], verified_by="test")
        names = name_ids(conn, ["Name One", "Name Two"])
    return ag, [f"person:{p}" for p in people] + [f"name:{n}" for n in names.values()]


def _batch(b: int, payees: list[str]) -> Any:
    """Outputs whose pools split into fractions, over payees shared by every batch (their carries meet)."""
    return usage(
        [
            (
                f"b{b}-o{i}",
                1_000_003 + 7919 * (b * 10 + i),
                on_time(1 + (i % 2), 3),
                [(p, 1 + (b + i + k) % 5) for k, p in enumerate(payees)],
            )
            for i in range(6)
        ]
    )


def _in_threads(calls: list[Callable[[], AccrualSummary]], threads: int) -> list[AccrualSummary]:
    """Run ``calls`` on ``threads`` threads that start together; their results in call order."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []
    start = threading.Barrier(threads)
    lock = threading.Lock()
    todo = list(range(len(calls)))

    def work() -> None:
        start.wait()
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop(0)
            try:
                results[i] = calls[i]()
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert not errors, errors
    return results


@pytest.fixture
def serial_store(tmp_path: Path, backend: str) -> Iterator[Store]:
    """A second fresh store on the same backend, for the serial run."""
    if backend == "sqlite":
        s = init_store(tmp_path / "serial")
        yield s
        s.dispose()
        return
    admin_url = os.environ.get("ENDCREDITS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    s = init_store(tmp_path / "serial", f"{admin_url}?options=-csearch_path%3D{schema}")
    try:
        yield s
    finally:
        s.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_concurrent_batches_leave_the_ledger_a_serial_run_leaves(store: Store, serial_store: Store) -> None:
    ag, payees = _world(store)
    ag2, payees2 = _world(serial_store)
    assert payees == payees2
    calls = [
        (lambda b=b: accrue(store, _batch(b, payees), ag, event_id=f"batch-{b}", source=EXTERNAL))
        for b in range(BATCHES)
    ]
    results = _in_threads(calls, THREADS)
    assert [r.status for r in results] == ["created"] * BATCHES
    for b in reversed(range(BATCHES)):  # another order: carries make the end state independent of it
        accrue(serial_store, _batch(b, payees), ag2, event_id=f"batch-{b}", source=EXTERNAL)
    with store.read() as conn, serial_store.read() as serial:
        assert account_balances(conn) == account_balances(serial)
        assert carried_fractions(conn) == carried_fractions(serial)
        assert conn.execute(select(func.count()).select_from(transfers)).scalar_one() == 2 * BATCHES
    assert verify(store).ok and verify(serial_store).ok


def test_the_same_batch_sent_twice_at_once_accrues_once(store: Store) -> None:
    ag, payees = _world(store)
    calls = [lambda: accrue(store, _batch(0, payees), ag, event_id="twice", source=EXTERNAL) for _ in range(2)]
    results = _in_threads(calls, 2)
    assert sorted(r.status for r in results) == ["created", "exists"]
    assert results[0].pool_microunits == results[1].pool_microunits
    with store.read() as conn:
        rows = conn.execute(select(accrual_batches).where(accrual_batches.c.batch_event_id == "twice")).all()
        assert len(rows) == 2  # one per period of the batch, once
        assert conn.execute(select(func.count()).select_from(transfers)).scalar_one() == 2
    assert verify(store).ok


def _waiting_for_accrual_lock(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND classid = CAST(:c AS oid) AND objid = CAST(CAST(hashtext(:n) AS bigint) & 4294967295 AS oid)"
                ),
                {"c": 0x6E616D65, "n": ACCRUAL_LOCK},
            ).scalar_one()
        )


def test_accruals_are_prepared_side_by_side_on_postgresql(store: Store, backend: str) -> None:
    """While the accrual lock is held, two accruals both get as far as waiting for it: everything before it
    (checks, split, outputs, routes) ran at once. Released, both land."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer: its accruals take turns whole (the other tests cover it)")
    ag, payees = _world(store)
    results: list[AccrualSummary] = []
    with store.write(beside_others=True) as holder:
        store.lock(holder, ACCRUAL_LOCK)
        threads = [
            threading.Thread(
                target=lambda b=b: results.append(
                    accrue(store, _batch(b, payees), ag, event_id=f"side-{b}", source=EXTERNAL)
                )
            )
            for b in range(2)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while _waiting_for_accrual_lock(store) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_for_accrual_lock(store) == 2
        assert not results
    for t in threads:
        t.join(timeout=60)
    assert sorted(r.status for r in results) == ["created", "created"]
    assert verify(store).ok
