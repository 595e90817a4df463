"""Usage batches as Arrow: an Arrow IPC stream or a Parquet file, one row per output, read into
``UsageColumns`` without a Python object per score.

Schema version 1 (``USAGE_SCHEMA``; documented in docs/concepts/service.md): the columns ``output_id``,
``model_id``, ``currency``, ``occurred_at`` (text), ``revenue_microunits`` (int64), and for external scores
``score_keys`` (list of text: work ids, or payees ``person:N``/``name:N``) with ``scores`` (list of
float64, one per key). The batch itself is named in the schema's metadata (``endcredits.*`` keys, the
version under ``endcredits.usage.schema_version``). Anything else is refused in one line before a row
is used: a missing, extra, mistyped or null column, a stream cut short (its end-of-stream marker is
required), an unknown version, more outputs or scores than the limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from endcredits.errors import LimitExceededError, ValidationError
from endcredits.limits import BATCH_SIZE_MAX, OUTPUTS_PER_BATCH_MAX
from endcredits.royalties.usage_columns import UsageColumns

ARROW_STREAM_TYPE = "application/vnd.apache.arrow.stream"
PARQUET_TYPE = "application/vnd.apache.parquet"
USAGE_SCHEMA_VERSION = "1"
VERSION_KEY = "endcredits.usage.schema_version"
HEADER_KEYS = ("batch_id", "agreement_id", "manifest_id", "attribution_run_id", "external_reason", "per")
"""The batch's fields, each under ``endcredits.NAME`` in the schema metadata (UTF-8 text)."""

OUTPUT_COLUMNS = {
    "output_id": pa.string(),
    "model_id": pa.string(),
    "revenue_microunits": pa.int64(),
    "currency": pa.string(),
    "occurred_at": pa.string(),
}
SCORE_COLUMNS = {"score_keys": pa.list_(pa.string()), "scores": pa.list_(pa.float64())}
USAGE_SCHEMA = pa.schema(
    [pa.field(n, t, nullable=False) for n, t in {**OUTPUT_COLUMNS, **SCORE_COLUMNS}.items()],
    metadata={VERSION_KEY: USAGE_SCHEMA_VERSION},
)
"""Version 1, with score columns (a batch of a recorded attribution run leaves them out)."""

EOS_MARKER = b"\xff\xff\xff\xff\x00\x00\x00\x00"
PAYEE_PATTERN = re.compile(r"(person|name):[1-9][0-9]{0,9}")


@dataclass(frozen=True)
class UsageHeader:
    """What the schema metadata says about the batch (as ``UsageBatchIn`` says it in JSON)."""

    batch_id: str
    agreement_id: str
    manifest_id: str | None
    attribution_run_id: str | None
    external_reason: str | None
    per: str | None


def _read_table(data: bytes, content_type: str) -> pa.Table:
    """The table in ``data``, read batch by batch so that a compressed body cannot grow past the limits."""
    try:
        if content_type == PARQUET_TYPE:
            parquet = pq.ParquetFile(pa.BufferReader(data))
            _check_rows(parquet.metadata.num_rows)
            return parquet.read()
        if content_type != ARROW_STREAM_TYPE:
            raise ValidationError(f"usage batches come as application/json, {ARROW_STREAM_TYPE} or {PARQUET_TYPE}")
        if not data.endswith(EOS_MARKER):
            raise ValidationError("the Arrow stream is truncated: it ends without its end-of-stream marker")
        reader = pa.ipc.open_stream(pa.py_buffer(data))
        _check_schema(reader.schema)
        batches, rows = [], 0
        for batch in reader:
            rows += batch.num_rows
            _check_rows(rows)
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except (pa.ArrowException, OSError) as exc:
        what = "Parquet file" if content_type == PARQUET_TYPE else "Arrow stream"
        raise ValidationError(f"the {what} is truncated or malformed: {str(exc)[:200]}") from None


def _check_rows(rows: int) -> None:
    if rows > OUTPUTS_PER_BATCH_MAX:
        raise LimitExceededError(
            f"usage batch of {rows} or more outputs exceeds OUTPUTS_PER_BATCH_MAX={OUTPUTS_PER_BATCH_MAX}: split it"
        )


def _check_schema(schema: pa.Schema) -> None:
    """Version, then every column by name and type (a list of text or float64 for the scores)."""
    meta = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in (schema.metadata or {}).items()}
    version = meta.get(VERSION_KEY)
    if version != USAGE_SCHEMA_VERSION:
        shown = "none" if version is None else repr(version[:20])
        raise ValidationError(
            f"usage schema version {shown} is unknown: this endcredits reads version {USAGE_SCHEMA_VERSION} "
            f"(schema metadata {VERSION_KEY})"
        )
    scored = "score_keys" in schema.names or "scores" in schema.names
    wanted = {**OUTPUT_COLUMNS, **(SCORE_COLUMNS if scored else {})}
    extra = [n for n in schema.names if n not in wanted]
    if extra:
        raise ValidationError(f"usage stream has an unknown column {extra[0][:60]!r}: the columns are {list(wanted)}")
    for name, kind in wanted.items():
        if name not in schema.names:
            raise ValidationError(f"usage stream lacks column {name!r} ({kind})")
        got = schema.field(name).type
        if _plain(got) != kind:
            raise ValidationError(f"usage stream column {name!r} is {got}, not {kind}")


def _plain(kind: pa.DataType) -> pa.DataType:
    """A type with large offsets read as its plain form (large_string is string, large_list is list)."""
    if pa.types.is_large_string(kind):
        return pa.string()
    if pa.types.is_large_list(kind) or pa.types.is_list(kind):
        return pa.list_(_plain(kind.value_type))
    return kind


def _header(schema: pa.Schema) -> UsageHeader:
    meta = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in (schema.metadata or {}).items()}
    got = {k: meta.get(f"endcredits.{k}") for k in HEADER_KEYS}
    for name in ("batch_id", "agreement_id"):
        if not got[name]:
            raise ValidationError(f"usage stream metadata lacks endcredits.{name}")
    if (got["attribution_run_id"] is None) == (got["external_reason"] is None):
        raise ValidationError(
            "usage stream metadata gives endcredits.attribution_run_id (a recorded run) or "
            "endcredits.external_reason (the outputs' own scores): exactly one"
        )
    scored = "scores" in schema.names
    if got["attribution_run_id"] is not None and scored:
        raise ValidationError("a recorded attribution run brings its own scores: send no score_keys or scores")
    if got["external_reason"] is not None and (not scored or got["per"] not in ("work", "payee")):
        raise ValidationError("external scores need score_keys, scores and endcredits.per = work or payee")
    return UsageHeader(**got)  # type: ignore[arg-type]


def read_usage_stream(data: bytes, content_type: str) -> tuple[UsageHeader, UsageColumns]:
    """The batch in an Arrow IPC stream or a Parquet file (``content_type``): its header and columns."""
    return usage_of_table(_read_table(data, content_type))


def usage_of_table(table: pa.Table) -> tuple[UsageHeader, UsageColumns]:
    """The header and columns of a usage table already in memory (the columns of ``USAGE_SCHEMA`` and the
    header in its schema metadata, as ``write_usage_stream`` puts it): what a stream gives once read, checked
    the same way, for a producer in this process (the attribution worker) that sends no bytes."""
    _check_rows(table.num_rows)
    _check_schema(table.schema)
    header = _header(table.schema)
    table = table.combine_chunks()
    for name in table.column_names:
        column = table.column(name)
        nulls = column.null_count + (pc.list_flatten(column).null_count if name in SCORE_COLUMNS else 0)
        if nulls:
            raise ValidationError(f"usage stream column {name!r} has {nulls} null values")
    texts = {n: table.column(n).to_pylist() for n in ("output_id", "model_id", "currency", "occurred_at")}
    revenue = table.column("revenue_microunits").to_numpy().tolist()
    if "scores" not in table.column_names:
        offsets = np.zeros(table.num_rows + 1, dtype=np.int64)
        return header, UsageColumns(
            texts["output_id"], texts["model_id"], revenue, texts["currency"], texts["occurred_at"],
            offsets, [], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64),
        )  # fmt: skip
    keys, scores = table.column("score_keys"), table.column("scores")
    counts = pc.list_value_length(keys).to_numpy(zero_copy_only=False).astype(np.int64)
    if not np.array_equal(counts, pc.list_value_length(scores).to_numpy(zero_copy_only=False)):
        raise ValidationError("usage stream gives each output as many scores as score_keys: they differ")
    if int(counts.sum()) > BATCH_SIZE_MAX:
        raise LimitExceededError(f"usage batch of {int(counts.sum())} scores exceeds BATCH_SIZE_MAX={BATCH_SIZE_MAX}")
    coded = pc.dictionary_encode(pc.list_flatten(keys)).combine_chunks()
    dictionary = coded.dictionary.to_pylist()
    if header.per == "payee":
        bad = next((k for k in dictionary if not PAYEE_PATTERN.fullmatch(k)), None)
        if bad is not None:
            raise ValidationError(f"payee {bad[:60]!r} must be person:N or name:N")
    return header, UsageColumns(
        texts["output_id"], texts["model_id"], revenue, texts["currency"], texts["occurred_at"],
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        dictionary,
        coded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        pc.list_flatten(scores).to_numpy(zero_copy_only=False).astype(np.float64),
    )  # fmt: skip


def with_header(header: UsageHeader, table: pa.Table) -> pa.Table:
    """``table`` (the columns of ``USAGE_SCHEMA``) with ``header`` and the schema version in its metadata."""
    meta = {VERSION_KEY: USAGE_SCHEMA_VERSION}
    meta |= {f"endcredits.{k}": v for k in HEADER_KEYS if (v := getattr(header, k)) is not None}
    return table.replace_schema_metadata(meta)


def payee_stream_of_json(batch: Mapping[str, Any]) -> bytes:
    """A per-payee batch as ``POST /api/v1/usage-batches`` takes it in JSON (external scores, outputs with
    ``payee_scores``) as the Arrow IPC stream a client would send instead (the warm-up and the benchmark)."""
    from endcredits.money import parse_amount

    outs = batch["outputs"]
    table = pa.table(
        {
            "output_id": [o["output_id"] for o in outs],
            "model_id": [o["model_id"] for o in outs],
            "revenue_microunits": pa.array([parse_amount(o["revenue"], o["currency"]) for o in outs], pa.int64()),
            "currency": [o["currency"] for o in outs],
            "occurred_at": [o["occurred_at"] for o in outs],
            "score_keys": [list(o["payee_scores"]) for o in outs],
            "scores": [list(o["payee_scores"].values()) for o in outs],
        },
        schema=USAGE_SCHEMA,
    )
    reason = batch["external"]["reason"]
    return write_usage_stream(UsageHeader(batch["batch_id"], batch["agreement_id"], None, None, reason, "payee"), table)


def write_usage_stream(header: UsageHeader, table: pa.Table) -> bytes:
    """``table`` (the columns of ``USAGE_SCHEMA``) as an Arrow IPC stream with ``header`` in its metadata:
    what a client sends (used by the tests and the benchmark)."""
    table = with_header(header, table)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())
