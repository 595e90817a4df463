"""Accruing a columnar usage batch (an Arrow stream or a Parquet file): ``accrue_scored``'s path with the
lines built by ``build_usage_columns``, which gives exactly the lines ``build_usage`` gives."""

from __future__ import annotations

from typing import Literal

from endcredits.errors import ValidationError
from endcredits.ledger.accrue import AccrualSummary, ScoreSource, accrue, accrue_scored, check_accrual
from endcredits.manifest.records import ManifestRecord, latest_manifest_id, load_manifest
from endcredits.royalties.agreement import Agreement
from endcredits.royalties.records import load_agreement
from endcredits.royalties.usage import UsageBatch
from endcredits.royalties.usage_columns import UsageColumns, build_usage_columns
from endcredits.store.engine import Store


def accrue_columns(
    store: Store,
    columns: UsageColumns,
    *,
    source: ScoreSource,
    per: Literal["work", "payee"] | None,
    agreement_id: str,
    batch_id: str,
    manifest_id: str | None = None,
    dry_run: bool = False,
    check_only: bool = False,
) -> AccrualSummary:
    """``accrue_scored`` for columns: a recorded run's batch (no scores in ``columns``) goes through it as is;
    external scores (``per``) become lines without a Python object per score. ``check_only``: as
    ``accrue_scored``'s."""
    if source.run_id is not None:
        if len(columns.key_codes) or per is not None:
            raise ValidationError(f"attribution run {source.run_id} brings its own scores: send the outputs alone")
        return accrue_scored(
            store,
            columns.outputs(),
            None,
            source=source,
            per=None,
            agreement_id=agreement_id,
            batch_id=batch_id,
            manifest_id=manifest_id,
            dry_run=dry_run,
            check_only=check_only,
        )
    usage, agreement, _ = columns_usage(store, columns, per=per, agreement_id=agreement_id, manifest_id=manifest_id)
    if check_only:
        return check_accrual(store, usage, agreement, event_id=batch_id, source=source)
    return accrue(store, usage, agreement, event_id=batch_id, source=source, dry_run=dry_run)


def columns_usage(
    store: Store,
    columns: UsageColumns,
    *,
    per: Literal["work", "payee"] | None,
    agreement_id: str,
    manifest_id: str | None = None,
) -> tuple[UsageBatch, Agreement, tuple[str, str] | None]:
    """The lines ``accrue_columns`` accrues for external scores in ``columns``, the agreement they were built
    under, and (model id, manifest id) where the model's newest manifest was read because the batch named
    none (else None); every refusal of ``accrue_columns`` before it writes."""
    if per is None:
        raise ValidationError("external scores come per work or per payee")
    with store.read() as conn:
        agreement = load_agreement(conn, agreement_id)
        manifest: ManifestRecord | None = None
        newest: tuple[str, str] | None = None
        if per == "work" or agreement.baseline_share or manifest_id is not None:
            model_ids = set(columns.model_ids)
            if len(model_ids) != 1:
                raise ValidationError(
                    f"an accrual batch that needs a manifest covers one model, and this one mixes {len(model_ids)} "
                    "(attribution per work is checked against the model's manifest): split it by model_id"
                )
            (model_id,) = model_ids
            manifest = load_manifest(conn, manifest_id or latest_manifest_id(conn, model_id))
            newest = (model_id, manifest.id) if manifest_id is None else None
        return build_usage_columns(conn, columns, agreement, manifest, per=per), agreement, newest
