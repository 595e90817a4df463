"""The durable usage intake: ``POST /usage-batches`` answers 202 once the batch is committed, accrual workers
accrue it later, ``GET /usage-batches/{id}`` says queued, accrued or refused. Bad input is still refused at
once with nothing written; a full backlog answers 429 with ``Retry-After`` and writes nothing; the same batch
twice accrues once; other content under an id is 409. (The same ledger as the synchronous path:
test_edges_agree; SIGKILL of ``serve`` with several workers: test_faults.)"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import pytest

from endcredits.ledger.intake import backlog, intake_store
from endcredits.royalties.usage_arrow import ARROW_STREAM_TYPE, write_usage_stream
from endcredits.service import create_app
from endcredits.service.app import prefer_wait_s
from endcredits.service.ingest import AccrualWorker, accrue_next
from endcredits.store.engine import init_store
from endcredits.store.schema import usage_intake, usage_requests
from helpers_money import on_time, row_counts

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

OP = "op_all"
REASON = "the operator's own scores"


def _batch(svc: Any, batch_id: str, outputs: list[str], revenue: str = "12.34") -> dict[str, Any]:
    w = svc.world
    return {
        "batch_id": batch_id,
        "agreement_id": "test-2026",
        "external": {"reason": REASON},
        "outputs": [
            {
                "output_id": o,
                "model_id": "m",
                "revenue": revenue,
                "currency": "EUR",
                "occurred_at": on_time(1, 5),
                "work_scores": {w.song: 0.7, w.film: 0.3},
            }
            for o in outputs
        ],
    }


def _status(svc: Any, batch_id: str) -> dict[str, Any]:
    r = svc.client.get(f"/api/v1/usage-batches/{batch_id}", headers=svc.headers("auditor"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_batch_is_acknowledged_queued_then_accrued_once(svc: Any) -> None:
    c, h = svc.client, svc.headers(OP)
    before = row_counts(svc.store)
    r = c.post("/api/v1/usage-batches", json=_batch(svc, "q-1", ["q-1a", "q-1b"]), headers=h)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == "/api/v1/usage-batches/q-1"
    assert r.json()["state"] == "queued" and _status(svc, "q-1") == r.json()
    queued = row_counts(svc.store)
    assert {k: queued[k] - before[k] for k in queued if queued[k] != before[k]} == {"usage_intake": 1}
    again = c.post("/api/v1/usage-batches", json=_batch(svc, "q-1", ["q-1a", "q-1b"]), headers=h)
    assert (again.status_code, again.json()) == (202, r.json()) and row_counts(svc.store) == queued
    other = c.post("/api/v1/usage-batches", json=_batch(svc, "q-1", ["q-1a"], "9.99"), headers=h)
    assert other.status_code == 409 and "other content" in other.json()["error"]["message"]
    assert row_counts(svc.store) == queued
    assert accrue_next(svc.store, svc.client.app.state.accrue_json)
    assert not accrue_next(svc.store, svc.client.app.state.accrue_json)  # nothing else queued
    done = _status(svc, "q-1")
    assert (done["state"], done["status"], done["outputs"], done["pool"]) == ("accrued", "created", 2, "12.34")
    assert done["request_sha256"] == r.json()["request_sha256"]
    accrued = row_counts(svc.store)
    third = c.post("/api/v1/usage-batches", json=_batch(svc, "q-1", ["q-1a", "q-1b"]), headers=h)
    assert (third.status_code, third.json()) == (200, done) and row_counts(svc.store) == accrued
    with intake_store(svc.store).read() as conn:
        assert conn.execute(usage_intake.select()).one().body == b""  # its body is dropped once accrued
        assert backlog(conn).batches == 0


def test_the_accrual_worker_thread_accrues_in_arrival_order(svc: Any) -> None:
    h = svc.headers(OP)
    for i in range(3):
        r = svc.client.post("/api/v1/usage-batches", json=_batch(svc, f"w-{i}", [f"w-{i}"]), headers=h)
        assert r.status_code == 202, r.text
    worker = AccrualWorker(svc.store, svc.client.app.state.accrue_json)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while any(_status(svc, f"w-{i}")["state"] == "queued" for i in range(3)):
            assert time.monotonic() < deadline, "the worker accrued nothing within 60 s"
            time.sleep(0.05)
    finally:
        worker.stop()
    answers = [_status(svc, f"w-{i}") for i in range(3)]
    assert [a["state"] for a in answers] == ["accrued"] * 3 and worker.batch_s is not None
    with intake_store(svc.store).read() as conn:
        rows = conn.execute(usage_intake.select().order_by(usage_intake.c.seq)).all()
    assert [r.batch_id for r in rows] == ["w-0", "w-1", "w-2"]
    finished = [r.finished_at for r in rows]
    assert finished == sorted(finished)  # one worker: accrued in arrival order


def test_bad_input_is_refused_at_once_and_nothing_is_written(svc: Any) -> None:
    h = svc.headers(OP)
    before = row_counts(svc.store)
    unknown_work = _batch(svc, "bad-1", ["bad-1"])
    unknown_work["outputs"][0]["work_scores"] = {"f" * 64: 1.0}
    r = svc.client.post("/api/v1/usage-batches", json=unknown_work, headers=h)
    assert r.status_code == 422 and "not in manifest" in r.json()["error"]["message"], r.text
    taken = svc.client.post("/api/v1/usage-batches", json=_batch(svc, "bad-2", ["o1"]), headers=h)
    assert taken.status_code == 409 and "o1 was already accrued in batch seed-1" in taken.text, taken.text
    no_agreement = _batch(svc, "bad-3", ["bad-3"]) | {"agreement_id": "nothing"}
    assert svc.client.post("/api/v1/usage-batches", json=no_agreement, headers=h).status_code == 404
    from test_usage_arrow import _header, _table

    good = _table(svc, "bad-4")
    data = write_usage_stream(_header("bad-4"), good)
    cut = svc.client.post("/api/v1/usage-batches", content=data[:-8], headers={**h, "Content-Type": ARROW_STREAM_TYPE})
    assert cut.status_code == 422, cut.text
    assert row_counts(svc.store) == before


def test_a_full_backlog_answers_429_with_retry_after_and_writes_nothing(svc: Any) -> None:
    app = create_app(svc.store, usage_intake_batches_max=2, usage_intake_bytes_max=64 << 20)
    h = svc.headers(OP)
    with TestClient(app) as client:
        for i in range(2):
            r = client.post("/api/v1/usage-batches", json=_batch(svc, f"full-{i}", [f"full-{i}"]), headers=h)
            assert r.status_code == 202, r.text
        before = row_counts(svc.store)
        full = client.post("/api/v1/usage-batches", json=_batch(svc, "full-2", ["full-2"]), headers=h)
        assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1, full.text
        assert full.json()["error"]["code"] == "busy" and row_counts(svc.store) == before
        same = client.post("/api/v1/usage-batches", json=_batch(svc, "full-1", ["full-1"]), headers=h)
        assert same.status_code == 202  # a batch already queued is not refused by the bound it counts in
        assert accrue_next(svc.store, app.state.accrue_json)
        later = client.post("/api/v1/usage-batches", json=_batch(svc, "full-2", ["full-2"]), headers=h)
        assert later.status_code == 202, later.text


def test_a_refusal_after_acceptance_is_reported_and_the_id_can_be_sent_again(svc: Any) -> None:
    """Two batches paying the same output both pass the checks while neither has accrued; the accrual
    refuses the second (an output is never paid twice): GET says refused, with the one-line error, and
    the operator may send the batch again under its id, fixed."""
    h = svc.headers(OP)
    for batch_id in ("r-1", "r-2"):
        r = svc.client.post("/api/v1/usage-batches", json=_batch(svc, batch_id, ["r-shared"]), headers=h)
        assert r.status_code == 202, r.text
    while accrue_next(svc.store, svc.client.app.state.accrue_json):
        pass
    assert _status(svc, "r-1")["state"] == "accrued"
    refused = _status(svc, "r-2")
    assert refused["state"] == "refused" and refused["error"]["code"] == "conflict"
    assert refused["error"]["message"] == "output r-shared was already accrued in batch r-1; it is never paid twice"
    waited = svc.client.post(
        "/api/v1/usage-batches", json=_batch(svc, "r-2", ["r-other"]), headers={**h, "Prefer": "wait=30"}
    )
    assert waited.status_code == 201 and waited.headers["preference-applied"] == "wait", waited.text
    assert waited.json()["state"] == "accrued" and _status(svc, "r-2") == waited.json()


def test_prefer_wait_is_read_as_rfc_7240_says() -> None:
    assert prefer_wait_s("") == 0 and prefer_wait_s("respond-async") == 0
    assert prefer_wait_s("wait=5") == 5 and prefer_wait_s("handling=strict, wait=10") == 10
    assert prefer_wait_s("wait") == prefer_wait_s("wait=100000") == 300


def test_on_sqlite_a_batch_is_acknowledged_while_the_ledger_writer_is_busy(svc: Any) -> None:
    """The intake is a database file of its own beside the ledger's: committing a batch (durable before its
    202) waits for no ledger writer, here one held open for the whole request."""
    if svc.store.backend != "sqlite":
        pytest.skip("PostgreSQL: the intake is a table beside the ledger's, written beside accruals")
    h = svc.headers(OP)
    with svc.store.write() as conn:  # the ledger's one writer, held
        conn.execute(usage_requests.select()).all()
        began = time.monotonic()
        r = svc.client.post("/api/v1/usage-batches", json=_batch(svc, "busy-1", ["busy-1"]), headers=h)
        assert r.status_code == 202 and time.monotonic() - began < 10, r.text
    assert intake_store(svc.store).engine.url.database != svc.store.engine.url.database
    assert accrue_next(svc.store, svc.client.app.state.accrue_json)
    assert _status(svc, "busy-1")["state"] == "accrued"


def test_on_sqlite_batches_left_in_the_ledgers_file_are_moved_to_the_intakes_and_accrued(svc: Any) -> None:
    """A store whose older endcredits kept the intake in the ledger's file: its batches (queued ones too)
    move into the intake's file when the intake is first opened, and are accrued from there."""
    if svc.store.backend != "sqlite":
        pytest.skip("PostgreSQL: the intake is a table of the ledger's database")
    body = json.dumps(_batch(svc, "old-1", ["old-1"])).encode()
    with svc.store.write() as conn:  # as an older endcredits left it: queued in the ledger's file
        conn.execute(
            usage_intake.insert().values(
                batch_id="old-1", request_sha256="0" * 64, content_type="application/json", body=body,
                body_bytes=len(body), state="queued", received_at=on_time(1, 5),
            )
        )  # fmt: skip
    reopened = init_store(svc.store.data_dir)
    try:
        with intake_store(reopened).read() as conn:
            assert [r.batch_id for r in conn.execute(usage_intake.select())] == ["old-1"]
        with reopened.read() as conn:
            assert conn.execute(usage_intake.select()).all() == []
        assert accrue_next(reopened, svc.client.app.state.accrue_json)
        with intake_store(reopened).read() as conn:
            assert conn.execute(usage_intake.select()).one().state == "accrued"
    finally:
        reopened.dispose()


def test_concurrent_acknowledgements_take_turns_at_the_intake_and_all_land(store: Any) -> None:
    """Eight threads enqueue at once (on SQLite they take turns on one lock per intake file before its write
    lock, and a claim's finish takes the same turn): every batch lands once, in an order of its own."""
    import threading

    from endcredits.ledger import intake

    got: list[int] = []
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            kept, new = intake.enqueue(
                store, f"turn-{i}", f"{i:064x}", "application/json", b"x" * 1000, retry_after_s=1
            )
            assert new
            got.append(kept.seq)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(got)) == 8
    with intake_store(store).read() as conn:
        assert backlog(conn).batches == 8
    with intake.claim(store) as taken:
        assert taken is not None
        taken.finish(intake.REFUSED, error_code="test", error_message="taken in turn")
    with intake_store(store).read() as conn:
        assert backlog(conn).batches == 7
    if store.backend == "sqlite":
        assert list(intake._turns.values()) and all(not turn.locked() for turn in intake._turns.values())
