"""The usage intake: usage batches acknowledged once durable, accrued afterwards in arrival order.

``enqueue`` commits a batch's request body as received (an Arrow stream, a Parquet file or JSON), its batch
id and content hash (``request_sha256``) in one transaction, within a bounded backlog (``USAGE_INTAKE_*`` in
``limits``): past it ``BusyError``, nothing written. The body is kept as received, not parsed into another
form: acknowledging costs one insert of bytes already in memory, the hash is that of today's answers, and
the accrual reads it with the very parser the synchronous path uses.

An accrual worker takes the oldest queued batch with ``claim`` and ends it with ``Claim.finish``: accrued
or refused (with its one-line error), its body emptied. On PostgreSQL a claim is a row lock
(``FOR UPDATE SKIP LOCKED``) held by the claim's own transaction until it finishes, so several workers in
several processes take different batches, and a worker that dies (SIGKILL included) drops its lock with its
connection: the batch is queued again for the next worker. On SQLite one worker reads the oldest queued
batch. Accruing is idempotent by batch id and content (``ledger.accrue``), so a batch accrued whose claim
never finished is accrued once: taken again, it answers ``exists``.

A batch's lines are built once: ``checked_columns`` / ``checked_scored`` build them as ``accrue_columns`` /
``accrue_scored`` do, to check the batch before it is acknowledged, and ``Handover`` keeps them in memory
(bounded) for the process's worker, which accrues them as they are while the terms they were built under
are still the newest (``CheckedBatch.current``). Without them it accrues the durable body, as before.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Row, Select, func, literal, select

from endcredits.errors import BusyError, ConflictError, ValidationError
from endcredits.ledger.accrue import AccrualSummary, ScoreSource, accrue, check_accrual, scored_usage
from endcredits.ledger.accrue_columns import columns_usage
from endcredits.limits import USAGE_HANDOVER_LINES_MAX, USAGE_INTAKE_BATCHES_MAX, USAGE_INTAKE_BYTES_MAX
from endcredits.manifest.records import latest_manifest_id
from endcredits.royalties.agreement import Agreement
from endcredits.royalties.records import load_agreement
from endcredits.royalties.usage import OutputIn, UsageBatch
from endcredits.royalties.usage_columns import UsageColumns
from endcredits.store.engine import Store, _make_engine, utc_now
from endcredits.store.files import create_private_file
from endcredits.store.schema import usage_intake

QUEUED, ACCRUED, REFUSED = "queued", "accrued", "refused"
INTAKE_FILE = "usage-intake.sqlite3"
"""On SQLite, the intake's own database file, beside the ledger's (``intake_store``)."""
INTAKE_LOCK = "usage-intake"
"""Held by ``enqueue`` while it counts the backlog and inserts, so two batches cannot both take the last place."""


_intake_stores: weakref.WeakKeyDictionary[Store, Store] = weakref.WeakKeyDictionary()
_intake_stores_lock = threading.Lock()
_turns: weakref.WeakKeyDictionary[Store, threading.Lock] = weakref.WeakKeyDictionary()


def intake_store(store: Store) -> Store:
    """Where ``store``'s intake is kept: ``store`` itself on PostgreSQL; on SQLite a database file of its own,
    ``INTAKE_FILE`` beside the ledger's (WAL, ``synchronous = FULL``: a commit is on disk), so acknowledging a
    batch waits for no ledger writer. Opened once per store; batches an older endcredits left in the
    ledger's file are moved into it first."""
    if store.backend != "sqlite":
        return store
    with _intake_stores_lock:
        kept = _intake_stores.get(store)
        if kept is None:
            kept = _intake_stores[store] = _open_intake_file(store)
    return kept


@contextmanager
def _intake_write(side: Store) -> Iterator[Connection]:
    """A write transaction of the intake (``side``, of ``intake_store``), beside accruals. On SQLite this
    process's writers of the file take turns on a lock first: each starts as soon as the one before it has
    committed, where SQLite's busy handler polls a held lock with growing sleeps (up to 100 ms each), which
    held acknowledgements 100-300 ms behind one another's commits with 8 clients."""
    if side.backend != "sqlite":
        with side.write(beside_others=True) as conn:
            yield conn
        return
    with _intake_stores_lock:
        turn = _turns.setdefault(side, threading.Lock())
    with turn, side.write() as conn:
        yield conn


def _open_intake_file(store: Store) -> Store:
    ledger_file = store.engine.url.database
    if not ledger_file or ledger_file == ":memory:":
        raise ValueError("the intake of an SQLite store needs the store in a file")
    path = Path(ledger_file).with_name(INTAKE_FILE)
    create_private_file(path)
    side = Store(_make_engine(f"sqlite:///{path}"), store.data_dir)
    usage_intake.create(side.engine, checkfirst=True)
    with store.read() as conn:
        left = conn.execute(select(usage_intake).order_by(usage_intake.c.seq)).all()
    if left:  # moved in two commits: a crash between moves them again, and the batch ids already moved stay
        with side.write() as conn:
            moved = {r.batch_id for r in conn.execute(select(usage_intake.c.batch_id))}
            rows = [r._asdict() for r in left if r.batch_id not in moved]
            if rows:
                conn.execute(usage_intake.insert(), rows)
        with store.write() as conn:
            conn.execute(usage_intake.delete())
    return side


@dataclass(frozen=True)
class IntakeBatch:
    """One usage batch in the intake: its arrival number, id, content hash, body (empty once finished)."""

    seq: int
    batch_id: str
    request_sha256: str
    content_type: str
    body: bytes
    state: str
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Backlog:
    """What waits in the intake: queued batches and the bytes of their bodies."""

    batches: int
    body_bytes: int


def enqueue(
    store: Store,
    batch_id: str,
    request_sha256: str,
    content_type: str,
    body: bytes,
    *,
    retry_after_s: int | Callable[[int], int],
    batches_max: int = USAGE_INTAKE_BATCHES_MAX,
    bytes_max: int = USAGE_INTAKE_BYTES_MAX,
) -> tuple[IntakeBatch, bool]:
    """Commit a usage batch into the intake and return it (``queued``) and True; the same batch again returns
    the batch kept first (queued or accrued: ``state``) and False, and writes nothing. A batch refused before
    is replaced by the new one. Other content under the id is a ``ConflictError``; a backlog at
    ``batches_max`` batches or ``bytes_max`` bytes a ``BusyError`` (``retry_after_s``, or what it answers for the
    batches queued): nothing written."""
    side = intake_store(store)
    with _intake_write(side) as conn:  # beside accruals: it waits for no accrual
        side.lock(conn, INTAKE_LOCK)
        kept = _by_id(conn, batch_id)
        if kept is not None and kept.state != REFUSED:
            if kept.request_sha256 != request_sha256:
                raise ConflictError(f"batch {batch_id} was already ingested with other content; use a new batch_id")
            return kept, False
        now = backlog(conn)
        if now.batches + 1 > batches_max or now.body_bytes + len(body) > bytes_max:
            if callable(retry_after_s):
                retry_after_s = retry_after_s(now.batches)
            raise BusyError(
                f"{now.batches} usage batches ({now.body_bytes} bytes) wait to be accrued, the most the intake "
                f"holds ({batches_max} batches, {bytes_max} bytes): retry in {retry_after_s} s",
                retry_after_s,
            )
        if kept is not None:
            conn.execute(usage_intake.delete().where(usage_intake.c.seq == kept.seq))
        seq = conn.execute(
            usage_intake.insert()
            .values(
                batch_id=batch_id,
                request_sha256=request_sha256,
                content_type=content_type,
                body=body,
                body_bytes=len(body),
                state=QUEUED,
                received_at=utc_now(),
            )
            .returning(usage_intake.c.seq)
        ).scalar_one()
    return IntakeBatch(int(seq), batch_id, request_sha256, content_type, body, QUEUED), True


def backlog(conn: Connection) -> Backlog:
    """The batches queued now and their bodies' bytes (``conn`` of ``intake_store``)."""
    row = conn.execute(
        select(func.count(), func.coalesce(func.sum(usage_intake.c.body_bytes), 0)).where(
            usage_intake.c.state == QUEUED
        )
    ).one()
    return Backlog(int(row[0]), int(row[1]))


def intake_batch(conn: Connection, batch_id: str) -> IntakeBatch | None:
    """The intake's record of ``batch_id`` (its body left out), None when it never came through the intake
    (``conn`` of ``intake_store``)."""
    return _by_id(conn, batch_id, with_body=False)


def _by_id(conn: Connection, batch_id: str, *, with_body: bool = False) -> IntakeBatch | None:
    row = conn.execute(_columns(with_body).where(usage_intake.c.batch_id == batch_id)).first()
    return None if row is None else _batch(row)


def _columns(with_body: bool) -> Select[Any]:
    c = usage_intake.c
    body = c.body if with_body else literal(b"", c.body.type).label("body")
    return select(c.seq, c.batch_id, c.request_sha256, c.content_type, body, c.state, c.error_code, c.error_message)


def _batch(r: Row[Any]) -> IntakeBatch:
    body = bytes(r.body or b"")
    return IntakeBatch(
        int(r.seq),
        str(r.batch_id),
        str(r.request_sha256),
        str(r.content_type),
        body,
        str(r.state),
        r.error_code,
        r.error_message,
    )


class Claim:
    """A queued batch taken by one worker, until ``finish`` (or the end of ``claim``'s block, which leaves
    it queued when unfinished)."""

    def __init__(self, store: Store, conn: Connection | None, batch: IntakeBatch) -> None:
        self._store, self._conn, self.batch = store, conn, batch

    def finish(
        self,
        state: str,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        with_it: Callable[[Connection], None] | None = None,
    ) -> None:
        """Mark the batch ``accrued`` or ``refused`` (with its error), and empty its body; ``with_it(conn)``
        runs first, in a write transaction of the store beside other accruals (the service keeps the batch's
        answer there), committed before the mark (on SQLite the mark is in the intake's own file), so a
        batch is never marked without it."""
        if state not in (ACCRUED, REFUSED):
            raise ValueError(f"a claim finishes accrued or refused, not {state!r}")
        values = dict(state=state, error_code=error_code, error_message=error_message, body=b"", finished_at=utc_now())
        where = (usage_intake.c.seq == self.batch.seq) & (usage_intake.c.state == QUEUED)
        if with_it is not None:
            with self._store.write(beside_others=True) as conn:
                with_it(conn)
        if self._conn is not None:  # PostgreSQL: the claim's own transaction holds the row
            self._conn.execute(usage_intake.update().where(where).values(**values))
            return
        with _intake_write(intake_store(self._store)) as conn:
            conn.execute(usage_intake.update().where(where).values(**values))


@contextmanager
def claim(store: Store, seq: int | None = None) -> Iterator[Claim | None]:
    """The oldest queued batch (or batch ``seq`` while it is queued) taken for accrual, None when there is
    none to take (on PostgreSQL also when another worker holds it). The claim's transaction commits what
    ``finish`` marked when the block ends, and rolls back (the batch stays queued) when it raises."""
    query = _columns(with_body=True).where(usage_intake.c.state == QUEUED)
    query = query.where(usage_intake.c.seq == seq) if seq is not None else query
    query = query.order_by(usage_intake.c.seq).limit(1)
    if store.backend != "postgresql":
        with intake_store(store).read() as conn:
            row = conn.execute(query).first()
        yield None if row is None else Claim(store, None, _batch(row))
        return
    # Not ``store.write``: a claim is held while its batch accrues, and must not hold the write lock then.
    with store.engine.connect() as conn, conn.begin():
        row = conn.execute(query.with_for_update(skip_locked=True)).first()
        yield None if row is None else Claim(store, conn, _batch(row))


@dataclass(frozen=True)
class CheckedBatch:
    """A usage batch's lines as built and checked before it was acknowledged: what ``accrue`` takes, and what
    they were built under (the agreement's newest version; ``newest_manifest``, (model id, manifest id), when
    the batch named no manifest and its model's newest was read)."""

    batch_id: str
    usage: UsageBatch
    agreement: Agreement
    source: ScoreSource
    newest_manifest: tuple[str, str] | None = None

    def check(self, store: Store) -> AccrualSummary:
        """What ``accrue`` would refuse before it splits (``check_accrual``), nothing written."""
        return check_accrual(store, self.usage, self.agreement, event_id=self.batch_id, source=self.source)

    def accrue(self, store: Store) -> AccrualSummary:
        return accrue(store, self.usage, self.agreement, event_id=self.batch_id, source=self.source)

    def current(self, conn: Connection) -> bool:
        """Whether the lines are still the ones the batch's body gives: the agreement's newest version and the
        model's newest manifest (where the batch named none) are those they were built under."""
        newest = load_agreement(conn, self.agreement.id)
        if (newest.version, newest.body_sha256) != (self.agreement.version, self.agreement.body_sha256):
            return False
        if self.newest_manifest is None:
            return True
        model_id, manifest_id = self.newest_manifest
        return latest_manifest_id(conn, model_id) == manifest_id


def checked_scored(
    store: Store,
    outputs: Sequence[OutputIn],
    scores: Mapping[str, Mapping[str, float]] | None,
    *,
    source: ScoreSource,
    per: Literal["work", "payee"] | None,
    agreement_id: str,
    batch_id: str,
    manifest_id: str | None = None,
) -> CheckedBatch:
    """The lines ``accrue_scored`` builds for these arguments (``scored_usage``: the same reads and refusals),
    checked by ``CheckedBatch.check`` by the caller; accruing them is ``accrue_scored`` without ``contents``."""
    usage, agreement, newest = scored_usage(
        store, outputs, scores, source=source, per=per, agreement_id=agreement_id, manifest_id=manifest_id
    )
    return CheckedBatch(batch_id, usage, agreement, source, newest)


def checked_columns(
    store: Store,
    columns: UsageColumns,
    *,
    source: ScoreSource,
    per: Literal["work", "payee"] | None,
    agreement_id: str,
    batch_id: str,
    manifest_id: str | None = None,
) -> CheckedBatch:
    """The lines ``accrue_columns`` builds for these arguments (the same reads and refusals)."""
    if source.run_id is not None:
        if len(columns.key_codes) or per is not None:
            raise ValidationError(f"attribution run {source.run_id} brings its own scores: send the outputs alone")
        return checked_scored(
            store, columns.outputs(), None, source=source, per=None, agreement_id=agreement_id,
            batch_id=batch_id, manifest_id=manifest_id,
        )  # fmt: skip
    usage, agreement, newest = columns_usage(
        store, columns, per=per, agreement_id=agreement_id, manifest_id=manifest_id
    )
    return CheckedBatch(batch_id, usage, agreement, source, newest)


class Handover:
    """Batches checked by the request that acknowledged them, kept in memory for this process's accrual
    worker by batch id and content hash (``request_sha256``), so their lines are built once: at most
    ``lines_max`` lines in all, past which a batch is not kept (the worker builds it again from its body, as
    it does after a restart or for a batch another process acknowledged). Safe to share between threads."""

    def __init__(self, lines_max: int = USAGE_HANDOVER_LINES_MAX) -> None:
        if lines_max < 0:
            raise ValueError("a handover holds lines_max >= 0 lines")
        self.lines_max = lines_max
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, str], tuple[int, CheckedBatch]] = {}
        self._lines = 0

    def put(self, batch: IntakeBatch, checked: CheckedBatch) -> bool:
        """Keep ``checked`` for ``batch`` (queued in the intake); False when it would pass ``lines_max``."""
        lines = len(checked.usage.payee_codes)
        with self._lock:
            key = (batch.batch_id, batch.request_sha256)
            if key in self._kept or self._lines + lines > self.lines_max:
                return False
            self._kept[key] = (batch.seq, checked)
            self._lines += lines
        return True

    def take(self, batch: IntakeBatch, *, oldest: bool = False) -> CheckedBatch | None:
        """The checked lines of ``batch``, taken out (None when not kept). ``oldest``: ``batch`` is the oldest
        queued batch no other worker holds, so every batch kept from before it was taken elsewhere or is held
        by another worker: they are let go too (a batch queued again is built from its body)."""
        with self._lock:
            if oldest:
                for key in [k for k, (seq, _) in self._kept.items() if seq < batch.seq]:
                    self._drop(key)
            kept = self._kept.get((batch.batch_id, batch.request_sha256))
            if kept is None or kept[0] != batch.seq:
                return None
            self._drop((batch.batch_id, batch.request_sha256))
            return kept[1]

    def _drop(self, key: tuple[str, str]) -> None:
        _, checked = self._kept.pop(key)
        self._lines -= len(checked.usage.payee_codes)

    def lines(self) -> int:
        """Lines kept now."""
        with self._lock:
            return self._lines
