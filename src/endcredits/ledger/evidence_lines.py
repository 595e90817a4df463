"""Evidence lines on demand: the per-work lines of an accrual group whose evidence is kept per payee.

Such a group (paid on a recorded attribution run, per work) keeps each output's pool, each payee's exact
total over the group (files written before: each output's exact part per payee) and the credit shares of
every work it paid (``ledger.evidence.PAYEE_EVIDENCE_SCHEMA``). Its lines are a function of
what is recorded: the run's scores (its file, checked against its SHA-256), the run's manifest, the stored
agreement version and those shares; ``build_usage_columns`` turns them into lines (integer arrays, exactly
the lines ``build_usage`` makes, without its Fraction per line) and ``accrue.line_table`` splits each
output's pool as accrual did. Groups kept line by line are read as they are. ``verify`` re-derives
every group and checks the lines against the rows kept, to the subunit.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, select

from endcredits.attribution.records import AttributionRun, RunScores, load_run, read_run_scores
from endcredits.errors import EvidenceError, NotFoundError
from endcredits.ledger.accrue import line_table
from endcredits.ledger.evidence import (
    EVIDENCE_SCHEMA,
    kept_per_batch,
    kept_per_payee,
    output_rows,
    payee_rows,
    read_evidence,
    share_rows,
)
from endcredits.manifest.records import ManifestRecord, load_manifest
from endcredits.royalties import Agreement
from endcredits.royalties.records import load_agreement
from endcredits.royalties.shares import PayeeShare
from endcredits.royalties.usage import OutputIn
from endcredits.royalties.usage_columns import UsageColumns, build_usage_columns
from endcredits.store.engine import Store
from endcredits.store.schema import accrual_batches


@dataclass
class LineSource:
    """Re-derives groups' lines within one read transaction, reading each run, scores file, manifest and
    agreement once however many groups name it."""

    store: Store
    conn: Connection
    _runs: dict[str, tuple[AttributionRun, RunScores, ManifestRecord]] = field(default_factory=dict)
    _agreements: dict[tuple[str, int], Agreement] = field(default_factory=dict)

    def lines(self, group: Any, table: pa.Table, output_ids: Collection[str] | None = None) -> pa.Table:
        """The lines (``EVIDENCE_SCHEMA``) of ``group`` (its ``accrual_batches`` row) whose evidence file is
        ``table``, for ``output_ids`` (every output when None)."""
        if not kept_per_payee(table):
            if output_ids is None:
                return table
            return table.filter(pc.is_in(table["output_id"].cast(pa.string()), pa.array(list(output_ids), pa.string())))
        payees = payee_rows(table)
        parts = output_rows(table) if kept_per_batch(table) else payees
        if output_ids is not None:
            parts = parts.filter(
                pc.is_in(parts["output_id"].cast(pa.string()), pa.array(list(output_ids), pa.string()))
            )
            payees = payees if kept_per_batch(table) else parts
        if not parts.num_rows:
            return EVIDENCE_SCHEMA.empty_table()
        if group.scores_run_id is None:
            raise EvidenceError(f"evidence of {group.event_id} is kept per payee but names no attribution run")
        run, scores, manifest = self._run(group.scores_run_id)
        agreement = self._agreement(group.agreement_id, group.agreement_version)
        outs = _outputs(parts, group.currency)
        shares = {w: [PayeeShare(*s) for s in got] for w, got in share_rows(table).items()}
        usage = build_usage_columns(
            self.conn, _score_columns(outs, scores), agreement, manifest, per=run.per, shares=shares
        )
        accounts = dict(zip(payees["payee"].to_pylist(), payees["account"].to_pylist(), strict=True))
        return line_table(group.batch_event_id, usage, agreement, accounts)

    def outputs_paying(self, group: Any, table: pa.Table, payees: Collection[str]) -> set[str] | None:
        """The outputs of ``group`` (evidence ``table``, kept per payee) whose lines may pay any of ``payees``:
        every output when its agreement pays a baseline share (that reaches every work of the manifest),
        else those its run scored above zero on a work whose recorded shares name one of them (only a
        positive score earns, ``royalties.shares.attribution_weights``). A superset: their lines, re-derived,
        are then filtered by payee. None means every output."""
        if group.scores_run_id is None:
            raise EvidenceError(f"evidence of {group.event_id} is kept per payee but names no attribution run")
        if self._agreement(group.agreement_id, group.agreement_version).baseline_share:
            return None
        wanted = set(payees)
        works = [w for w, got in share_rows(table).items() if any(s[0] in wanted for s in got)]
        scores = self._run(group.scores_run_id)[1]
        hit = pc.and_(pc.is_in(scores.keys, pa.array(works, pa.string())), pa.array(scores.scores > 0))
        return set(pc.unique(scores.output_ids.filter(hit)).to_pylist())

    def _run(self, run_id: str) -> tuple[AttributionRun, RunScores, ManifestRecord]:
        if run_id not in self._runs:
            try:
                run = load_run(self.conn, run_id)
                manifest = load_manifest(self.conn, run.manifest_id)
            except NotFoundError as exc:
                raise EvidenceError(f"lines paid on attribution run {run_id} cannot be re-derived: {exc}") from None
            self._runs[run_id] = (run, read_run_scores(self.store.data_dir, run), manifest)
        return self._runs[run_id]

    def _agreement(self, agreement_id: str, version: int) -> Agreement:
        key = (agreement_id, version)
        if key not in self._agreements:
            try:
                self._agreements[key] = load_agreement(self.conn, agreement_id, version)
            except NotFoundError as exc:
                raise EvidenceError(f"lines cannot be re-derived without their agreement: {exc}") from None
        return self._agreements[key]


def _outputs(parts: pa.Table, currency: str) -> list[OutputIn]:
    """The outputs of the parts, in the order the batch listed them, with their model, time and revenue."""
    seen: dict[str, OutputIn] = {}
    columns = ("output_id", "model_id", "revenue_microunits", "occurred_at")
    for oid, model, revenue, at in zip(*(parts[c].to_pylist() for c in columns), strict=True):
        if oid not in seen:
            seen[oid] = OutputIn(oid, model, revenue, currency, at)
    return list(seen.values())


def _score_columns(outs: list[OutputIn], scores: RunScores) -> UsageColumns:
    """``outs`` and their scores in ``scores`` as ``UsageColumns``, without a Python object per score: each
    output's scores in the run's row order, keys dictionary-coded, and of a key the run scores twice for one
    output its last score (as ``RunScores.for_outputs`` gives them, and so as accrual paid them)."""
    ids = pa.array([o.output_id for o in outs], pa.string())
    found = pc.fill_null(pc.index_in(scores.output_ids, value_set=ids), -1)
    position = found.to_numpy(zero_copy_only=False).astype(np.int64)
    rows = np.flatnonzero(position >= 0)
    order = rows[np.argsort(position[rows], kind="stable")]
    taken = scores.keys.take(pa.array(order, pa.int64()))
    keys = pc.dictionary_encode(taken.combine_chunks() if isinstance(taken, pa.ChunkedArray) else taken)
    codes = keys.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    pair = position[order] * max(len(keys.dictionary), 1) + codes
    last = len(pair) - 1 - np.unique(pair[::-1], return_index=True)[1]
    kept = np.sort(last)
    counts = np.bincount(position[order][kept], minlength=len(outs))
    return UsageColumns(
        [o.output_id for o in outs],
        [o.model_id for o in outs],
        [o.revenue_microunits for o in outs],
        [o.currency for o in outs],
        [o.occurred_at for o in outs],
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        keys.dictionary.to_pylist(),
        codes[kept],
        np.ascontiguousarray(scores.scores[order[kept]], dtype=np.float64),
    )


def evidence_lines(store: Store, batch_id: str, output_ids: Collection[str] | None = None) -> pa.Table:
    """Every evidence line of accrual batch ``batch_id`` (of ``output_ids`` when given), as accrual wrote or
    would have written them: read from files kept line by line, re-derived from files kept per payee."""
    with store.read() as conn:
        groups = conn.execute(
            select(accrual_batches)
            .where(accrual_batches.c.batch_event_id == batch_id)
            .order_by(accrual_batches.c.event_id)
        ).all()
        if not groups:
            raise NotFoundError(f"accrual batch {batch_id} not found")
        source = LineSource(store, conn)
        tables = [
            source.lines(
                g, read_evidence(store.data_dir / g.evidence_path, expected_sha256=g.evidence_sha256), output_ids
            )
            for g in groups
        ]
    names = EVIDENCE_SCHEMA.names
    return pa.concat_tables(
        [t.select([n for n in names if n in t.column_names]) for t in tables], promote_options="permissive"
    )
