"""Lines checked once: the request that acknowledges a usage batch builds its lines to check them and hands
them to its process's accrual worker (``ledger.intake.Handover``), which accrues them as they are; a worker
without them (after a restart, in another process) builds them again from the batch's durable body. Both
paths must write the same ledger to the microunit, for Arrow streams and JSON, per work and per payee; lines
built under terms replaced before the accrual are built again; the handover holds at most its bound."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pyarrow as pa
import pytest
from test_edges_agree import OUTPUTS, Side, _scores, two_stores  # noqa: F401 - two_stores is a fixture

from endcredits.ledger import intake
from endcredits.royalties import parse_agreement
from endcredits.royalties.records import save_agreement
from endcredits.royalties.usage_arrow import ARROW_STREAM_TYPE, USAGE_SCHEMA, UsageHeader, write_usage_stream
from endcredits.service import create_app
from endcredits.service.auth import create_api_key
from endcredits.service.ingest import accrue_claimed, accrue_next
from endcredits.store.engine import Store
from helpers_money import agreement_text, ledger_snapshot

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

REASON = "scored by the operator's own pipeline"


def _bodies(side: Side, per: str) -> list[tuple[str, bytes]]:
    """Three batches of OUTPUTS' scores under fresh output ids: two Arrow streams and one JSON body."""
    _, _, world = side
    out: list[tuple[str, bytes]] = []
    for n in range(3):
        rows = [(f"h{n}-{o}", r, t, _scores(world, per, s)) for o, r, t, s in OUTPUTS]
        if n == 2:
            outputs = [
                {"output_id": o, "model_id": "m", "revenue": f"{r // 10**8}.{r % 10**8:08d}", "currency": "EUR",
                 "occurred_at": t, f"{per}_scores": s}
                for o, r, t, s in rows
            ]  # fmt: skip
            body = {"batch_id": f"h-{n}", "agreement_id": "test-2026", "external": {"reason": REASON}}
            out.append(("application/json", json.dumps(body | {"outputs": outputs}).encode()))
            continue
        table = pa.table(
            {
                "output_id": [o for o, _, _, _ in rows],
                "model_id": ["m"] * len(rows),
                "revenue_microunits": pa.array([r for _, r, _, _ in rows], pa.int64()),
                "currency": ["EUR"] * len(rows),
                "occurred_at": [t for _, _, t, _ in rows],
                "score_keys": [list(s) for _, _, _, s in rows],
                "scores": [list(s.values()) for _, _, _, s in rows],
            },
            schema=USAGE_SCHEMA,
        )
        header = UsageHeader(f"h-{n}", "test-2026", None, None, REASON, per)
        out.append((ARROW_STREAM_TYPE, write_usage_stream(header, table)))
    return out


def _acknowledge(store: Store, bodies: list[tuple[str, bytes]]) -> Any:
    """Each body posted (202: queued, nothing accrued); the app, whose handover holds their lines."""
    with store.write() as conn:
        key = create_api_key(conn, role="operator", scopes=["ingest"], label="handover").key
    app = create_app(store)
    with TestClient(app) as client:
        for kind, data in bodies:
            r = client.post(
                "/api/v1/usage-batches", content=data, headers={"Authorization": f"Bearer {key}", "Content-Type": kind}
            )
            assert r.status_code == 202 and r.json()["state"] == "queued", r.text
    return app


def _answers(store: Store) -> list[dict[str, Any]]:
    from endcredits.service.ingest import usage_status

    return [usage_status(store, f"h-{n}") for n in range(3)]


@pytest.mark.parametrize("per", ["work", "payee"])
def test_lines_handed_over_and_lines_built_again_write_the_same_ledger(
    two_stores: tuple[Side, Side],  # noqa: F811 - the fixture imported above
    per: str,
) -> None:
    handed, rebuilt = two_stores
    app = _acknowledge(handed[0], _bodies(handed, per))
    handover: intake.Handover = app.state.usage_handover
    assert handover.lines() > 0
    for _ in range(3):  # the worker's path, each batch's own lines taken from the handover
        with intake.claim(handed[0]) as taken:
            assert taken is not None
            checked = handover.take(taken.batch, oldest=True)
            assert checked is not None and checked.batch_id == taken.batch.batch_id
            accrue_claimed(handed[0], taken, app.state.accrue_json, checked=checked)
    assert handover.lines() == 0
    other = _acknowledge(rebuilt[0], _bodies(rebuilt, per))
    while accrue_next(rebuilt[0], other.state.accrue_json):  # no handover: as after a restart
        pass
    answers = _answers(handed[0])
    assert [a["state"] for a in answers] == ["accrued"] * 3 and all(a["status"] == "created" for a in answers)
    assert answers == _answers(rebuilt[0]) and answers[0]["pool_microunits"] > 0
    assert ledger_snapshot(handed[0]) == ledger_snapshot(rebuilt[0])


def test_lines_checked_under_replaced_terms_are_built_again(
    two_stores: tuple[Side, Side],  # noqa: F811 - the fixture imported above
) -> None:
    """A new version of the agreement saved between a batch's acknowledgement and its accrual: the worker
    lets the lines checked under the old terms go and accrues under the new ones, as a rebuilt batch does."""
    handed, rebuilt = two_stores
    newer = parse_agreement(agreement_text(pool_rate="0.41", payout_threshold="0.01", baseline_share="0.2", version=2))
    app = _acknowledge(handed[0], _bodies(handed, "work"))
    other = _acknowledge(rebuilt[0], _bodies(rebuilt, "work"))
    for store in (handed[0], rebuilt[0]):
        with store.write() as conn:
            save_agreement(conn, newer.id, newer.version, newer.body, newer.body_sha256)
    with handed[0].read() as conn:
        kept = _kept(app.state.usage_handover)
        assert kept and not any(c.current(conn) for c in kept)
    while accrue_next(handed[0], app.state.accrue_json, app.state.usage_handover):
        pass
    while accrue_next(rebuilt[0], other.state.accrue_json):
        pass
    assert app.state.usage_handover.lines() == 0
    assert _answers(handed[0]) == _answers(rebuilt[0])
    assert ledger_snapshot(handed[0]) == ledger_snapshot(rebuilt[0])


def _kept(handover: intake.Handover) -> list[intake.CheckedBatch]:
    return [checked for _, checked in handover._kept.values()]


def test_the_handover_keeps_at_most_its_bound_and_lets_go_of_batches_taken_elsewhere(
    two_stores: tuple[Side, Side],  # noqa: F811 - the fixture imported above
) -> None:
    side = two_stores[0]
    app = _acknowledge(side[0], _bodies(side, "work"))
    full: intake.Handover = app.state.usage_handover
    held = _kept(full)
    lines = [len(c.usage.payee_codes) for c in held]
    assert len(held) == 3 and full.lines() == sum(lines)
    with intake.intake_store(side[0]).read() as conn:
        rows = conn.execute(intake.usage_intake.select().order_by(intake.usage_intake.c.seq)).all()
    batches = [intake.IntakeBatch(r.seq, r.batch_id, r.request_sha256, r.content_type, b"", r.state) for r in rows]
    small = intake.Handover(lines_max=lines[0] + lines[1])
    assert [small.put(b, c) for b, c in zip(batches, held, strict=True)] == [True, True, False]
    assert small.put(batches[0], held[0]) is False  # kept once
    assert small.take(batches[2], oldest=False) is None  # never kept: built again from its body
    assert small.take(batches[1], oldest=True) is held[1]  # and the batch before it was taken elsewhere
    assert small.lines() == 0 and small.take(batches[0]) is None
