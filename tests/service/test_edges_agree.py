"""One usage batch through the CLI (`endcredits accrue`) and through the API (`POST /api/v1/usage-batches`)
gives the same ledger, byte for byte: both edges call ``ledger.accrue.accrue_scored``.

Each case builds the same world in two fresh stores on one backend, sends the batch through one edge into
each, and compares everything a replay must reproduce (balances, transfers and their legs, carries,
outputs, accrual records with their scores source, evidence lines). The per-payee case under a baseline
share is the one the two edges used to disagree on: the API refused it even with ``manifest_id``; both
accept it now. The scores come marked external, or from a recorded attribution run (``--run`` and
``attribution_run_id``), the same run recorded in each store.
"""

from __future__ import annotations

import csv
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.money import format_amount
from endcredits.royalties import parse_agreement
from endcredits.royalties.records import save_agreement
from endcredits.service import create_app
from endcredits.service.auth import create_api_key
from endcredits.store.engine import Store, init_store
from helpers_money import World, agreement_text, ledger_snapshot, on_time, record_scores_run

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TEXT = agreement_text(pool_rate="0.37", payout_threshold="0.01", baseline_share="0.1")
REASON = "scored by the operator's own pipeline"


Side = tuple[Store, str | None, World]
"""A store, its database URL (None: SQLite in its data directory) and the world built in it."""


@pytest.fixture
def two_stores(backend: str, tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    """Two fresh stores on the backend, each with the same world and agreement."""
    schemas = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)] if backend == "postgresql" else []
    admin = create_engine(PG_ADMIN_URL) if schemas else None
    urls: list[str | None] = [None, None]
    if admin is not None:
        with admin.begin() as conn:
            for s in schemas:
                conn.execute(text(f"CREATE SCHEMA {s}"))
        urls = [f"{PG_ADMIN_URL}?options=-csearch_path%3D{s}" for s in schemas]
    stores = [init_store(tmp_path / name, url) for name, url in zip(("cli", "api"), urls, strict=True)]
    try:
        worlds = [World(s) for s in stores]
        a = parse_agreement(TEXT)
        for s in stores:
            with s.write() as conn:
                save_agreement(conn, a.id, a.version, a.body, a.body_sha256)
        yield (stores[0], urls[0], worlds[0]), (stores[1], urls[1], worlds[1])
    finally:
        for s in stores:
            s.dispose()
        if admin is not None:
            with admin.begin() as conn:
                for s in schemas:
                    conn.execute(text(f"DROP SCHEMA {s} CASCADE"))
            admin.dispose()


OUTPUTS = [  # id, revenue (microunits), time, scores per work (by name in the world) or per payee
    ("o1", 123_456_789, on_time(1, 5), {"song": 0.7, "film": 0.2, "orphan": 0.1}),
    ("o2", 98_765_431, on_time(2, 9), {"song": 0.05, "film": 1.5}),
    ("o3", 7, on_time(2, 28), {"orphan": 3.0}),
]


def _scores(world: World, per: str, scores: dict[str, float]) -> dict[str, float]:
    if per == "work":
        return {getattr(world, k): v for k, v in scores.items()}
    payee = {"song": f"person:{world.alice}", "film": f"person:{world.dan}", "orphan": f"name:{world.bob}"}
    return {payee[k]: v for k, v in scores.items()}


def _run_of(side: Side, per: str) -> str:
    """The run that scored OUTPUTS, recorded in this side's store (per payee: under the agreement)."""
    store, _, world = side
    scores = {o: _scores(world, per, s) for o, _, _, s in OUTPUTS}
    terms = "test-2026@1" if per == "payee" else None
    return str(record_scores_run(store, world.manifest, scores, per=per, payee_agreement=terms).id)


def _through_cli(side: Side, tmp_path: Path, per: str, with_manifest: bool, from_run: bool) -> dict[str, Any]:
    store, url, world = side
    outputs, attributions = tmp_path / "outputs.csv", tmp_path / "attributions.csv"
    with outputs.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["output_id", "model_id", "revenue", "currency", "occurred_at"])
        w.writerows([o, "m", format_amount(r, "EUR"), "EUR", t] for o, r, t, _ in OUTPUTS)
    with attributions.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["output_id", "work_id" if per == "work" else "payee", "score"])
        w.writerows([o, k, repr(v)] for o, _, _, s in OUTPUTS for k, v in _scores(world, per, s).items())
    where = ["--data", str(store.data_dir)] + (["--db", url] if url else [])
    scores = ["--run", _run_of(side, per)] if from_run else ["--attributions", str(attributions), "--external", REASON]
    args = ["accrue", "--outputs", str(outputs), *scores, "--agreement", "test-2026"]
    args += ["--batch-id", "b-1", "--json"] + (["--manifest", world.manifest.id] if with_manifest else [])
    result = CliRunner().invoke(app, where + args)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def _through_api(side: Side, per: str, with_manifest: bool, from_run: bool, wait: bool = True) -> dict[str, Any]:
    """The batch through ``POST /usage-batches``: answered once accrued (``Prefer: wait``), or acknowledged
    (202) and accrued by the service's accrual worker, its answer then read from ``GET``."""
    store, _, world = side
    with store.write() as conn:
        key = create_api_key(conn, role="operator", scopes=["ingest"], label="edges").key
    body: dict[str, Any] = {
        "batch_id": "b-1",
        "agreement_id": "test-2026",
        "outputs": [
            {
                "output_id": o,
                "model_id": "m",
                "revenue": format_amount(r, "EUR"),
                "currency": "EUR",
                "occurred_at": t,
                **({} if from_run else {f"{per}_scores": _scores(world, per, s)}),
            }
            for o, r, t, s in OUTPUTS
        ],
    }
    body |= {"attribution_run_id": _run_of(side, per)} if from_run else {"external": {"reason": REASON}}
    if with_manifest:
        body["manifest_id"] = world.manifest.id
    auth = {"Authorization": f"Bearer {key}"}
    app = create_app(store)
    with TestClient(app) as client:
        if wait:
            r = client.post("/api/v1/usage-batches", json=body, headers={**auth, "Prefer": "wait"})
            assert r.status_code == 201, r.text
            return dict(r.json())
        r = client.post("/api/v1/usage-batches", json=body, headers=auth)
        assert r.status_code == 202 and r.json()["state"] == "queued", r.text
        app.state.accrual_worker.start()
        try:
            deadline = time.monotonic() + 60
            while (answer := client.get(r.headers["location"], headers=auth).json())["state"] == "queued":
                assert time.monotonic() < deadline, "not accrued within 60 s"
                time.sleep(0.05)
        finally:
            app.state.accrual_worker.stop()
    assert answer["state"] == "accrued", answer
    return dict(answer)


@pytest.mark.parametrize(
    ("per", "with_manifest", "from_run"),
    [
        ("work", False, False),
        ("work", True, False),
        ("payee", False, False),
        ("payee", True, False),
        ("work", False, True),
        ("payee", True, True),
    ],
    ids=[
        "per-work",
        "per-work-named-manifest",
        "per-payee-baseline",
        "per-payee-baseline-named-manifest",
        "run-per-work",
        "run-per-payee-baseline-named-manifest",
    ],
)
def test_the_cli_and_the_api_write_the_same_ledger(
    two_stores: tuple[Side, Side], tmp_path: Path, per: str, with_manifest: bool, from_run: bool
) -> None:
    by_cli = _through_cli(two_stores[0], tmp_path, per, with_manifest, from_run)
    by_api = _through_api(two_stores[1], per, with_manifest, from_run)
    assert by_cli["status"] == by_api["status"] == "created"
    shared = {k: v for k, v in by_api.items() if k in by_cli}
    assert by_cli == shared  # the API adds formatted amounts beside the microunits
    assert by_cli["pool_microunits"] > 0 and by_cli["lines"] > 0
    assert (by_cli["attribution_run_id"] is not None) == from_run
    assert by_cli["external_reason"] == (None if from_run else REASON)
    assert ledger_snapshot(two_stores[0][0]) == ledger_snapshot(two_stores[1][0])
    assert _sources(two_stores[0][0]) == _sources(two_stores[1][0])


def _sources(store: Store) -> list[tuple[str, str | None, str | None]]:
    from sqlalchemy import select

    from endcredits.store.schema import accrual_batches

    with store.read() as conn:
        rows = conn.execute(select(accrual_batches).order_by(accrual_batches.c.event_id)).all()
    return [(r.event_id, r.scores_run_id, r.scores_external_reason) for r in rows]


@pytest.mark.parametrize(("per", "from_run"), [("work", False), ("payee", True)], ids=["per-work", "run-per-payee"])
def test_a_batch_acknowledged_then_accrued_writes_the_ledger_of_the_synchronous_answer(
    two_stores: tuple[Side, Side], per: str, from_run: bool
) -> None:
    waited = _through_api(two_stores[0], per, True, from_run, wait=True)
    queued = _through_api(two_stores[1], per, True, from_run, wait=False)
    assert waited.pop("state") == queued.pop("state") == "accrued"
    assert waited == queued and waited["status"] == "created" and waited["pool_microunits"] > 0
    assert ledger_snapshot(two_stores[0][0]) == ledger_snapshot(two_stores[1][0])
    assert _sources(two_stores[0][0]) == _sources(two_stores[1][0])
