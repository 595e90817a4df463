"""Accrual throughput: attributed line items per second, end to end, committed durably.

    python benchmarks/ledger.py --items 1000000 --db sqlite --json
    python benchmarks/ledger.py --items 1000000 --db postgresql --json
    ENDCREDITS_BENCH_PG=postgresql+psycopg://postgres@127.0.0.1:5432/postgres python benchmarks/ledger.py ...

N line items = N/10 outputs x 10 payees, drawn among N/10 distinct payees (``--payees`` sets another
number; ``--batch-items`` per accrual batch, each batch drawing from all of them) (credited names; half of them
claimed by verified people, so money goes both to payable and to escrow accounts). Timed: building
the usage batch, the one-step split, carry-forward, the Parquet evidence file, the ledger transfer
with its per-account legs, balances, carries, outputs and audit entry, and the commit (SQLite with
``synchronous=FULL`` in WAL mode; PostgreSQL with its defaults, ``fsync`` on). Not timed: registering
the payees.

Before the timed run, a batch of the same size as the timed batches is accrued into a throwaway store
(``--cold`` skips it), so the figure is the steady rate of a process that accrues batch after batch
(the service) rather than the first call of a fresh one: in a fresh process the first Arrow
conversion takes about 0.4 s of one-time setup, and the first arrays of each size are new memory
(page faults) until the allocator has grown to hold them. ``--cold`` measures that first call.

Each accrual posts its legs and carries as one ledger segment; an accrual folds the pending segments into
the account rows and the ledger snapshot first when 8 segments or 8 x 10^6 legs are pending
(``FOLD_PENDING_*``), inside the timed run (``folds_in_run``, each one's seconds in ``fold_s_in_run``
and its thread's CPU seconds in ``fold_cpu_s_in_run``, timed around ``fold_pending`` as ``accrue``
calls it). Whatever is still pending at the end is folded after the run and timed on its own
(``fold_s``, over ``fold_segments`` segments and ``fold_accounts`` accounts): the cost the segments
move off the accrual.

The storage floor, measured in the same run on an empty store: only the rows such an accrual must
write (one transfer, its segment of legs and carries, the outputs' keys), prepared beforehand, inserted
through the same paths and committed; no allocation, evidence file, checks or lookups. No accrual with
these tables can beat it on this machine.

The baseline, measured in the same run on min(N, 20,000) items, is the plain design: one INSERT of the
line item and one transaction per line item, into a table of the same database. ``--no-baseline`` skips
it and the floor, ``--no-verify`` skips ``verify`` (their fields are then null), for runs that compare
accrual and fold times only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from sqlalchemy import BigInteger, Column, MetaData, String, Table, create_engine, func, select, text

import endcredits.ledger.accrue as accrue_module
from endcredits.ledger.accrue import ScoreSource, accrue
from endcredits.ledger.evidence import use_system_allocator
from endcredits.ledger.records import fold_pending
from endcredits.ledger.segments import encode_carries, encode_legs, segment_sha256
from endcredits.ledger.verify import verify
from endcredits.manifest.records import add_model
from endcredits.registry.records import add_person, claim_name, name_ids, verify_person
from endcredits.royalties import parse_agreement
from endcredits.royalties.usage import UsageBatch
from endcredits.store.bulk import bulk_insert, insert_keys
from endcredits.store.engine import Store, init_store
from endcredits.store.schema import ledger_folds, ledger_segments

BENCH_SCORES = ScoreSource.external("benchmark load, not a recorded attribution run")

PG_URL = os.environ.get("ENDCREDITS_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
"""The PostgreSQL database runs make their schemas in (``ENDCREDITS_BENCH_PG``): ``postgres`` beside test suites."""
AGREEMENT = """
id = "bench"
version = 1
currency = "EUR"
pool_rate = "0.30"
rights_holder_share = "0"
lineage_pass_through = "0"
payout_threshold = "10.00"
escrow_period_days = 1095
[role_weights]
"endcredits:attributed" = 1
"""
PAYEES_PER_OUTPUT = 10


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _setup_payees(store: Store, n_payees: int) -> list[str]:
    with store.write() as conn:
        ids = name_ids(conn, [f"bench name {i:08d}" for i in range(n_payees)])
        add_model(conn, "bench-model", ["commercial"], "benchmark")
        # A few verified people claim names, so payable and escrow accounts both take legs.
        for i in range(0, min(n_payees, 200), 2):
            pid = add_person(conn, f"bench person {i}")
            verify_person(conn, pid, verified_by="bench")
            claim_name(conn, ids[f"bench name {i:08d}"], pid)
    return [f"name:{ids[f'bench name {i:08d}']}" for i in range(n_payees)]


def _usage(payees: list[str], n_outputs: int, rng: np.random.Generator, batch: int) -> UsageBatch:
    n_lines = n_outputs * PAYEES_PER_OUTPUT
    # Ten distinct payees per output (a random offset and stride over the payee list).
    start = rng.integers(0, len(payees), size=n_outputs)
    stride = rng.integers(1, max(2, len(payees) // PAYEES_PER_OUTPUT), size=n_outputs)
    idx = (start[:, None] + stride[:, None] * np.arange(PAYEES_PER_OUTPUT)[None, :]) % len(payees)
    idx.sort(axis=1)
    return UsageBatch(
        output_ids=[f"b{batch}-o{i}" for i in range(n_outputs)],
        model_ids=["bench-model"] * n_outputs,
        revenue_microunits=rng.integers(1_000_000, 500_000_000, size=n_outputs).tolist(),
        currencies=["EUR"] * n_outputs,
        occurred_at=["2026-11-21T12:00:00Z"] * n_outputs,
        offsets=np.arange(0, n_lines + 1, PAYEES_PER_OUTPUT, dtype=np.int64),
        payees=payees,
        payee_codes=idx.ravel().astype(np.int64),
        weights=rng.integers(1, 1_000_000, size=n_lines, dtype=np.int64),
        roles=["endcredits:attributed"],
        role_codes=np.zeros(n_lines, dtype=np.int64),
    )


def _baseline(store: Store, items: int) -> float:
    """One INSERT and one transaction (commit) per line item, into the same database."""
    md = MetaData()
    table = Table(
        "bench_baseline_items",
        md,
        Column("output_id", String(64)),
        Column("payee", String(64)),
        Column("amount_microunits", BigInteger),
    )
    md.create_all(store.engine)
    started = time.perf_counter()
    with store.engine.connect() as conn:
        for i in range(items):
            with conn.begin():
                conn.execute(
                    table.insert().values(output_id=f"o{i // 10}", payee=f"name:{i % 997}", amount_microunits=i)
                )
    return items / (time.perf_counter() - started)


def _warm_up(items: int) -> float:
    """Accrue a batch of ``items`` line items into a throwaway SQLite store, so that one-time costs of the
    process (lazy imports, Arrow and Parquet initialization, SQLAlchemy's statement caches, the
    allocator's first growth to arrays of this size) are not timed."""
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="endcredits-bench-warm-"))
    store = init_store(tmp / "data")
    try:
        n_outputs = max(1, items // PAYEES_PER_OUTPUT)
        payees = _setup_payees(store, max(PAYEES_PER_OUTPUT, n_outputs))
        accrue(
            store,
            _usage(payees, n_outputs, np.random.default_rng(1), 0),
            parse_agreement(AGREEMENT),
            event_id="warm-up",
            source=BENCH_SCORES,
        )
    finally:
        store.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    return time.perf_counter() - started


def _storage_floor(store: Store, n_payees: int, n_outputs: int) -> float:
    """Seconds to write only the rows an accrual of this size must write, prepared beforehand, into the
    real tables of an empty store, and commit: one transfer row, its segment (10^5 legs and carries as
    two Arrow blobs, encoded beforehand) and the outputs' keys. No allocation, evidence, checks or
    lookups: the storage engine's floor for this design on this machine, measured in the same run as
    the accrual."""
    at = "2026-11-22T00:00:00.000000Z"
    holders = [f"name:{i}" for i in range(1, n_payees + 1)]
    legs_blob = encode_legs([f"escrow:{h}:EUR" for h in holders], list(range(1_000, 1_000 + n_payees)))
    carries_blob = encode_carries(holders, np.full(n_payees, 7, dtype=np.int64))
    output_ids = [f"floor-o{i}" for i in range(n_outputs)]
    started = time.perf_counter()
    with store.write() as conn:
        bulk_insert(
            conn,
            "transfers",
            ["id", "event_id", "code", "currency", "content_sha256", "memo", "leg_count", "created_at"],
            [(1, "floor", "accrual", "EUR", "0" * 64, "{}", n_payees, at)],
        )
        conn.execute(
            ledger_segments.insert().values(
                transfer_id=1,
                currency="EUR",
                leg_count=n_payees,
                carry_count=n_payees,
                legs_arrow=legs_blob,
                carries_arrow=carries_blob,
                sha256=segment_sha256(legs_blob, carries_blob),
            )
        )
        insert_keys(conn, "outputs", "id", output_ids, {"batch_event_id": "floor"})
    return time.perf_counter() - started


@contextmanager
def _timed_folds() -> Iterator[list[tuple[float, float]]]:
    """(wall seconds, the calling thread's CPU seconds) of each fold an accrual does first, while inside:
    ``fold_pending`` as ``accrue`` calls it, wrapped with two clocks (on a shared machine the CPU time
    swings less than the wall time)."""
    seconds: list[tuple[float, float]] = []
    inner = accrue_module.fold_pending

    def timed(conn: Any, **kwargs: Any) -> Any:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return inner(conn, **kwargs)
        finally:
            seconds.append((time.perf_counter() - started, time.thread_time() - cpu))

    with mock.patch.object(accrue_module, "fold_pending", timed):
        yield seconds


def _fresh_store(db: str) -> tuple[Store, Path, str | None]:
    tmp = Path(tempfile.mkdtemp(prefix="endcredits-bench-"))
    schema = None
    url = None
    if db == "postgresql":
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        admin.dispose()
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    return init_store(tmp / "data", url), tmp, schema


def _drop(store: Store, tmp: Path, schema: str | None) -> None:
    store.dispose()
    shutil.rmtree(tmp, ignore_errors=True)
    if schema is not None:
        admin = create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def run(
    items: int,
    db: str,
    batch_items: int,
    warm_up: bool = True,
    payees_n: int | None = None,
    *,
    baseline: bool = True,
    check: bool = True,
) -> dict[str, object]:
    allocator = use_system_allocator()  # as the endcredits command does (ARROW_DEFAULT_MEMORY_POOL overrides)
    warm_up_s = _warm_up(min(items, batch_items)) if warm_up else 0.0
    store, tmp, schema = _fresh_store(db)
    try:
        n_outputs = items // PAYEES_PER_OUTPUT
        payees = _setup_payees(store, max(PAYEES_PER_OUTPUT, payees_n or n_outputs))
        agreement = parse_agreement(AGREEMENT)
        rng = np.random.default_rng(7)
        outputs_per_batch = max(1, batch_items // PAYEES_PER_OUTPUT)
        done = 0
        batches = 0
        with _timed_folds() as fold_seconds:
            started = time.perf_counter()
            while done < n_outputs:
                n = min(outputs_per_batch, n_outputs - done)
                usage = _usage(payees, n, rng, batches)
                accrue(store, usage, agreement, event_id=f"bench-{batches}", source=BENCH_SCORES)
                done += n
                batches += 1
            elapsed = time.perf_counter() - started
        rss = _peak_rss_mb()
        with store.read() as conn:  # folds an accrual did first, inside the timed run
            folds_in_run = int(conn.execute(select(func.count()).select_from(ledger_folds)).scalar_one())
        fold_started = time.perf_counter()
        with store.write() as conn:  # what is still pending, folded on its own and timed apart
            folded = fold_pending(conn)
        fold_s = time.perf_counter() - fold_started
        verify_ok = verify(store).ok if check else None
        baseline_rate, floor_s = _baseline_and_floor(store, db, min(items, 20_000), len(payees), n_outputs, baseline)
        return {
            "db": db,
            "items": n_outputs * PAYEES_PER_OUTPUT,
            "outputs": n_outputs,
            "payees": len(payees),
            "batches": batches,
            "seconds": round(elapsed, 3),
            "line_items_per_s": round(n_outputs * PAYEES_PER_OUTPUT / elapsed),
            "peak_rss_mb": round(rss, 1),
            "baseline_line_items_per_s": round(baseline_rate) if baseline else None,
            "folds_in_run": folds_in_run,
            "fold_s_in_run": [round(wall, 3) for wall, _ in fold_seconds],
            "fold_cpu_s_in_run": [round(cpu, 3) for _, cpu in fold_seconds],
            "fold_segments": folded.segments if folded else 0,
            "fold_accounts": folded.accounts if folded else 0,
            "fold_s": round(fold_s, 3),
            "storage_floor_s": round(floor_s, 3) if baseline else None,
            "storage_floor_line_items_per_s": round(n_outputs * PAYEES_PER_OUTPUT / floor_s) if baseline else None,
            "verify_ok": verify_ok,
            "warm_up": warm_up,
            "warm_up_s": round(warm_up_s, 3),
            "arrow_allocator": allocator,
        }
    finally:
        _drop(store, tmp, schema)


def _baseline_and_floor(
    store: Store, db: str, items: int, n_payees: int, n_outputs: int, wanted: bool
) -> tuple[float, float]:
    """(the baseline's line items/s, the storage floor's seconds), or (0, 0) when not ``wanted``."""
    if not wanted:
        return 0.0, 0.0
    rate = _baseline(store, items)
    floor_store, floor_tmp, floor_schema = _fresh_store(db)
    try:
        return rate, _storage_floor(floor_store, n_payees, n_outputs)
    finally:
        _drop(floor_store, floor_tmp, floor_schema)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--batch-items", type=int, default=1_000_000, help="line items per accrual batch")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="no warm-up batch: time the first accrual of a fresh process, one-time costs included",
    )
    parser.add_argument(
        "--payees",
        type=int,
        default=None,
        help="distinct payees over the whole run (default: one per output, N/10): a run of many "
        "batches over the same payees is the steady state folds are made for",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the baseline and the storage floor (their figures: null)"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip verify after the run (verify_ok: null)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.items < PAYEES_PER_OUTPUT:
        parser.error(f"--items must be at least {PAYEES_PER_OUTPUT}")
    if args.payees is not None and args.payees < PAYEES_PER_OUTPUT:
        parser.error(f"--payees must be at least {PAYEES_PER_OUTPUT}")
    result = run(
        args.items,
        args.db,
        args.batch_items,
        warm_up=not args.cold,
        payees_n=args.payees,
        baseline=not args.no_baseline,
        check=not args.no_verify,
    )
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        for k, v in result.items():
            print(f"{k:>28}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
