"""Every payee's attribution score for generated outputs: the manifest's works scored through
``Psi = W^T G``, with ``W`` the agreement's exact credit shares (``credit_matrix``), so no payee of a
long tail is left out and one output costs one pass over the payees. Both ways of attributing a manifest
from the edges (``attribute_and_keep``, ``attribute_manifest_payees``) keep the outputs' contents, so the
statements they pay show what was generated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from endcredits.attribution.featurizer import Progress
from endcredits.attribution.models import AttributionModel
from endcredits.attribution.pipeline import (
    Attribution,
    Output,
    attribute_manifest,
    attribute_payees,
    featurize_manifest,
    resolved_settings,
)
from endcredits.attribution.records import RunScores, new_run, record_run
from endcredits.attribution.settings import AttributionSettings
from endcredits.errors import ValidationError
from endcredits.manifest.records import ManifestRecord
from endcredits.royalties.agreement import Agreement
from endcredits.royalties.output_contents import check_output_contents, record_output_contents
from endcredits.royalties.usage import credit_matrix
from endcredits.store.engine import Store


@dataclass(frozen=True)
class PayeeScores:
    """``scores[i, j]``: payee ``payees[j]``'s score for output ``output_ids[i]``."""

    method: str
    output_ids: tuple[str, ...]
    payees: tuple[str, ...]
    scores: npt.NDArray[np.float64]
    run_id: str  # the recorded attribution run, which an accrual names
    settings: AttributionSettings  # the settings that made them (projection ``auto`` resolved)

    def nonzero(self) -> list[tuple[str, str, float]]:
        """(output id, payee, score) of every non-zero score, output by output."""
        return [
            (oid, self.payees[j], float(self.scores[i, j]))
            for i, oid in enumerate(self.output_ids)
            for j in np.flatnonzero(self.scores[i]).tolist()
        ]


def attribute_and_keep(
    store: Store,
    manifest: ManifestRecord,
    model: AttributionModel,
    outputs: Sequence[Output],
    *,
    settings: AttributionSettings,
    ray: str | None = None,
    progress: Progress | None = None,
) -> Attribution:
    """``attribute_manifest``, and each output's content kept (``record_output_contents``) so the statements
    it pays show what was generated. An output id that already has other content is refused first, before
    anything is featurized or recorded."""
    check_output_contents(store, list(outputs))
    att = attribute_manifest(store, manifest, model, outputs, settings=settings, ray=ray, progress=progress)
    record_output_contents(store, list(outputs))
    return att


def attribute_manifest_payees(
    store: Store,
    manifest: ManifestRecord,
    model: AttributionModel,
    outputs: Sequence[Output],
    agreement: Agreement,
    *,
    settings: AttributionSettings,
    progress: Progress | None = None,
) -> PayeeScores:
    """Every payee's exact score for every output (id, content), under the agreement's credit shares, with
    the features and scorer that ``settings`` describe; the run is recorded (per payee, naming the
    agreement), and an accrual under the same agreement version may name it."""
    ids = [o for o, _ in outputs]
    if len(set(ids)) != len(ids):
        raise ValidationError("an output id appears twice")
    settings = resolved_settings(model, settings, len(manifest.included))
    check_output_contents(store, list(outputs))
    with store.read() as conn:
        payees, credits = credit_matrix(conn, manifest.included, agreement)
    train = featurize_manifest(store, manifest, model, settings=settings, progress=progress)
    scores = attribute_payees(model, train, outputs, credits, settings=settings)
    return record_payee_run(store, manifest, model, outputs, payees, scores, agreement, settings=settings)


def record_payee_run(
    store: Store,
    manifest: ManifestRecord,
    model: AttributionModel,
    outputs: Sequence[Output],
    payees: Sequence[str],
    scores: npt.NDArray[np.float64],
    agreement: Agreement,
    *,
    settings: AttributionSettings,
    validity: Mapping[str, Any] | None = None,
) -> PayeeScores:
    """Record ``scores`` ``[outputs, payees]`` as an attribution run per payee naming the agreement's version
    (its ``validity`` figure when given), and keep the outputs' contents: what an accrual then names."""
    ids = [o for o, _ in outputs]
    run_scores = RunScores.of_matrix("payee", ids, payees, scores)
    run = new_run(
        manifest,
        run_scores,
        checkpoint_sha256s=[model.checksum()],
        method=settings.method,
        weaker=False,
        settings=settings,
        payee_agreement=f"{agreement.id}@{agreement.version}",
        validity=validity,
    )
    stored, _ = record_run(store, run, run_scores)
    record_output_contents(store, list(outputs))
    return PayeeScores(settings.method, tuple(ids), tuple(payees), scores, stored.id, settings)
