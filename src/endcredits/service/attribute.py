"""Attribution over HTTP: text outputs scored against every work of a manifest, with the model checkpoint
registered for the manifest's model at ``DATA/models/MODEL_ID.pt`` (where ``endcredits demo`` saves it)."""

from __future__ import annotations

from typing import Any

from endcredits.service.models import AttributionIn
from endcredits.store.engine import Store


def attribution_view(store: Store, body: AttributionIn) -> dict[str, Any]:
    """The API's answer: the recorded run's id (what a usage batch's ``attribution_run_id`` names), and each
    output's score per work and its top works."""
    from endcredits.attribution.texts import attribute_manifest, bound_checkpoint

    lm, manifest = bound_checkpoint(store, body.manifest_id)
    outputs = [(o.output_id, o.text) for o in body.outputs]
    att = attribute_manifest(store, manifest, lm, outputs, settings=body.settings())
    return {
        "attribution_run_id": att.run_id,
        "manifest_id": manifest.id,
        "model_id": manifest.model_id,
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
