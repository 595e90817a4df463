"""Attribution over HTTP: outputs scored against every work of a manifest, with the model's checkpoint in
the data directory (``DATA/models/MODEL.pt`` for the character LM, where ``endcredits demo`` saves it; the
folder ``DATA/models/MODEL/`` for every other kind). A client names a built-in kind; a ``module:function``
kind only when the operator allowed it in ``ENDCREDITS_MODEL_KINDS`` before starting the service, so no
request imports a module the operator did not choose."""

from __future__ import annotations

import os
from typing import Any

from endcredits.errors import ValidationError
from endcredits.service.models import AttributionIn
from endcredits.store.engine import Store

MODEL_KINDS_ENV = "ENDCREDITS_MODEL_KINDS"
"""Comma-separated ``module:function`` model kinds the API accepts besides the built-in ones."""


def allowed_kind(kind: str) -> str:
    """``kind`` when it is built in or allowed by the operator; a one-line error otherwise."""
    from endcredits.attribution.models import BUILTIN_KINDS

    allowed = [k.strip() for k in os.environ.get(MODEL_KINDS_ENV, "").split(",") if k.strip()]
    if kind not in BUILTIN_KINDS and kind not in allowed:
        raise ValidationError(
            f"model_kind {kind[:200]!r} is not one of {', '.join(BUILTIN_KINDS)}, nor allowed by the operator "
            f"({MODEL_KINDS_ENV})"
        )
    return kind


def attribution_view(store: Store, body: AttributionIn) -> dict[str, Any]:
    """The API's answer: the recorded run's id (what a usage batch's ``attribution_run_id`` names), and each
    output's score per work and its top works. The outputs' contents are kept for the statements."""
    from endcredits.attribution.pipeline import bound_checkpoint
    from endcredits.royalties.payees import attribute_and_keep

    kind = allowed_kind(body.model_kind)
    outputs = [(o.output_id, o.content()) for o in body.outputs]
    model, manifest = bound_checkpoint(store, body.manifest_id, kind=kind)
    att = attribute_and_keep(store, manifest, model, outputs, settings=body.settings())
    return {
        "attribution_run_id": att.run_id,
        "manifest_id": manifest.id,
        "model_id": manifest.model_id,
        "model_kind": kind,
        "method": att.method,
        "weaker": att.weaker,
        "settings": att.settings.to_dict(),
        "outputs": [
            {
                "output_id": oid,
                "work_scores": {w: float(att.scores[i, j]) for j, w in enumerate(att.work_ids)},
                "top_works": [{"work_id": w, "score": s} for w, s in att.top_works(i)],
            }
            for i, oid in enumerate(att.output_ids)
        ],
    }
