"""What one accrual of 10^6 line items must write to SQLite under two ledger designs, and nothing else.

    python benchmarks/sqlite_floor.py --json

Raw ``sqlite3`` with the store's settings (WAL, ``synchronous=FULL``, 64 MiB page cache), no endcredits
code, no allocation, evidence or lookups; each design in a fresh database file, timed from BEGIN to the
end of COMMIT. ``--payees`` payees and outputs (10^5 by default: the ledger benchmark's 10^6 items).

- ``rows``: a row per payee, as the ledger wrote before its segments. A first accrual opens an
  account per payee (rowid, unique key and holder: three B-trees), posts a leg per payee (primary key
  and account index), a carry per payee, and an output row (six columns) per output.
- ``rows_steady``: the same with every account and carry open already (balances and carries updated,
  not inserted): what a payee's second and later batches cost.
- ``segment``: a log-structured ledger. The batch's legs and carries as one row of columns (int64
  arrays), the outputs as (id, batch) rows only, for their repeat check.

A design that writes its per-payee rows cannot accrue faster than ``rows`` allows on this machine;
``segment`` shows how much of the 1.0 s budget that 10^6 line items/s leaves such a design.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

AT = "2026-11-22T00:00:00.000000Z"


def _connect(directory: str) -> sqlite3.Connection:
    conn = sqlite3.connect(os.path.join(directory, "floor.db"), isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = FULL", "cache_size = -65536"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def _row_tables(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, kind TEXT, currency TEXT, "
        "holder TEXT, may_go_negative INT, created_at TEXT, balance_microunits TEXT, last_transfer_id INT)"
    )
    conn.execute("CREATE INDEX ix_accounts_holder ON accounts (holder)")
    conn.execute(
        "CREATE TABLE legs (transfer_id INT, account_id INT, amount_microunits TEXT, "
        "PRIMARY KEY (transfer_id, account_id)) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX ix_legs_account_id ON legs (account_id)")
    conn.execute(
        "CREATE TABLE carries (payee TEXT, currency TEXT, subunits INT, PRIMARY KEY (payee, currency)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE outputs (id TEXT PRIMARY KEY, model_id TEXT, batch_event_id TEXT, revenue_microunits TEXT, "
        "currency TEXT, occurred_at TEXT) WITHOUT ROWID"
    )


def _outputs(batch: int, n: int) -> list[tuple[str, ...]]:
    return [(f"b{batch}-o{i}", "bench-model", f"bench-{batch}", "123456789", "EUR", AT) for i in range(n)]


def _timed(write: Callable[[], None], conn: sqlite3.Connection) -> float:
    started = time.perf_counter()
    conn.execute("BEGIN")
    write()
    conn.execute("COMMIT")
    return time.perf_counter() - started


def _first_batch(n: int) -> Callable[[sqlite3.Connection], None]:
    """Writes a first batch over ``n`` new payees: their accounts, legs, carries, and ``n`` outputs."""
    accounts = sorted((f"escrow:name:{i}:EUR", "escrow", "EUR", f"name:{i}", 0, AT, str(i), 1) for i in range(n))
    legs = [(1, i + 1, str(i)) for i in range(n)]
    carries = sorted((f"name:{i}", "EUR", 5) for i in range(n))
    outputs = _outputs(0, n)

    def write(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO accounts (key, kind, currency, holder, may_go_negative, created_at, "
            "balance_microunits, last_transfer_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            accounts,
        )
        conn.executemany("INSERT INTO legs VALUES (?, ?, ?)", legs)
        conn.executemany("INSERT INTO carries VALUES (?, ?, ?)", carries)
        conn.executemany("INSERT INTO outputs VALUES (?, ?, ?, ?, ?, ?)", outputs)

    return write


def rows_first(directory: str, n: int) -> float:
    conn = _connect(directory)
    _row_tables(conn)
    write = _first_batch(n)
    seconds = _timed(lambda: write(conn), conn)
    conn.close()
    return seconds


def rows_steady(directory: str, n: int) -> float:
    """A second batch over the same payees, after a first one (not timed) opened their accounts and carries."""
    conn = _connect(directory)
    _row_tables(conn)
    first = _first_batch(n)
    _timed(lambda: first(conn), conn)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    balances = [(str(2 * i), 2, i + 1) for i in range(n)]
    legs = [(2, i + 1, str(i)) for i in range(n)]
    carries = sorted((6, f"name:{i}", "EUR") for i in range(n))
    outputs = _outputs(1, n)

    def write() -> None:
        conn.executemany("UPDATE accounts SET balance_microunits = ?, last_transfer_id = ? WHERE id = ?", balances)
        conn.executemany("INSERT INTO legs VALUES (?, ?, ?)", legs)
        conn.executemany("UPDATE carries SET subunits = ? WHERE payee = ? AND currency = ?", carries)
        conn.executemany("INSERT INTO outputs VALUES (?, ?, ?, ?, ?, ?)", outputs)

    seconds = _timed(write, conn)
    conn.close()
    return seconds


def segment(directory: str, n: int) -> float:
    conn = _connect(directory)
    conn.execute("CREATE TABLE outputs (id TEXT PRIMARY KEY, batch INT NOT NULL) WITHOUT ROWID")
    conn.execute("CREATE TABLE segments (batch INTEGER PRIMARY KEY, payees BLOB, amounts BLOB, carries BLOB)")
    payees = np.arange(n, dtype=np.int64)
    amounts = np.arange(1_000, 1_000 + n, dtype=np.int64)
    carries = np.full(n, 5, dtype=np.int64)
    outputs = [(f"b0-o{i}", 0) for i in range(n)]

    def write() -> None:
        conn.executemany("INSERT INTO outputs VALUES (?, ?)", outputs)
        conn.execute(
            "INSERT INTO segments VALUES (?, ?, ?, ?)", (0, payees.tobytes(), amounts.tobytes(), carries.tobytes())
        )

    seconds = _timed(write, conn)
    conn.close()
    return seconds


DESIGNS: dict[str, Callable[[str, int], float]] = {"rows": rows_first, "rows_steady": rows_steady, "segment": segment}


def run(payees: int, rounds: int) -> dict[str, object]:
    times: dict[str, list[float]] = {name: [] for name in DESIGNS}
    for _ in range(rounds):  # the designs alternate, so a load that comes and goes falls on each alike
        for name, design in DESIGNS.items():
            directory = tempfile.mkdtemp(prefix="endcredits-floor-")
            try:
                times[name].append(design(directory, payees))
            finally:
                shutil.rmtree(directory, ignore_errors=True)
    items = payees * 10
    return {
        "sqlite": sqlite3.sqlite_version,
        "payees": payees,
        "items": items,
        "rounds": rounds,
        **{f"{name}_s": [round(t, 3) for t in ts] for name, ts in times.items()},
        **{f"{name}_line_items_per_s_median": round(items / statistics.median(ts)) for name, ts in times.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payees", type=int, default=100_000, help="payees and outputs; line items are 10 per output")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.payees < 1 or args.rounds < 1:
        parser.error("--payees and --rounds must be at least 1")
    result = run(args.payees, args.rounds)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        for k, v in result.items():
            print(f"{k:>36}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
