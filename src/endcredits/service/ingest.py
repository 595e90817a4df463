"""``POST /api/v1/usage-batches`` in any of its forms: JSON for small batches, an Arrow IPC stream or a
Parquet file for large ones (``royalties/usage_arrow.py``), behind an admission limit.

At most ``in_flight_max`` batches are accrued at once per process, and up to ``queue_max`` more wait
their turn in arrival order (``Admission``); past that one more is answered 429 with a ``Retry-After``
from the measured drain rate. A batch is answered when its transaction has committed, and the answer
(with the request's SHA-256 and the batch's totals) is kept for ``GET /usage-batches/{id}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from endcredits.audit import canonical_json
from endcredits.errors import ConflictError, ValidationError
from endcredits.money import format_amount
from endcredits.royalties.usage_arrow import ARROW_STREAM_TYPE, PARQUET_TYPE, read_usage_stream
from endcredits.service import models as m
from endcredits.service.auth import AuthError
from endcredits.service.records import record_usage_answer, usage_answer
from endcredits.store.engine import Store

_log = logging.getLogger("endcredits.service")
JSON_TYPE = "application/json"
USAGE_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON_TYPE: {"schema": {"$ref": "#/components/schemas/UsageBatchIn"}},
            ARROW_STREAM_TYPE: {
                "schema": {"type": "string", "format": "binary"},
                "description": "An Arrow IPC stream, usage schema version 1 (docs/concepts/service.md)",
            },
            PARQUET_TYPE: {
                "schema": {"type": "string", "format": "binary"},
                "description": "A Parquet file with the columns and metadata of the Arrow stream",
            },
        },
    }
}
"""The request body's three forms, for the OpenAPI document (the route reads the body itself)."""


@dataclass(eq=False)
class _Ticket:
    """A batch waiting its turn: woken on its own event loop once a slot is handed to it (``granted``)."""

    loop: asyncio.AbstractEventLoop
    woken: asyncio.Future[None]
    granted: bool = False


class Admission:
    """Usage batches in arrival order: at most ``in_flight_max`` are accrued at once and up to ``queue_max``
    more wait their turn, first come first served, so a batch waits for those ahead of it and no longer;
    past that, 429 with ``Retry-After`` = the seconds the batches ahead take to drain at the rate measured
    (``retry_after_s`` before any was measured; at least 1). Safe to share between threads and event loops.

    The drain rate is measured as the time between two answers while the service stays busy between them
    (and a batch's own time when it began on an idle service), smoothed over the last few batches."""

    def __init__(
        self, in_flight_max: int, queue_max: int, retry_after_s: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if in_flight_max < 1 or queue_max < 0 or retry_after_s < 1:
            raise ValueError("admission needs in_flight_max >= 1, queue_max >= 0 and retry_after_s >= 1")
        self.in_flight_max, self.queue_max, self.retry_after_s = in_flight_max, queue_max, retry_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: deque[_Ticket] = deque()
        self._in_flight = 0
        self._last_done_s = clock()
        self._busy_since_done = False  # whether the service has been busy since the last answer
        self._drain_s: float | None = None  # smoothed seconds between answers of a busy service

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Wait for this batch's turn (or raise 429 at once when the queue is full), then hold a slot."""
        ticket = self._enter()
        if ticket is not None:
            try:
                await ticket.woken
            except BaseException:  # the client went away while waiting: its turn goes to the next one
                self._abandon(ticket)
                raise
        began = self._clock()
        try:
            yield
        finally:
            self._leave(self._clock() - began)

    def _enter(self) -> _Ticket | None:
        with self._lock:
            if self._in_flight < self.in_flight_max and not self._waiting:
                self._in_flight += 1
                self._busy_since_done = True
                return None
            if len(self._waiting) < self.queue_max:
                loop = asyncio.get_running_loop()
                ticket = _Ticket(loop, loop.create_future())
                self._waiting.append(ticket)
                return ticket
            wait_s = self._drain_wait_s()
        raise AuthError(
            429,
            "busy",
            f"{self.in_flight_max} usage batches are being accrued and {self.queue_max} wait: retry in {wait_s} s",
            retry_after_s=wait_s,
        )

    def _drain_wait_s(self) -> int:
        """Seconds until the batches waiting now have all been taken in, at the measured drain rate."""
        if self._drain_s is None:
            return self.retry_after_s
        return max(1, math.ceil(len(self._waiting) * self._drain_s))

    def _abandon(self, ticket: _Ticket) -> None:
        with self._lock:
            if not ticket.granted:
                self._waiting.remove(ticket)
                return
        self._leave(None)  # it was handed a slot as it went away: hand it on

    def _leave(self, held_s: float | None) -> None:
        with self._lock:
            now = self._clock()
            if held_s is not None:
                sample = now - self._last_done_s if self._busy_since_done else held_s
                self._drain_s = sample if self._drain_s is None else 0.75 * self._drain_s + 0.25 * sample
            self._last_done_s = now
            self._in_flight -= 1
            while self._waiting and self._in_flight < self.in_flight_max:
                ticket = self._waiting.popleft()
                ticket.granted = True
                self._in_flight += 1
                ticket.loop.call_soon_threadsafe(_wake, ticket.woken)
            self._busy_since_done = self._in_flight > 0

    def waiting(self) -> int:
        """Batches waiting for their turn now."""
        with self._lock:
            return len(self._waiting)

    def idle_s(self) -> float:
        """Seconds since the last usage batch was answered; 0 while one is being accrued or waits."""
        with self._lock:
            return 0.0 if self._in_flight or self._waiting else self._clock() - self._last_done_s


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():  # a waiter cancelled meanwhile hands its slot on itself (``_abandon``)
        woken.set_result(None)


class IdleFolder:
    """Folds the ledger's pending segments (``ledger.folding.fold_now``) once no usage batch has come for
    ``idle_s`` seconds, on a daemon thread, so batches that come later find nothing pending and no reader
    reads through a backlog. ``serve`` runs one; a fold that fails is logged and tried at the next idle."""

    def __init__(self, store: Store, admission: Admission, idle_s: float) -> None:
        if idle_s <= 0:
            raise ValueError("idle folding needs idle_s > 0")
        self.store, self.admission, self.idle_s = store, admission, idle_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="endcredits-idle-fold", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from endcredits.ledger.folding import fold_now

        while not self._stop.wait(self.idle_s / 2):
            if self.admission.idle_s() < self.idle_s:
                continue
            try:
                result = fold_now(self.store)
            except Exception:  # noqa: BLE001 - a fold rolls back whole; the next idle moment tries again
                _log.exception("idle fold failed; nothing was folded")
                continue
            if result is not None:
                _log.info("idle fold: %s segment(s), %s account(s)", result.segments, result.accounts)


def ingest_usage(
    store: Store, body: bytes, content_type: str, accrue_json: Callable[[m.UsageBatchIn], dict[str, Any]]
) -> tuple[int, dict[str, Any]]:
    """The status and answer to one usage batch: 201 when accrued now, 200 with the first answer when the
    same batch id came with the same request before, 409 (``ConflictError``) with other content."""
    kind = content_type.split(";")[0].strip().lower() or JSON_TYPE
    if kind == JSON_TYPE:
        try:
            parsed = m.UsageBatchIn.model_validate(json.loads(body))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValidationError("the usage batch is not valid JSON") from None
        except PydanticValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem.get("loc", ())) or "body"
            raise ValidationError(f"{where}: {problem.get('msg', 'invalid')}") from None
        batch_id = parsed.batch_id
        request_sha = hashlib.sha256(canonical_json(parsed.model_dump(mode="json")).encode()).hexdigest()
        accrue_now: Callable[[], dict[str, Any]] = lambda: accrue_json(parsed)  # noqa: E731
    else:
        header, columns = read_usage_stream(body, kind)
        batch_id = header.batch_id
        request_sha = hashlib.sha256(body).hexdigest()
        accrue_now = lambda: _accrue_stream(store, header, columns)  # noqa: E731
    first = _stored(store, batch_id, request_sha)
    if first is not None:
        return 200, first
    data = {**accrue_now(), "request_sha256": request_sha}
    with store.write(beside_others=True) as conn:  # beside other batches' accruals and answers
        store.lock(conn, f"usage-answer:{batch_id}")
        record_usage_answer(conn, batch_id, request_sha, data)
    again = _stored(store, batch_id, request_sha)
    if again is None:  # pragma: no cover - written just above
        raise ConflictError(f"batch {batch_id} could not be recorded")
    return (201 if again == data and data["status"] == "created" else 200), again


def _stored(store: Store, batch_id: str, request_sha: str) -> dict[str, Any] | None:
    with store.read() as conn:
        answer = usage_answer(conn, batch_id)
    if answer is None:
        return None
    if answer.request_sha256 != request_sha:
        raise ConflictError(f"batch {batch_id} was already ingested with other content; use a new batch_id")
    return answer.response


def _accrue_stream(store: Store, header: Any, columns: Any) -> dict[str, Any]:
    from endcredits.ledger.accrue import ScoreSource
    from endcredits.ledger.accrue_columns import accrue_columns

    run, reason = header.attribution_run_id, header.external_reason
    source = ScoreSource.run(run) if run is not None else ScoreSource.external(reason or "")
    s = accrue_columns(
        store,
        columns,
        source=source,
        per=header.per,
        agreement_id=header.agreement_id,
        batch_id=header.batch_id,
        manifest_id=header.manifest_id,
    )
    return summary_json(s)


def summary_json(s: Any) -> dict[str, Any]:
    """An accrual summary as the API answers it: microunits, and the revenue and pool as decimal text."""
    c = s.currency
    return {
        **s.to_json(),
        "revenue": format_amount(s.revenue_microunits, c),
        "pool": format_amount(s.pool_microunits, c),
    }
