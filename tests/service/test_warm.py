"""``serve``'s warm-up (``service.warm``): the usage check run once on a synthetic batch, rolled back; nothing
written to the ledger or the intake, on SQLite and PostgreSQL; the service answers as before afterwards."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import select, text

from endcredits.ledger.intake import INTAKE_FILE, CheckedBatch
from endcredits.service import server, warm
from endcredits.store.engine import Store
from endcredits.store.schema import agreements, audit_log, models
from helpers_money import on_time, row_counts


def _state(store: Store) -> dict[str, Any]:
    """Everything the warm-up could touch: every table's rows, the agreements and models, the audit chain's
    newest entry, and on PostgreSQL every sequence of the schema (a rolled-back insert would still move one)."""
    with store.read() as conn:
        state: dict[str, Any] = {
            "rows": row_counts(store),
            "agreements": sorted(conn.execute(select(agreements.c.id)).scalars()),
            "models": sorted(conn.execute(select(models.c.id)).scalars()),
            "audit": conn.execute(select(audit_log).order_by(audit_log.c.seq.desc()).limit(1)).all(),
        }
        if store.backend == "postgresql":
            state["sequences"] = conn.execute(
                text("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = current_schema() ORDER BY 1")
            ).all()
    return state


def test_warm_up_writes_nothing_and_the_service_answers_after_it(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[int] = []
    check = CheckedBatch.check

    def counted(self: CheckedBatch, store: Store) -> Any:
        checked.append(len(self.usage.payee_codes))
        return check(self, store)

    monkeypatch.setattr(CheckedBatch, "check", counted)
    before = _state(svc.store)
    took_s = warm.warm_up(svc.store, freeze=False)
    assert checked == [8, 8]  # the Arrow and the JSON batch, 4 outputs x 2 payees, built and checked
    took_again_s = warm.warm_up(svc.store, freeze=False)
    assert _state(svc.store) == before
    assert took_s > 0 and took_again_s > 0
    if svc.store.backend == "sqlite":
        assert (svc.store.data_dir / INTAKE_FILE).exists()  # opened, ready for the first batch
    batch = {
        "batch_id": "after-warm-up",
        "agreement_id": "test-2026",
        "external": {"reason": "the operator's own scores"},
        "outputs": [
            {
                "output_id": "warm-o1",
                "model_id": "m",
                "revenue": "12.34",
                "currency": "EUR",
                "occurred_at": on_time(1, 5),
                "work_scores": {svc.world.song: 0.7, svc.world.film: 0.3},
            }
        ],
    }
    r = svc.client.post("/api/v1/usage-batches", json=batch, headers=svc.headers("op_all"))
    assert r.status_code == 202, r.text
    done = svc.client.post("/api/v1/usage-batches", json=batch, headers={**svc.headers("op_all"), "Prefer": "wait"})
    assert done.status_code in (200, 201), done.text


def test_warm_up_works_on_an_empty_store(store: Store) -> None:
    before = _state(store)
    warm.warm_up(store, freeze=False)
    assert _state(store) == before


def test_a_failed_warm_up_is_logged_and_serve_goes_on(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_store: Store, **_: object) -> float:
        raise RuntimeError("no warm-up today")

    monkeypatch.setattr(warm, "warm_up", broken)
    with caplog.at_level(logging.WARNING, logger="endcredits.service"):
        server.warm(store)
    assert "warming up failed" in caplog.text
