"""``serve`` folds the ledger's pending segments in its idle time, never while a usage batch is in flight."""

from __future__ import annotations

import asyncio
import time

import pytest

from endcredits.ledger.accrue import accrue
from endcredits.ledger.segments import pending_size
from endcredits.service.ingest import Admission, IdleFolder
from endcredits.store.engine import Store
from helpers_money import EXTERNAL, World, agreement, on_time


def _pending_segments(store: Store) -> int:
    with store.read() as conn:
        return pending_size(conn)[0]


def _wait_for(check, timeout_s: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_pending_segments_are_folded_once_no_batch_comes(store: Store) -> None:
    w = World(store)
    ag = agreement(pool_rate="0.5")
    accrue(store, w.usage([("o1", 10**9, on_time(1), {w.song: 1.0})], ag), ag, event_id="b1", source=EXTERNAL)
    assert _pending_segments(store) == 1
    admission = Admission(2, 2, 1)
    folder = IdleFolder(store, admission, idle_s=0.2)

    async def in_flight() -> None:
        async with admission.admit():  # a batch in flight: nothing is folded however long it takes
            folder.start()
            await asyncio.sleep(0.6)
            assert _pending_segments(store) == 1
            assert admission.idle_s() == 0.0

    asyncio.run(in_flight())
    try:
        assert _wait_for(lambda: _pending_segments(store) == 0)
    finally:
        folder.stop()


def test_idle_folding_needs_a_positive_wait(store: Store) -> None:
    with pytest.raises(ValueError, match="idle_s > 0"):
        IdleFolder(store, Admission(1, 1, 1), idle_s=0)
