"""The attribution worker: outputs of a recorded run's model attributed in batches and accrued in process.

``attribute_and_accrue`` takes a list of priced outputs (an ``OutputIn`` and its content each) of the model
a recorded attribution run scored, and takes that run's model, manifest, checkpoint, method and settings.
It featurizes the outputs ``batch_outputs`` at a time and scores every payee of each through
``Psi = W^T G`` (``attribution.distributed.attribute_batches``: here, or as Ray tasks when given a
cluster), against the manifest's stored work features. Every ``usage_outputs`` outputs, it records their
scores as a new attribution run per payee (``royalties.payees.record_payee_run``: the same record, file
and checks as ``endcredits attribute --per-payee``) and hands the outputs to ingestion as an Arrow usage
table naming that run, accrued by the path of ``POST /api/v1/usage-batches`` with an Arrow stream
(``royalties.usage_arrow.usage_of_table`` then ``ledger.accrue_columns``): no CSV and no HTTP between the
two, and every microunit moved on scores a recorded run holds.

Before anything is computed or written, the inputs are checked in one line each: the run exists, every
output is of its model, the run still fits its manifest (root, model, bound checkpoint), the checkpoint
loaded is one the run scored, the agreement exists and its currency is the outputs', no output was
accrued before or has other content, every time parses. Usage batches are named ``BATCH_ID-N`` (N from 1),
so a worker started again on the same outputs finds its runs and batches recorded and writes nothing new.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from endcredits.attribution.records import AttributionRun
from endcredits.attribution.settings import AttributionSettings
from endcredits.errors import ManifestError, ValidationError
from endcredits.ledger.accrue import AccrualSummary, ScoreSource, refuse_accrued, run_of_outputs
from endcredits.ledger.accrue_columns import accrue_columns
from endcredits.limits import ID_LENGTH_MAX, OUTPUTS_PER_BATCH_MAX, check_id, check_ids
from endcredits.manifest.records import ManifestRecord
from endcredits.royalties.agreement import Agreement
from endcredits.royalties.records import load_agreement
from endcredits.royalties.usage import OutputIn
from endcredits.store.engine import Store, normalize_time

BATCH_OUTPUTS_DEFAULT = 32
"""Outputs featurized and scored together (one task on a Ray cluster)."""
USAGE_OUTPUTS_DEFAULT = 1_024
"""Outputs per recorded run and usage batch."""

Progress = Callable[[int, int], None]
"""``progress(outputs_done, outputs_total)`` after each usage batch."""


@dataclass(frozen=True)
class WorkerReport:
    """What one worker call did: the runs it recorded, the usage batches it accrued, and how fast."""

    reference_run_id: str
    run_ids: tuple[str, ...]
    batches: tuple[AccrualSummary, ...]
    outputs: int
    batch_outputs: int
    runner: str  # "local" or "ray"
    attribute_s: float  # encoding, featurizing and scoring the outputs
    total_s: float  # everything, recording the runs and accruing included

    def outputs_per_s(self) -> float:
        """Outputs attributed per second (encoding, featurizing and every payee's score)."""
        return self.outputs / self.attribute_s if self.attribute_s > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {
            "reference_run_id": self.reference_run_id,
            "attribution_run_ids": list(self.run_ids),
            "batches": [b.to_json() for b in self.batches],
            "outputs": self.outputs,
            "batch_outputs": self.batch_outputs,
            "runner": self.runner,
            "attribute_s": round(self.attribute_s, 4),
            "total_s": round(self.total_s, 4),
            "outputs_per_s": round(self.outputs_per_s(), 2),
            "outputs_per_s_end_to_end": round(self.outputs / self.total_s, 2) if self.total_s > 0 else None,
        }


@dataclass(frozen=True)
class _Checked:
    run: AttributionRun
    manifest: ManifestRecord
    agreement: Agreement
    settings: AttributionSettings


def _batch_ids(batch_id: str, outputs: int, usage_outputs: int) -> list[str]:
    return [f"{batch_id}-{n}" for n in range(1, -(-outputs // usage_outputs) + 1)]


def _check(
    store: Store,
    run_id: str,
    outputs: Sequence[OutputIn],
    contents: Sequence[bytes],
    agreement_id: str,
    batch_ids: Sequence[str],
) -> _Checked:
    """The run, its manifest, the agreement and the run's settings; a one-line error, before anything is
    written, for any input that could not be attributed and accrued."""
    from endcredits.royalties.output_contents import check_output_contents

    if not outputs:
        raise ValidationError("no outputs to attribute")
    if len(outputs) != len(contents):
        raise ValidationError(f"{len(outputs)} outputs for {len(contents)} contents: give one content per output")
    ids = [o.output_id for o in outputs]
    check_ids(ids, "output id")
    with store.read() as conn:
        run, manifest = run_of_outputs(conn, run_id, outputs)
        agreement = load_agreement(conn, agreement_id)
        refuse_accrued(conn, ids, unless_in=set(batch_ids))
    _check_money(outputs, agreement)
    check_output_contents(store, list(zip(ids, contents, strict=True)))
    settings = AttributionSettings.from_dict(run.settings)
    if run.method != settings.method or run.weaker:
        raise ValidationError(f"attribution run {run.id} used {run.method}: the worker scores with trak or tracin")
    return _Checked(run, manifest, agreement, settings)


def _check_money(outputs: Sequence[OutputIn], agreement: Agreement) -> None:
    for o in outputs:
        if o.currency != agreement.currency:
            raise ValidationError(
                f"output {o.output_id} is in {o.currency}; agreement {agreement.id} pays in {agreement.currency}"
            )
        if not isinstance(o.revenue_microunits, int) or o.revenue_microunits < 0:
            raise ValidationError(f"output {o.output_id}: revenue must be a whole, non-negative count of microunits")
    for t in {o.occurred_at for o in outputs}:
        normalize_time(t)


def _usage_table(outputs: Sequence[OutputIn]) -> pa.Table:
    """The outputs as the columns of a usage stream that names a recorded run (no score columns)."""
    from endcredits.royalties.usage_arrow import OUTPUT_COLUMNS

    values = {
        "output_id": [o.output_id for o in outputs],
        "model_id": [o.model_id for o in outputs],
        "revenue_microunits": [o.revenue_microunits for o in outputs],
        "currency": [o.currency for o in outputs],
        "occurred_at": [o.occurred_at for o in outputs],
    }
    schema = pa.schema([pa.field(n, t, nullable=False) for n, t in OUTPUT_COLUMNS.items()])
    return pa.table({n: pa.array(values[n], t) for n, t in OUTPUT_COLUMNS.items()}, schema=schema)


def _accrue_run(
    store: Store, outputs: Sequence[OutputIn], checked: _Checked, run_id: str, batch_id: str
) -> AccrualSummary:
    """The outputs as an Arrow usage table naming the run, read and accrued as ``POST /usage-batches`` reads
    and accrues an Arrow stream."""
    from endcredits.royalties.usage_arrow import UsageHeader, usage_of_table, with_header

    header = UsageHeader(batch_id, checked.agreement.id, checked.manifest.id, run_id, None, None)
    read, columns = usage_of_table(with_header(header, _usage_table(outputs)))
    return accrue_columns(
        store,
        columns,
        source=ScoreSource.run(str(read.attribution_run_id)),
        per=None,
        agreement_id=read.agreement_id,
        batch_id=read.batch_id,
        manifest_id=read.manifest_id,
    )


def _check_sizes(batch_id: str, outputs: int, batch_outputs: int, usage_outputs: int) -> None:
    check_id(batch_id, "batch id")
    if not 1 <= usage_outputs <= OUTPUTS_PER_BATCH_MAX:
        raise ValidationError(f"usage batches of {usage_outputs} outputs: 1 to {OUTPUTS_PER_BATCH_MAX}")
    if batch_outputs < 1:
        raise ValidationError(f"attribution batches of {batch_outputs} outputs: at least 1")
    last = f"{batch_id}-{max(1, -(-outputs // usage_outputs))}"
    if "/" in batch_id:
        raise ValidationError(f"batch id {batch_id[:40]!r} has a /: the worker's batch ids may not")
    if len(last) > ID_LENGTH_MAX - 20:
        raise ValidationError(
            f"batch id {batch_id[:40]!r} is too long: with its suffix -N it has {len(last)} characters, over "
            f"{ID_LENGTH_MAX - 20}"
        )


def attribute_and_accrue(
    store: Store,
    run_id: str,
    outputs: Sequence[OutputIn],
    contents: Sequence[bytes],
    *,
    agreement_id: str,
    batch_id: str,
    checkpoint: Path | None = None,
    model_kind: str = "charlm",
    batch_outputs: int = BATCH_OUTPUTS_DEFAULT,
    usage_outputs: int = USAGE_OUTPUTS_DEFAULT,
    ray: str | None = None,
    progress: Progress | None = None,
) -> WorkerReport:
    """Attribute ``outputs`` (their ``contents``, in order) with the model, manifest and settings of recorded
    run ``run_id``, every payee scored under the agreement's credit shares, ``batch_outputs`` outputs at
    a time (on Ray when ``ray`` names a cluster); record each ``usage_outputs`` outputs' scores as a run
    and accrue them as usage batch ``BATCH_ID-N`` naming it (see the module docstring)."""
    from endcredits.attribution.distributed import attribute_batches, runner_for
    from endcredits.attribution.payees import PayeeIndex
    from endcredits.attribution.pipeline import bound_checkpoint, featurize_manifest, query_featurizer, scorer_for
    from endcredits.royalties.payees import record_payee_run
    from endcredits.royalties.usage import credit_matrix

    started = time.perf_counter()
    _check_sizes(batch_id, len(outputs), batch_outputs, usage_outputs)
    batch_ids = _batch_ids(batch_id, len(outputs), usage_outputs)
    checked = _check(store, run_id, outputs, contents, agreement_id, batch_ids)
    model, manifest = bound_checkpoint(store, checked.manifest.id, checkpoint, kind=model_kind)
    if model.checksum() not in checked.run.checkpoint_sha256s:
        raise ManifestError(
            f"the checkpoint (model checksum {model.checksum()[:16]}) is not one attribution run {run_id} scored"
        )
    settings = checked.settings
    train = featurize_manifest(store, manifest, model, settings=settings, ray=ray)
    featurizer = query_featurizer(model, train, settings)
    if list(featurizer.task.checkpoint_sha256s) != train.manifest["checkpoint_sha256"]:
        raise ManifestError(f"features in {train.directory} were computed for other checkpoints; featurize again")
    with store.read() as conn:
        payees, credits = credit_matrix(conn, manifest.included, checked.agreement)
    index = PayeeIndex(scorer_for(train, settings), credits)
    runner = runner_for(ray)
    run_ids: list[str] = []
    summaries: list[AccrualSummary] = []
    attribute_s = 0.0
    for n, start in enumerate(range(0, len(outputs), usage_outputs)):
        part = outputs[start : start + usage_outputs]
        items = [(o.output_id, c) for o, c in zip(part, contents[start : start + usage_outputs], strict=True)]
        began = time.perf_counter()
        encoded = model.encode_outputs([c for _, c in items], [i for i, _ in items], settings)
        scores = attribute_batches(featurizer, index, encoded, batch_outputs=batch_outputs, runner=runner)
        attribute_s += time.perf_counter() - began
        recorded = record_payee_run(
            store, manifest, model, items, payees, scores, checked.agreement,
            settings=settings, validity=checked.run.validity,
        )  # fmt: skip
        run_ids.append(recorded.run_id)
        summaries.append(_accrue_run(store, part, checked, recorded.run_id, batch_ids[n]))
        if progress is not None:
            progress(start + len(part), len(outputs))
    return WorkerReport(
        run_id, tuple(run_ids), tuple(summaries), len(outputs), batch_outputs, runner.name,
        attribute_s, time.perf_counter() - started,
    )  # fmt: skip


__all__ = ["BATCH_OUTPUTS_DEFAULT", "USAGE_OUTPUTS_DEFAULT", "WorkerReport", "attribute_and_accrue"]
