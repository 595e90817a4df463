"""Fair admission of usage batches: in arrival order, a bounded queue, and past it 429 with a
``Retry-After`` from the measured drain rate; over HTTP, a full queue refuses with nothing written, and the
same batch sent twice at once is accrued once, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from test_usage_arrow import OP, _header, _table

from endcredits.royalties.usage_arrow import ARROW_STREAM_TYPE, write_usage_stream
from endcredits.service.auth import AuthError
from endcredits.service.ingest import Admission
from endcredits.store.schema import accrual_batches
from helpers_money import row_counts


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_batches_are_admitted_in_arrival_order() -> None:
    admission = Admission(1, 8, 1)
    order: list[int] = []

    async def batch(i: int, release: asyncio.Event) -> None:
        async with admission.admit():
            order.append(i)
            await release.wait()

    async def main() -> None:
        releases = [asyncio.Event() for _ in range(6)]
        tasks = []
        for i in range(6):
            tasks.append(asyncio.create_task(batch(i, releases[i])))
            await asyncio.sleep(0)  # each arrives before the next
        assert admission.waiting() == 5 and order == [0]
        for i in (0, 1, 2, 3, 4, 5):  # each finishes in turn; the next in line goes next
            releases[i].set()
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == [0, 1, 2, 3, 4, 5]
    assert admission.waiting() == 0 and admission.idle_s() >= 0


def test_a_waiter_that_goes_away_hands_its_turn_on() -> None:
    admission = Admission(1, 4, 1)
    order: list[str] = []

    async def batch(name: str, release: asyncio.Event) -> None:
        async with admission.admit():
            order.append(name)
            await release.wait()

    async def main() -> None:
        first, gone, last = asyncio.Event(), asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(batch("a", first))
        await asyncio.sleep(0)
        b = asyncio.create_task(batch("b", gone))
        c = asyncio.create_task(batch("c", last))
        await asyncio.sleep(0)
        b.cancel()
        first.set()
        last.set()
        await asyncio.gather(a, c)
        with pytest.raises(asyncio.CancelledError):
            await b

    asyncio.run(main())
    assert order == ["a", "c"]


def test_a_full_queue_answers_429_with_the_measured_drain_time() -> None:
    clock = Clock()
    admission = Admission(1, 3, 1, clock=clock)

    async def main() -> None:
        hold = asyncio.Event()

        async def batch() -> None:
            async with admission.admit():
                await hold.wait()

        tasks = [asyncio.create_task(batch()) for _ in range(4)]  # one in flight, three waiting
        await asyncio.sleep(0)
        with pytest.raises(AuthError) as refused:
            async with admission.admit():
                pass
        assert refused.value.status == 429 and refused.value.retry_after_s == 1  # nothing measured yet
        # Answers come every 2 s of a busy service: the three waiting drain in 6 s.
        for _ in range(3):
            clock.now += 2.0
            hold.set()
            await asyncio.sleep(0)
            hold.clear()
            tasks.append(asyncio.create_task(batch()))
            await asyncio.sleep(0)
        assert admission.waiting() == 3
        with pytest.raises(AuthError) as refused:
            async with admission.admit():
                pass
        assert refused.value.retry_after_s == 6, refused.value
        hold.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())


def _fill(admission: Admission) -> tuple[threading.Thread, Any]:
    """Hold every slot and fill the queue from an event loop on another thread; returns it and its stop."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def hold() -> None:
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()

        async def one() -> None:
            async with admission.admit():
                await state["stop"].wait()

        tasks = [asyncio.create_task(one()) for _ in range(admission.in_flight_max + admission.queue_max)]
        await asyncio.sleep(0)
        ready.set()
        await asyncio.gather(*tasks)

    thread = threading.Thread(target=asyncio.run, args=(hold(),))
    thread.start()
    assert ready.wait(10)
    return thread, lambda: state["loop"].call_soon_threadsafe(state["stop"].set)


def test_a_full_queue_refuses_over_http_with_nothing_written(svc: Any) -> None:
    admission = svc.client.app.state.usage_admission
    thread, stop = _fill(admission)
    before = row_counts(svc.store)
    try:
        data = write_usage_stream(_header("busy"), _table(svc, "busy"))
        busy = svc.client.post(
            "/api/v1/usage-batches",
            content=data,
            headers={**svc.headers(OP), "Content-Type": ARROW_STREAM_TYPE, "Prefer": "wait"},
        )
        assert busy.status_code == 429, busy.text
        assert int(busy.headers["Retry-After"]) >= 1 and busy.json()["error"]["code"] == "busy"
        assert row_counts(svc.store) == before
    finally:
        stop()
        thread.join(10)
    again = svc.client.post(
        "/api/v1/usage-batches",
        content=data,
        headers={**svc.headers(OP), "Content-Type": ARROW_STREAM_TYPE, "Prefer": "wait"},
    )
    assert again.status_code == 201, again.text


def test_a_waiting_batch_is_answered_once_its_turn_comes(svc: Any) -> None:
    admission = svc.client.app.state.usage_admission
    state: dict[str, Any] = {}
    ready = threading.Event()

    async def hold() -> None:
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        async with admission.admit():  # one slot taken... and every other one, so the batch must wait
            extra = [asyncio.create_task(_occupy(admission, state["stop"])) for _ in range(admission.in_flight_max - 1)]
            await asyncio.sleep(0)
            ready.set()
            await state["stop"].wait()
            await asyncio.gather(*extra)

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    assert ready.wait(10)
    answer: dict[str, Any] = {}
    data = write_usage_stream(_header("queued"), _table(svc, "queued"))
    poster = threading.Thread(
        target=lambda: answer.update(
            r=svc.client.post(
                "/api/v1/usage-batches",
                content=data,
                headers={**svc.headers(OP), "Content-Type": ARROW_STREAM_TYPE, "Prefer": "wait"},
            )
        )
    )
    poster.start()
    deadline = time.monotonic() + 10
    while admission.waiting() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert admission.waiting() == 1 and "r" not in answer  # it waits its turn, not refused
    state["loop"].call_soon_threadsafe(state["stop"].set)
    holder.join(10)
    poster.join(60)
    assert answer["r"].status_code == 201, answer["r"].text


async def _occupy(admission: Admission, stop: asyncio.Event) -> None:
    async with admission.admit():
        await stop.wait()


def test_the_same_batch_posted_twice_at_once_accrues_once(svc: Any) -> None:
    data = write_usage_stream(_header("twice"), _table(svc, "twice", rows=50))
    answers: list[Any] = []
    start = threading.Barrier(2)

    def post() -> None:
        start.wait()
        answers.append(
            svc.client.post(
                "/api/v1/usage-batches",
                content=data,
                headers={**svc.headers(OP), "Content-Type": ARROW_STREAM_TYPE, "Prefer": "wait"},
            )
        )

    posters = [threading.Thread(target=post) for _ in range(2)]
    for t in posters:
        t.start()
    for t in posters:
        t.join(60)
    assert sorted(r.status_code for r in answers) == [200, 201], [r.text for r in answers]
    created = next(r.json() for r in answers if r.status_code == 201)
    assert svc.client.get("/api/v1/usage-batches/twice", headers=svc.headers(OP)).json() == created
    with svc.store.read() as conn:
        rows = conn.execute(accrual_batches.select().where(accrual_batches.c.batch_event_id == "twice")).all()
    assert len(rows) == 1
