"""The ``model_validity`` table: each measured validity figure of a model, and the latest one.

A row records what was measured (the model, its manifest and root, the checkpoint's SHA-256, the model
kind, the operator's training function, the method and settings) and the figures of a
``validity.ValidityReport``: the LDS against the first seed and against the seed mean, the noise
ceiling, and how many subsets, seeds, outputs and works. Rows are only added; the latest row of a model
is the figure its statements show (``latest_validity``). This module imports no torch: statements read it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from endcredits.attribution.settings import AttributionSettings
from endcredits.audit import canonical_json
from endcredits.errors import NotFoundError, ValidationError
from endcredits.limits import check_id
from endcredits.store.audit import append_audit
from endcredits.store.engine import utc_now
from endcredits.store.schema import model_validity

if TYPE_CHECKING:
    from endcredits.attribution.validity import ValidityReport
    from endcredits.manifest.records import ManifestRecord

FIGURES = ("lds", "lds_seed_mean", "seed_to_seed_spearman", "ceiling_one_seed", "ceiling_seed_mean")
COUNTS = ("subsets", "seeds", "outputs", "works", "draw_seed")


@dataclass(frozen=True)
class ModelValidity:
    """One recorded measurement; see the module docstring and ``validity.ValidityReport``."""

    id: int
    model_id: str
    manifest_id: str
    merkle_root: str
    checkpoint_sha256: str
    model_kind: str
    train_function: str
    method: str
    settings_sha256: str
    settings: dict[str, Any]
    lds: float | None
    lds_seed_mean: float | None
    seed_to_seed_spearman: float | None
    ceiling_one_seed: float | None
    ceiling_seed_mean: float | None
    subsets: int
    seeds: int
    outputs: int
    works: int
    draw_seed: int
    lds_per_output: tuple[float | None, ...]
    measured_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in self.__dict__.items() if k != "lds_per_output"},
            "lds_per_output": list(self.lds_per_output),
            "summary": self.sentence(),
        }

    def sentence(self) -> str:
        """The figure in words: ``LDS 0.31 against the mean of 3 retrainings per subset (noise ceiling
        0.80); 32 subsets, 5 outputs``."""
        return validity_sentence(self.lds_seed_mean, self.ceiling_seed_mean, self.subsets, self.seeds, self.outputs)


def validity_sentence(lds: float | None, ceiling: float | None, subsets: int, seeds: int, outputs: int) -> str:
    """The figure in words (see ``ModelValidity.sentence``)."""
    against = "one retraining per subset" if seeds == 1 else f"the mean of {seeds} retrainings per subset"
    figure = "LDS undefined (no output varied across the subsets)" if lds is None else f"LDS {lds:.2f}"
    noise = (
        "no noise ceiling: one seed"
        if seeds == 1
        else "noise ceiling " + ("undefined" if ceiling is None else f"{ceiling:.2f}")
    )
    return f"{figure} against {against} ({noise}); {subsets} subsets, {outputs} outputs"


def settings_sha256(settings: AttributionSettings) -> str:
    """SHA-256 of every setting (features and scoring), as canonical JSON."""
    return hashlib.sha256(canonical_json(settings.to_dict()).encode()).hexdigest()


def record_validity(
    conn: Connection,
    report: ValidityReport,
    *,
    manifest: ManifestRecord,
    checkpoint_sha256: str,
    model_kind: str,
    train_function: str,
    settings: AttributionSettings,
    draw_seed: int,
) -> ModelValidity:
    """Add one measurement of ``manifest``'s model, inside the caller's write transaction, with an audit
    entry; returns it as stored."""
    check_id(model_kind, "model kind", spaces=False)
    check_id(train_function, "training function", spaces=False)
    if len(checkpoint_sha256) != 64:
        raise ValidationError(f"checkpoint SHA-256 {checkpoint_sha256!r:.80} must be 64 hex digits")
    figures = {k: getattr(report, k) for k in FIGURES}
    counts = {k: getattr(report, k) for k in COUNTS if k != "draw_seed"} | {"draw_seed": draw_seed}
    fields = {
        "model_id": manifest.model_id,
        "manifest_id": manifest.id,
        "merkle_root": manifest.merkle_root,
        "checkpoint_sha256": checkpoint_sha256,
        "model_kind": model_kind,
        "train_function": train_function,
        "method": settings.method,
        "settings_sha256": settings_sha256(settings),
    }
    at = utc_now()
    new_id = int(
        conn.execute(
            model_validity.insert()
            .values(
                **fields,
                **figures,
                **counts,
                settings=canonical_json(settings.to_dict()),
                lds_per_output=json.dumps(list(report.lds_per_output)),
                measured_at=at,
            )
            .returning(model_validity.c.id)
        ).scalar_one()
    )
    append_audit(conn, "model.validity", manifest.model_id, {"validity_id": new_id, **fields, **figures, **counts})
    row = conn.execute(select(model_validity).where(model_validity.c.id == new_id)).one()
    return _from_row(row)


def _from_row(row: Any) -> ModelValidity:
    values = dict(row._mapping)
    return ModelValidity(
        **{k: v for k, v in values.items() if k not in ("settings", "lds_per_output")},
        settings=json.loads(values["settings"]),
        lds_per_output=tuple(json.loads(values["lds_per_output"])),
    )


def latest_validity(conn: Connection, model_id: str) -> ModelValidity | None:
    """The model's latest measurement, or None when its validity was never measured."""
    check_id(model_id, "model id")
    row = conn.execute(
        select(model_validity)
        .where(model_validity.c.model_id == model_id)
        .order_by(model_validity.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else _from_row(row)


def latest_validities(conn: Connection, model_ids: Iterable[str]) -> dict[str, ModelValidity]:
    """The latest measurement of each model among ``model_ids`` that has one."""
    wanted = sorted(set(model_ids))
    out: dict[str, ModelValidity] = {}
    for i in range(0, len(wanted), 1000):
        newest = (
            select(func.max(model_validity.c.id))
            .where(model_validity.c.model_id.in_(wanted[i : i + 1000]))
            .group_by(model_validity.c.model_id)
        )
        for row in conn.execute(select(model_validity).where(model_validity.c.id.in_(newest))):
            out[row.model_id] = _from_row(row)
    return out


def load_validity(conn: Connection, validity_id: int) -> ModelValidity:
    """One recorded measurement by id, or a one-line ``NotFoundError``."""
    row = conn.execute(select(model_validity).where(model_validity.c.id == validity_id)).first()
    if row is None:
        raise NotFoundError(f"no validity measurement {validity_id}")
    return _from_row(row)


def validity_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(model_validity)).scalar_one())


__all__ = [
    "ModelValidity",
    "latest_validities",
    "latest_validity",
    "load_validity",
    "record_validity",
    "settings_sha256",
    "validity_count",
    "validity_sentence",
]
