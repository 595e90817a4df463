"""Service load: concurrent clients ingest usage events over HTTP into PostgreSQL (or SQLite, ``--db``).

    python benchmarks/service.py --events 1000000 --clients 8 --json

N usage events (outputs with revenue, each attributed per payee to ``--payees-per-event`` of
``--payees`` people, half of them verified, so money goes to payable and to escrow accounts) are cut
into batches of ``--batch-events`` and sent as ``POST /api/v1/usage-batches`` by ``--clients`` threads,
each with its own HTTP connection, against ``endcredits serve --db postgresql://...`` on a fresh schema
(``--workers`` uvicorn processes, each with its accrual worker; SQLite: one). The service answers 202 once
a batch is durable in its intake and accrues it afterwards, in arrival order. Timed: from the first request
to the last acknowledgement (``ack_wall_s``; the acknowledgement latency, p50/p99, runs from a request's
first try to its 202; ``ack_first_max_ms`` is the slowest of the clients' first requests, which meet a
process just started, ``ack_later_p99_ms`` the p99 of the others), and to the moment every batch reads
``accrued`` from ``GET /usage-batches/{id}`` (``wall_s``: the end-to-end rate, line items/s). Then the same
batches are accrued in process, one after another, into another fresh schema, and every account's balance
must equal the service's to the microunit (carry-forward makes the final balances independent of the
order the batches landed in); ``verify`` must pass on both. Last, the in-process core rate
(``benchmarks/ledger.py``'s path, ``core_rate``) on the same backend, for as many line items in batches of
the same size.

``--arrow`` sends each batch as an Arrow IPC stream (``application/vnd.apache.arrow.stream``) instead of
JSON. A client answered 429 waits the ``Retry-After`` it was given and sends the batch again; the retries
are counted, and a request's latency runs from its first try to its answer.

``--formats`` instead ingests the same batches in process as JSON and as Arrow streams (``formats``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from endcredits.ledger.accrue import ScoreSource, accrue
from endcredits.ledger.records import account_balances
from endcredits.ledger.verify import verify
from endcredits.manifest.records import add_model
from endcredits.money import format_amount, parse_amount
from endcredits.registry.records import add_person, verify_person
from endcredits.royalties import parse_agreement
from endcredits.royalties.records import save_agreement
from endcredits.royalties.usage import OutputIn, build_usage
from endcredits.royalties.usage_arrow import payee_stream_of_json
from endcredits.service.auth import create_api_key
from endcredits.store.engine import Store, init_store
from ledger import AGREEMENT  # benchmarks/ledger.py: the same one-role agreement

BENCH_REASON = "benchmark load, not a recorded attribution run"
BENCH_SCORES = ScoreSource.external(BENCH_REASON)

PG_URL = os.environ.get("ENDCREDITS_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _schema() -> str:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def _drop(url: str) -> None:
    schema = url.rsplit("%3D", 1)[1]
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _world(data_dir: Path, url: str | None, n_payees: int) -> Store:
    """The same people (ids 1..n), model and agreement in any fresh store."""
    store = init_store(data_dir, url)
    ag = parse_agreement(AGREEMENT)
    with store.write() as conn:
        save_agreement(conn, ag.id, ag.version, ag.body, ag.body_sha256)
        add_model(conn, "bench-model", ["commercial"], "benchmark")
        for i in range(n_payees):
            pid = add_person(conn, f"bench person {i:06d}")
            if i % 2 == 0:
                verify_person(conn, pid, verified_by="bench")
    return store


def _batches(n_events: int, batch_events: int, n_payees: int, per_event: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for b, first in enumerate(range(0, n_events, batch_events)):
        outputs = []
        for i in range(first, min(n_events, first + batch_events)):
            payees = rng.sample(range(1, n_payees + 1), per_event)
            outputs.append(
                {
                    "output_id": f"e{i}",
                    "model_id": "bench-model",
                    "revenue": format_amount(rng.randint(1_000_000, 500_000_000) | 1, "EUR"),
                    "currency": "EUR",
                    "occurred_at": f"2026-{1 + i * 3 // n_events:02d}-21T12:00:00Z",
                    "payee_scores": {f"person:{p}": round(rng.uniform(0.001, 1.0), 6) for p in sorted(payees)},
                }
            )
        out.append(
            {
                "batch_id": f"load-{b:06d}",
                "agreement_id": "bench",
                "external": {"reason": BENCH_REASON},
                "outputs": outputs,
            }
        )
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(data_dir: Path, url: str | None, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "endcredits", "serve", "--data", str(data_dir)]
        + (["--db", url] if url is not None else [])
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            if proc.poll() is not None:
                raise SystemExit("endcredits serve exited before it was ready") from None
            time.sleep(0.2)
    raise SystemExit("endcredits serve was not ready within 120 s")


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    rank = max(1, -(-int(q * 1000) * len(sorted_values) // 1000))
    return sorted_values[rank - 1]


def _post(http: httpx.Client, url: str, body: dict[str, Any], arrow: bytes | None) -> tuple[httpx.Response, int]:
    """Send one batch until it is not refused for back-pressure; the answer and the 429s it met."""
    retries = 0
    while True:
        if arrow is None:
            r = http.post(url, json=body)
        else:
            r = http.post(url, content=arrow, headers={"Content-Type": "application/vnd.apache.arrow.stream"})
        if r.status_code != 429:
            return r, retries
        retries += 1
        time.sleep(float(r.headers.get("Retry-After", "1")))


def run(
    n_events: int,
    clients: int,
    batch_events: int,
    n_payees: int,
    per_event: int,
    arrow: bool = False,
    db: str = "postgresql",
    workers: int = 1,
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="endcredits-load-"))
    pg = db == "postgresql"
    served_url, local_url = (_schema(), _schema()) if pg else (None, None)
    batches = _batches(n_events, batch_events, n_payees, per_event, seed=11)
    try:
        store = _world(tmp / "served", served_url, n_payees)
        with store.write() as conn:
            key = create_api_key(conn, role="operator", scopes=["ingest"], label="load").key
        store.dispose()
        proc, base = _serve(tmp / "served", served_url, workers)
        latencies_s: list[float] = []
        first_s: list[float] = []  # each client's first request, to a process just started
        later_s: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        queue = list(reversed(batches))
        bodies = {b["batch_id"]: payee_stream_of_json(b) for b in batches} if arrow else {}
        retried = [0]

        def client() -> None:
            first = True
            with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=600) as http:
                while True:
                    with lock:
                        if not queue:
                            return
                        body = queue.pop()
                    began = time.perf_counter()
                    r, retries = _post(http, f"{base}/usage-batches", body, bodies.get(body["batch_id"]))
                    took = time.perf_counter() - began
                    with lock:
                        latencies_s.append(took)
                        (first_s if first else later_s).append(took)
                        first = False
                        retried[0] += retries
                        if r.status_code != 202:
                            errors.append(f"{body['batch_id']}: {r.status_code} {r.text[:200]}")

        try:
            threads = [threading.Thread(target=client) for _ in range(clients)]
            began = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            ack_wall_s = time.perf_counter() - began
            refused = _until_accrued(base, key, [b["batch_id"] for b in batches])
            wall_s = time.perf_counter() - began
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        errors += refused
        if errors:
            raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
        latencies_s.sort()

        local = _world(tmp / "local", local_url, n_payees)
        ag = parse_agreement(AGREEMENT)
        local_began = time.perf_counter()
        for body in batches:
            outs = [
                OutputIn(o["output_id"], o["model_id"], parse_amount(o["revenue"], "EUR"), "EUR", o["occurred_at"])
                for o in body["outputs"]
            ]
            with local.read() as conn:
                usage = build_usage(
                    conn, outs, {o["output_id"]: o["payee_scores"] for o in body["outputs"]}, ag, None, per="payee"
                )
            accrue(local, usage, ag, event_id=body["batch_id"], source=BENCH_SCORES)
        local_s = time.perf_counter() - local_began
        served = init_store(tmp / "served", served_url)
        with served.read() as conn:
            served_balances = account_balances(conn)
        with local.read() as conn:
            local_balances = account_balances(conn)
        equal = served_balances == local_balances
        served_ok, local_ok = verify(served).ok, verify(local).ok
        served.dispose()
        local.dispose()
        core = core_rate(n_events * per_event, db, batch_events * per_event, n_payees)
        return {
            "db": db,
            "events": n_events,
            "format": "arrow" if arrow else "json",
            "retries_429": retried[0],
            "workers": workers,
            "line_items_per_s": round(n_events * per_event / wall_s),
            "ack_wall_s": round(ack_wall_s, 2),
            "ack_line_items_per_s": round(n_events * per_event / ack_wall_s),
            "core_line_items_per_s": core,
            "served_over_core": round(n_events * per_event / wall_s / core, 3),
            "in_process_line_items_per_s": round(n_events * per_event / local_s),
            "clients": clients,
            "batch_events": batch_events,
            "requests": len(batches),
            "payees": n_payees,
            "payees_per_event": per_event,
            "wall_s": round(wall_s, 2),
            "events_per_s": round(n_events / wall_s),
            "ack_latency_p50_ms": round(_percentile(latencies_s, 0.50) * 1e3),
            "ack_latency_p99_ms": round(_percentile(latencies_s, 0.99) * 1e3),
            "ack_first_max_ms": round(max(first_s) * 1e3),
            "ack_later_p99_ms": round(_percentile(sorted(later_s), 0.99) * 1e3) if later_s else None,
            "in_process_events_per_s": round(n_events / local_s),
            "accounts": len(served_balances),
            "balances_equal_in_process": equal,
            "verify_served": served_ok,
            "verify_in_process": local_ok,
        }
    finally:
        if pg:
            _drop(str(served_url))
            _drop(str(local_url))


def _until_accrued(base: str, key: str, batch_ids: list[str]) -> list[str]:
    """Wait until every batch reads accrued (or refused) from ``GET /usage-batches/{id}``, looking every 50 ms
    from the oldest still queued; the batches not accrued as ``created``, as errors."""
    pending = list(batch_ids)
    errors: list[str] = []
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        while pending:
            answer = http.get(f"{base}/usage-batches/{pending[0]}").json()
            if answer.get("state") == "queued":
                time.sleep(0.05)
                continue
            if answer.get("state") != "accrued" or answer.get("status") != "created":
                errors.append(f"{pending[0]}: {json.dumps(answer)[:200]}")
            pending.pop(0)
    return errors


def core_rate(items: int, db: str, batch_items: int, n_payees: int) -> int:
    """The in-process core rate on the same backend: ``benchmarks/ledger.py``'s path (a ready
    ``UsageBatch`` straight into ``accrue``, one batch after another) for as many line items, in batches
    of the same size over as many payees; line items/s."""
    from ledger import run as ledger_run

    r = ledger_run(items, db, batch_items, payees_n=n_payees, baseline=False, check=False)
    return int(r["line_items_per_s"])  # type: ignore[call-overload]


def formats(n_events: int, batch_events: int, n_payees: int, per_event: int) -> dict[str, Any]:
    """In process, through the service's own ingestion (``service.ingest.ingest_usage``: parse, build the
    lines, accrue, keep the answer), the same batches as JSON and as Arrow streams, each into a fresh store
    on SQLite and on PostgreSQL. Timed: the ingestion alone (the bodies are encoded before). The balances
    of the two formats must be equal to the microunit."""
    from endcredits.limits import USAGE_INTAKE_WAIT_S_MAX
    from endcredits.service.app import json_usage
    from endcredits.service.ingest import ingest_usage

    batches = _batches(n_events, batch_events, n_payees, per_event, seed=18)
    bodies = {
        "json": [("application/json", json.dumps(b).encode()) for b in batches],
        "arrow": [("application/vnd.apache.arrow.stream", payee_stream_of_json(b)) for b in batches],
    }
    result: dict[str, Any] = {"events": n_events, "lines": n_events * per_event, "batch_events": batch_events}
    for backend in ("sqlite", "postgresql"):
        seen: dict[str, dict[str, int]] = {}
        for form, sent in bodies.items():
            url = _schema() if backend == "postgresql" else None
            store = _world(Path(tempfile.mkdtemp(prefix="ec-formats-")) / "data", url, n_payees)
            try:
                start = time.perf_counter()
                for kind, body in sent:  # each answered once accrued (``Prefer: wait``), as the old path did
                    ingest_usage(store, body, kind, json_usage(store), wait_s=USAGE_INTAKE_WAIT_S_MAX, retry_after_s=1)
                wall_s = time.perf_counter() - start
                with store.read() as conn:
                    seen[form] = account_balances(conn)
                result[f"{backend}_{form}_lines_per_s"] = round(n_events * per_event / wall_s)
            finally:
                store.dispose()
                if url is not None:
                    _drop(url)
        result[f"{backend}_arrow_over_json"] = round(
            result[f"{backend}_arrow_lines_per_s"] / result[f"{backend}_json_lines_per_s"], 2
        )
        result[f"{backend}_balances_equal"] = seen["json"] == seen["arrow"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch-events", type=int, default=1_000)
    parser.add_argument("--payees", type=int, default=2_000)
    parser.add_argument("--payees-per-event", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--arrow", action="store_true", help="send Arrow IPC streams instead of JSON")
    parser.add_argument("--formats", action="store_true", help="JSON vs Arrow ingestion in process, both backends")
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql", help="the served store")
    parser.add_argument("--workers", type=int, default=1, help="serve's worker processes (PostgreSQL only)")
    a = parser.parse_args()
    if a.formats:
        f = formats(a.events, a.batch_events, a.payees, a.payees_per_event)
        print(json.dumps(f, indent=2))
        if not (f["sqlite_balances_equal"] and f["postgresql_balances_equal"]):
            raise SystemExit(1)
        return
    r = run(a.events, a.clients, a.batch_events, a.payees, a.payees_per_event, a.arrow, a.db, a.workers)
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        print(
            f"{r['events']:,} events acknowledged in {r['ack_wall_s']} s and accrued in {r['wall_s']} s over HTTP "
            f"by {r['clients']} clients: {r['events_per_s']:,} events/s, acknowledged at p50 "
            f"{r['ack_latency_p50_ms']} ms, p99 {r['ack_latency_p99_ms']} ms per request of {r['batch_events']:,} "
            f"events; balances equal an in-process run: {r['balances_equal_in_process']}"
        )
    if not (r["balances_equal_in_process"] and r["verify_served"] and r["verify_in_process"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
