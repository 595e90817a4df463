"""Attribution over HTTP: text outputs scored against every work of a manifest, with the model checkpoint
registered for the manifest's model at ``DATA/models/MODEL_ID.pt`` (where ``endcredits demo`` saves it)."""

from __future__ import annotations

from typing import Any

from endcredits.errors import ConflictError
from endcredits.service.models import AttributionIn
from endcredits.store.engine import Store


def attribute_texts(store: Store, body: AttributionIn) -> dict[str, Any]:
    from endcredits.attribution.charlm import load_lm
    from endcredits.attribution.texts import attribute_outputs, check_checkpoint
    from endcredits.demo import featurize_manifest
    from endcredits.errors import ValidationError
    from endcredits.store.catalog import load_manifest

    with store.read() as conn:
        manifest = load_manifest(conn, body.manifest_id)
    checkpoint = store.data_dir / "models" / f"{manifest.model_id}.pt"
    if not checkpoint.is_file():
        raise ConflictError(
            f"no checkpoint for model {manifest.model_id} at models/{manifest.model_id}.pt in the "
            "data directory: attribute elsewhere and send scores with POST /api/v1/usage-batches"
        )
    ids = [o.output_id for o in body.outputs]
    if len(set(ids)) != len(ids):
        raise ValidationError("an output id appears twice")
    lm = load_lm(checkpoint)
    check_checkpoint(lm, manifest.checkpoint_sha256, manifest.id)
    train = featurize_manifest(store, manifest, lm, k=body.k, seed=body.seed)
    att = attribute_outputs(
        lm,
        train,
        [(o.output_id, o.text) for o in body.outputs],
        k=body.k,
        seed=body.seed,
        method=body.method,
        top_k=body.top_k,
    )
    return {
        "manifest_id": manifest.id,
        "model_id": manifest.model_id,
        "method": att.method,
        "weaker": att.weaker,
        "outputs": [
            {
                "output_id": oid,
                "work_scores": {w: float(att.scores[i, j]) for j, w in enumerate(att.work_ids)},
                "top_works": [{"work_id": w, "score": s} for w, s in att.top_works(i)],
            }
            for i, oid in enumerate(att.output_ids)
        ],
    }
