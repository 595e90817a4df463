"""Usage batches as Arrow IPC streams and Parquet over HTTP: the same answer as JSON, idempotent by batch
id, every kind of bad stream refused in one line with nothing written (admission and 429: test_admission)."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from endcredits.royalties import usage_arrow
from endcredits.royalties.usage_arrow import (
    ARROW_STREAM_TYPE,
    PARQUET_TYPE,
    USAGE_SCHEMA,
    UsageHeader,
    write_usage_stream,
)
from endcredits.store.schema import usage_requests
from helpers_money import on_time, row_counts

OP = "op_all"
REASON = "the operator's own scores"


def _table(svc: Any, prefix: str, rows: int = 2, model: str = "m") -> pa.Table:
    w = svc.world
    return pa.table(
        {
            "output_id": [f"{prefix}-{i}" for i in range(rows)],
            "model_id": [model if i == 0 else "m" for i in range(rows)],
            "revenue_microunits": pa.array([1_234_000_000 + i for i in range(rows)], pa.int64()),
            "currency": ["EUR"] * rows,
            "occurred_at": [on_time(1, 5)] * rows,
            "score_keys": [[w.song, w.film]] * rows,
            "scores": [[0.7, 0.3]] * rows,
        },
        schema=USAGE_SCHEMA,
    )


def _header(batch_id: str, per: str = "work") -> UsageHeader:
    return UsageHeader(batch_id, "test-2026", None, None, REASON, per)


def _post(svc: Any, data: bytes, kind: str = ARROW_STREAM_TYPE) -> Any:
    return svc.client.post(
        "/api/v1/usage-batches", content=data, headers={**svc.headers(OP), "Content-Type": kind, "Prefer": "wait"}
    )


def _json_batch(svc: Any, prefix: str, rows: int = 2) -> dict[str, Any]:
    w = svc.world
    outputs = [
        {
            "output_id": f"{prefix}-{i}",
            "model_id": "m",
            "revenue": f"12.34{i:06d}",
            "currency": "EUR",
            "occurred_at": on_time(1, 5),
            "work_scores": {w.song: 0.7, w.film: 0.3},
        }
        for i in range(rows)
    ]
    return {"batch_id": prefix, "agreement_id": "test-2026", "external": {"reason": REASON}, "outputs": outputs}


def test_an_arrow_batch_accrues_as_its_json_twin_and_is_idempotent(svc: Any) -> None:
    as_json = svc.client.post(
        "/api/v1/usage-batches", json=_json_batch(svc, "j"), headers={**svc.headers(OP), "Prefer": "wait"}
    )
    assert as_json.status_code == 201, as_json.text
    data = write_usage_stream(_header("a"), _table(svc, "a"))
    first = _post(svc, data)
    assert first.status_code == 201, first.text
    same = ("outputs", "lines", "revenue_microunits", "pool_microunits")  # carries differ: the JSON one went first
    assert {k: first.json()[k] for k in same} == {k: as_json.json()[k] for k in same}
    assert first.json()["request_sha256"] == hashlib.sha256(data).hexdigest()
    before = row_counts(svc.store)
    again = _post(svc, data)
    assert (again.status_code, again.json()) == (200, first.json())
    assert row_counts(svc.store) == before
    landed = svc.client.get("/api/v1/usage-batches/a", headers=svc.headers("auditor"))
    assert landed.json() == first.json() and landed.json()["pool"] == first.json()["pool"]
    other = _post(svc, write_usage_stream(_header("a"), _table(svc, "a2")))
    assert other.status_code == 409 and row_counts(svc.store) == before


def test_a_parquet_batch_is_accepted(svc: Any) -> None:
    table = _table(svc, "pq").replace_schema_metadata(
        {"endcredits.usage.schema_version": "1", "endcredits.batch_id": "pq", "endcredits.agreement_id": "test-2026",
         "endcredits.external_reason": REASON, "endcredits.per": "work"}
    )  # fmt: skip
    sink = io.BytesIO()
    pq.write_table(table, sink)
    r = _post(svc, sink.getvalue(), PARQUET_TYPE)
    assert r.status_code == 201 and r.json()["outputs"] == 2, r.text


def _cut(data: bytes) -> bytes:
    return data[: len(data) - 8]  # the end-of-stream marker: the stream ends at a batch boundary


def _stream_cases(svc: Any) -> list[tuple[str, bytes, int, str]]:
    good = _table(svc, "bad")
    text_revenue = good.set_column(2, "revenue_microunits", pa.array(["1", "2"]))
    unknown_work = good.set_column(5, "score_keys", pa.array([["f" * 64, "e" * 64]] * 2))
    version = good.replace_schema_metadata({"endcredits.usage.schema_version": "9"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, version.schema) as writer:
        writer.write_table(version)
    return [
        ("missing column", write_usage_stream(_header("b1"), good.drop_columns(["currency"])), 422, "lacks column"),
        ("mistyped column", write_usage_stream(_header("b2"), text_revenue), 422, "is string, not int64"),
        ("truncated at a boundary", _cut(write_usage_stream(_header("b3"), good)), 422, "truncated"),
        ("truncated inside", write_usage_stream(_header("b4"), good)[:300], 422, "truncated"),
        ("unknown version", sink.getvalue().to_pybytes(), 422, "version '9' is unknown"),
        ("mixed models", write_usage_stream(_header("b5"), _table(svc, "mix", model="other")), 422, "mixes 2"),
        ("unknown work", write_usage_stream(_header("b6"), unknown_work), 422, "not in manifest"),
    ]  # fmt: skip


def test_bad_streams_are_refused_with_nothing_written(svc: Any) -> None:
    before = row_counts(svc.store)
    for name, data, status, message in _stream_cases(svc):
        r = _post(svc, data)
        assert r.status_code == status, (name, r.text)
        assert message in r.json()["error"]["message"], (name, r.text)
        assert row_counts(svc.store) == before, name


def test_a_stream_past_the_output_limit_says_the_limit(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage_arrow, "OUTPUTS_PER_BATCH_MAX", 2)
    before = row_counts(svc.store)
    r = _post(svc, write_usage_stream(_header("big"), _table(svc, "big", rows=3)))
    assert r.status_code == 413 and "OUTPUTS_PER_BATCH_MAX=2" in r.json()["error"]["message"], r.text
    assert row_counts(svc.store) == before


def test_the_openapi_document_describes_every_form_of_a_usage_batch(svc: Any) -> None:
    doc = svc.client.get("/openapi.json").json()
    body = doc["paths"]["/api/v1/usage-batches"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", ARROW_STREAM_TYPE, PARQUET_TYPE}
    assert "outputs" in doc["components"]["schemas"]["UsageBatchIn"]["properties"]
    post = doc["paths"]["/api/v1/usage-batches"]["post"]
    assert {"200", "201", "202", "429"} <= set(post["responses"])
    assert "Location" in post["responses"]["202"]["headers"]
    assert [p["name"] for p in post["parameters"]] == ["Prefer"]  # the synchronous answer, on request


def test_a_batch_whose_answer_was_lost_is_found_in_the_ledger(svc: Any) -> None:
    posted = svc.client.post(
        "/api/v1/usage-batches", json=_json_batch(svc, "lost"), headers={**svc.headers(OP), "Prefer": "wait"}
    )
    assert posted.status_code == 201, posted.text
    with svc.store.write() as conn:  # the process died after the batch committed, before its answer was kept
        conn.execute(usage_requests.delete().where(usage_requests.c.batch_id == "lost"))
    landed = svc.client.get("/api/v1/usage-batches/lost", headers=svc.headers("auditor"))
    assert landed.status_code == 200, landed.text
    body = landed.json()
    assert (body["status"], body["request_sha256"], body["attribution_run_id"]) == ("exists", None, None)
    same = ("batch_id", "outputs", "lines", "revenue_microunits", "pool_microunits", "transfers", "external_reason")
    assert {k: body[k] for k in same} == {k: posted.json()[k] for k in same}
    assert svc.client.get("/api/v1/usage-batches/never", headers=svc.headers("auditor")).status_code == 404
