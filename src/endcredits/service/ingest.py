"""``POST /api/v1/usage-batches`` in any of its forms: JSON for small batches, an Arrow IPC stream or a
Parquet file for large ones (``royalties/usage_arrow.py``), acknowledged once durable.

A request is checked whole first: its body parsed and everything the accrual would refuse on the batch
alone (unknown agreement, run or work, currency, an output accrued before, other content under its id),
nothing written when it is refused. Then its body is committed to the durable intake (``ledger.intake``)
and the answer is 202 with the batch's status URL. ``AccrualWorker`` threads of ``serve`` accrue the queued
batches in arrival order and keep each answer for ``GET /usage-batches/{id}`` (queued, accrued, refused).
``Prefer: wait`` keeps the synchronous answer: the request accrues its own batch and answers with the result.

At most ``in_flight_max`` requests are checked (or accrued, when they wait) at once per process, and up to
``queue_max`` more wait their turn in arrival order (``Admission``); past that, or past the intake's bound,
one more is answered 429 with a ``Retry-After``.
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
from sqlalchemy import Connection

from endcredits.audit import canonical_json
from endcredits.errors import ConflictError, EndcreditsError, NotFoundError, ValidationError
from endcredits.ledger import intake
from endcredits.ledger.accrue import ScoreSource
from endcredits.limits import (
    USAGE_INTAKE_BATCHES_MAX,
    USAGE_INTAKE_BYTES_MAX,
    USAGE_INTAKE_IDLE_S,
    USAGE_INTAKE_RETRY_S,
    USAGE_INTAKE_WAIT_S_MAX,
)
from endcredits.money import format_amount
from endcredits.royalties.usage_arrow import ARROW_STREAM_TYPE, PARQUET_TYPE, UsageHeader, read_usage_stream
from endcredits.royalties.usage_columns import UsageColumns
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
    ``idle_s`` seconds (and its accrual ``worker`` has found none to accrue as long), on a daemon thread, so
    batches that come later find nothing pending and no reader reads through a backlog. ``serve`` runs one;
    a fold that fails is logged and tried at the next idle."""

    def __init__(self, store: Store, admission: Admission, idle_s: float, worker: AccrualWorker | None = None) -> None:
        if idle_s <= 0:
            raise ValueError("idle folding needs idle_s > 0")
        self.store, self.admission, self.idle_s, self.worker = store, admission, idle_s, worker
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
            worker_idle_s = self.worker.idle_s() if self.worker is not None else math.inf
            if min(self.admission.idle_s(), worker_idle_s) < self.idle_s:
                continue
            try:
                result = fold_now(self.store)
            except Exception:  # noqa: BLE001 - a fold rolls back whole; the next idle moment tries again
                _log.exception("idle fold failed; nothing was folded")
                continue
            if result is not None:
                _log.info("idle fold: %s segment(s), %s account(s)", result.segments, result.accounts)


@dataclass(frozen=True)
class JsonUsage:
    """How the service takes a JSON usage batch: ``check`` builds its lines as the accrual would and returns
    them (refusing what the accrual would refuse on the batch alone, nothing written); ``accrue`` accrues it
    from the batch alone (``accrue_scored``) and returns its answer."""

    check: Callable[[m.UsageBatchIn], intake.CheckedBatch]
    accrue: Callable[[m.UsageBatchIn], dict[str, Any]]


@dataclass(frozen=True)
class UsageRequest:
    """A usage batch read from its request: its id, the SHA-256 that makes it idempotent, ``lines``, which
    builds its lines to check them and hand them to the accrual, and ``accrue``, which accrues it from its
    body alone (``accrue_scored`` or ``accrue_columns``) and returns the answer."""

    batch_id: str
    request_sha256: str
    content_type: str
    lines: Callable[[], intake.CheckedBatch]
    accrue: Callable[[], dict[str, Any]]


def read_usage_request(store: Store, body: bytes, content_type: str, json_usage: JsonUsage) -> UsageRequest:
    """Parse a usage batch's body (JSON, an Arrow stream, Parquet): a one-line ``ValidationError`` when it is
    malformed, a missing or mistyped column, a truncated stream, an unknown schema version."""
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
        request_sha = hashlib.sha256(canonical_json(parsed.model_dump(mode="json")).encode()).hexdigest()
        return UsageRequest(
            parsed.batch_id, request_sha, kind, lambda: json_usage.check(parsed), lambda: json_usage.accrue(parsed)
        )
    header, columns = read_usage_stream(body, kind)
    request_sha = hashlib.sha256(body).hexdigest()
    return UsageRequest(
        header.batch_id,
        request_sha,
        kind,
        lambda: _stream_lines(store, header, columns),
        lambda: _accrue_stream(store, header, columns),
    )


def check_usage(
    store: Store, body: bytes, content_type: str, json_usage: JsonUsage
) -> tuple[UsageRequest, dict[str, Any] | intake.CheckedBatch]:
    """A usage batch read and checked as ``ingest_usage`` checks it before it is acknowledged, nothing
    written: the request, and the answer it got before or else its lines, built and checked (everything
    the accrual would refuse on this batch alone raises)."""
    req = read_usage_request(store, body, content_type, json_usage)
    first = _stored(store, req.batch_id, req.request_sha256)
    if first is not None:
        return req, first
    checked = req.lines()
    checked.check(store)
    return req, checked


def ingest_usage(
    store: Store,
    body: bytes,
    content_type: str,
    json_usage: JsonUsage,
    *,
    wait_s: float,
    retry_after_s: int | Callable[[int], int],
    intake_max: tuple[int, int] = (USAGE_INTAKE_BATCHES_MAX, USAGE_INTAKE_BYTES_MAX),
    handover: intake.Handover | None = None,
) -> tuple[int, dict[str, Any]]:
    """The status and answer to one usage batch. Everything that refuses bad input is checked first, and
    nothing is written when it refuses; then the body is committed to the intake (``ledger.intake``): 202
    with the batch queued. The same batch again answers what it got (200 once accrued; 202 while queued);
    other content under its id is 409; an intake holding ``intake_max`` (batches, bytes) 429 (``BusyError``).

    ``wait_s`` > 0 (``Prefer: wait``): the request accrues its batch itself (unless a worker has taken it)
    and answers as the synchronous path did, 201 when this request accrued it, 200 when it came before,
    the error when the accrual refused it; 202 if it is still queued after ``wait_s`` seconds.

    The lines built to check the batch go to ``handover`` once it is queued, for this process's accrual
    worker, which then does not build them again."""
    req, checked = check_usage(store, body, content_type, json_usage)
    if isinstance(checked, dict):
        return 200, checked
    batches_max, bytes_max = intake_max
    kept, new = intake.enqueue(
        store,
        req.batch_id,
        req.request_sha256,
        req.content_type,
        body,
        retry_after_s=retry_after_s,
        batches_max=batches_max,
        bytes_max=bytes_max,
    )
    if kept.state == intake.QUEUED and wait_s > 0:
        with intake.claim(store, kept.seq) as mine:
            if mine is not None:
                accrue_claimed(store, mine, json_usage, checked=checked)
        kept = _awaited(store, kept, wait_s)
    elif new and handover is not None:
        handover.put(kept, checked)
    if kept.state == intake.QUEUED:
        return 202, queued_json(kept)
    if kept.state == intake.REFUSED:
        raise refusal(kept)
    answer = _stored(store, req.batch_id, req.request_sha256)
    if answer is None:  # accrued, its answer lost to a crash: the ledger's record
        return 200, usage_status(store, req.batch_id)
    return (201 if new and answer["status"] == "created" else 200), answer


def _awaited(store: Store, batch: intake.IntakeBatch, wait_s: float) -> intake.IntakeBatch:
    """The batch once it is no longer queued, or as it is after ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        with intake.intake_store(store).read() as conn:
            now = intake.intake_batch(conn, batch.batch_id)
        if now is None or now.state != intake.QUEUED or time.monotonic() >= deadline:
            return now or batch
        time.sleep(USAGE_INTAKE_IDLE_S)


def accrue_claimed(
    store: Store, claim: intake.Claim, json_usage: JsonUsage, *, checked: intake.CheckedBatch | None = None
) -> None:
    """Accrue a batch taken from the intake, keep its answer, and mark it accrued; or mark it refused with
    its one-line error when the accrual refuses it. A store failure raises: the batch stays queued.

    ``checked``: the batch's lines as checked when it was acknowledged, accrued as they are while the
    agreement and manifest they were built under are still the newest (``CheckedBatch.current``); otherwise,
    and without them, the batch is accrued from its body."""
    batch = claim.batch
    try:
        if checked is not None:
            with store.read() as conn:
                checked = checked if checked.current(conn) else None
        if checked is not None:
            answer = summary_json(checked.accrue(store))
        else:
            answer = read_usage_request(store, batch.body, batch.content_type, json_usage).accrue()
        data = {**answer, "request_sha256": batch.request_sha256}
    except EndcreditsError as exc:
        if exc.code in ("store", "invariant"):
            raise
        claim.finish(intake.REFUSED, error_code=exc.code, error_message=exc.message)
        return

    def keep_answer(conn: Connection) -> None:
        store.lock(conn, f"usage-answer:{batch.batch_id}")
        record_usage_answer(conn, batch.batch_id, batch.request_sha256, data)

    claim.finish(intake.ACCRUED, with_it=keep_answer)  # the answer and the mark commit together


def accrue_next(store: Store, json_usage: JsonUsage, handover: intake.Handover | None = None) -> bool:
    """Accrue the oldest queued batch no other worker holds, with its checked lines when ``handover`` kept
    them; False when there was none."""
    with intake.claim(store) as taken:
        if taken is None:
            return False
        checked = handover.take(taken.batch, oldest=True) if handover is not None else None
        accrue_claimed(store, taken, json_usage, checked=checked)
    return True


def queued_json(batch: intake.IntakeBatch) -> dict[str, Any]:
    return {"batch_id": batch.batch_id, "state": intake.QUEUED, "request_sha256": batch.request_sha256}


def refused_json(batch: intake.IntakeBatch) -> dict[str, Any]:
    return {
        "batch_id": batch.batch_id,
        "state": intake.REFUSED,
        "request_sha256": batch.request_sha256,
        "error": {"code": batch.error_code, "message": batch.error_message},
    }


def refusal(batch: intake.IntakeBatch) -> EndcreditsError:
    """The error that refused a batch after it was acknowledged, to answer as it was raised then."""
    error = EndcreditsError(batch.error_message or "refused")
    error.code = batch.error_code or "error"
    return error


def usage_status(store: Store, batch_id: str) -> dict[str, Any]:
    """``GET /usage-batches/{id}``: queued, refused (with its error) or accrued (with its answer: status,
    totals and ``request_sha256``; a batch accrued whose answer was never kept answers from the ledger's
    record, status ``exists`` and ``request_sha256`` null). ``NotFoundError`` when no batch came under the id."""
    with intake.intake_store(store).read() as conn:  # first: a batch is marked after its answer is kept
        kept = intake.intake_batch(conn, batch_id)
    with store.read() as conn:
        answer = usage_answer(conn, batch_id)
    if answer is not None:
        return {**answer.response, "state": intake.ACCRUED}
    if kept is not None and kept.state == intake.QUEUED:
        return queued_json(kept)
    if kept is not None and kept.state == intake.REFUSED:
        return refused_json(kept)
    from endcredits.ledger.accrue import accrued_batch

    landed = accrued_batch(store, batch_id)
    if landed is None:
        raise NotFoundError(f"no usage batch {batch_id[:200]!r}")
    return {**summary_json(landed), "request_sha256": None, "state": intake.ACCRUED}


class AccrualWorker:
    """Accrues the intake's queued batches in arrival order on a daemon thread, one at a time (``serve``
    runs one per process: on PostgreSQL several processes take different batches; SQLite has one). A store
    failure is logged and the batch tried again after ``USAGE_INTAKE_RETRY_S``; ``idle_s()`` tells the idle
    folder how long the worker has found nothing to do."""

    def __init__(
        self,
        store: Store,
        json_usage: JsonUsage,
        handover: intake.Handover | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.json_usage, self.handover, self._clock = store, json_usage, handover, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="endcredits-accrual", daemon=True)
        self._last_busy_s = clock()
        self._busy = False
        self.batch_s: float | None = None
        """Seconds one batch took to accrue here, smoothed (None before the first): for ``Retry-After``."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def idle_s(self) -> float:
        return 0.0 if self._busy else self._clock() - self._last_busy_s

    def _run(self) -> None:
        while not self._stop.is_set():
            began = self._clock()
            self._busy = True
            try:
                took: bool | None = accrue_next(self.store, self.json_usage, self.handover)
            except Exception:  # noqa: BLE001 - the batch stays queued; the store may come back
                _log.exception("accruing a queued usage batch failed; it stays queued")
                took = None
            finally:
                self._busy = False
            if took is None:
                self._stop.wait(USAGE_INTAKE_RETRY_S)
            elif took:
                spent = self._clock() - began
                self.batch_s = spent if self.batch_s is None else 0.75 * self.batch_s + 0.25 * spent
                self._last_busy_s = self._clock()
            else:
                self._stop.wait(USAGE_INTAKE_IDLE_S)

    def retry_after_s(self, queued: int, default_s: int) -> int:
        """Seconds until ``queued`` batches have accrued at this worker's pace (``default_s`` before any)."""
        if self.batch_s is None:
            return default_s
        return max(1, min(USAGE_INTAKE_WAIT_S_MAX, math.ceil(queued * self.batch_s)))


def _stored(store: Store, batch_id: str, request_sha: str) -> dict[str, Any] | None:
    with store.read() as conn:
        answer = usage_answer(conn, batch_id)
    if answer is None:
        return None
    if answer.request_sha256 != request_sha:
        raise ConflictError(f"batch {batch_id} was already ingested with other content; use a new batch_id")
    return {**answer.response, "state": intake.ACCRUED}


def _stream_args(header: UsageHeader) -> dict[str, Any]:
    """The arguments of ``accrue_columns`` (and ``checked_columns``) that a stream's header gives."""
    run, reason = header.attribution_run_id, header.external_reason
    return {
        "source": ScoreSource.run(run) if run is not None else ScoreSource.external(reason or ""),
        "per": header.per,
        "agreement_id": header.agreement_id,
        "batch_id": header.batch_id,
        "manifest_id": header.manifest_id,
    }


def _stream_lines(store: Store, header: UsageHeader, columns: UsageColumns) -> intake.CheckedBatch:
    return intake.checked_columns(store, columns, **_stream_args(header))


def _accrue_stream(store: Store, header: UsageHeader, columns: UsageColumns) -> dict[str, Any]:
    from endcredits.ledger.accrue_columns import accrue_columns

    return summary_json(accrue_columns(store, columns, **_stream_args(header)))


def summary_json(s: Any) -> dict[str, Any]:
    """An accrual summary as the API answers it: microunits, and the revenue and pool as decimal text."""
    c = s.currency
    return {
        **s.to_json(),
        "revenue": format_amount(s.revenue_microunits, c),
        "pool": format_amount(s.pool_microunits, c),
    }
