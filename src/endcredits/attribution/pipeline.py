"""Attributing a model's outputs to the works of the manifest it was trained on: the stage's one path,
for every model behind ``AttributionModel`` (``models``: the demo's character LM, Hugging Face causal LMs,
diffusers UNets, an operator's own ``module:function``).

Every choice that changes the numbers is one ``AttributionSettings`` (``settings``). The training works'
features are written once per (manifest, model checksum, features settings) under ``DATA/features/``, in a
directory named by the settings' fingerprint, and reused: ``endcredits featurize`` fills them
(resumable, on Ray when given a cluster), ``endcredits attribute``, the API and the demo read them. Each
output is then featurized the same way and scored against every work:

- ``trak`` (default): ``phi(output)^T (Phi^T Phi + lambda I)^-1 phi(work)``, projected gradients of the
  model's training function for each work and of its measurement for each output (``AttributionTask``);
- ``tracin``: the plain dot product of the same features (the first cut, kept for comparison).

Works and outputs are bytes (texts for language models, image files for UNets); the model encodes them.
A model is attributed only at a checkpoint its manifest is bound to or a recorded training run produced
(``check_checkpoint``: one checksum, ``AttributionModel.checksum``, everywhere). ``attribute_manifest``
records the run (``attribution.records``), whose id an accrual names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection

from endcredits.attribution.eigen import EigenBasis, check_basis
from endcredits.attribution.featurizer import Featurizer, Progress, covered_parameters
from endcredits.attribution.models import AttributionModel, load_model
from endcredits.attribution.payees import CreditMatrix, PayeeIndex
from endcredits.attribution.records import RunScores, new_run, record_run
from endcredits.attribution.saver import FORMAT, FeatureSet
from endcredits.attribution.scorers import LinearScorer, TracInScorer, TRAKScorer, score_items
from endcredits.attribution.settings import AttributionSettings
from endcredits.attribution.topk import TopK, top_k_exact
from endcredits.errors import ConflictError, ManifestError, ValidationError
from endcredits.manifest.records import ManifestRecord, load_manifest, training_runs_list
from endcredits.store.blobs import get_blob
from endcredits.store.engine import Store

Output = tuple[str, bytes]
"""An output to attribute: its id and its content (a text's UTF-8 bytes, an image file's bytes)."""
CHECKPOINT_RUNS_MAX = 10_000
"""Training runs of one manifest searched for a checkpoint."""


@dataclass(frozen=True)
class Attribution:
    method: str
    weaker: bool
    work_ids: tuple[str, ...]
    output_ids: tuple[str, ...]
    scores: npt.NDArray[np.float64]  # [outputs, works]
    top: TopK  # per output, the works with the highest scores
    settings: AttributionSettings
    run_id: str | None = None  # the recorded attribution run (``attribute_manifest``), which an accrual names

    def top_works(self, row: int) -> list[tuple[str, float]]:
        """The explaining works of output ``row``, best first, with their scores."""
        return [
            (self.work_ids[int(j)], float(s)) for j, s in zip(self.top.indices[row], self.top.scores[row]) if j >= 0
        ]


def resolved_settings(model: AttributionModel, settings: AttributionSettings, works: int) -> AttributionSettings:
    """``settings`` with projection ``auto`` made concrete for this model over ``works`` works
    (``AttributionSettings.resolved``): what the features, their directory and the run record carry."""
    if settings.projection != "auto":
        return settings
    task = model.task(settings)
    return settings.resolved(
        parameters=covered_parameters(task.model, settings.exclude),
        works=works,
        checkpoints=len(task.checkpoint_sha256s),
    )


def featurizer_for(model: AttributionModel, settings: AttributionSettings) -> Featurizer:
    """The featurizer the settings describe, over the model's task (its checkpoints and functions);
    projection ``auto`` must be resolved first (``resolved_settings``)."""
    return Featurizer(
        model.task(settings),
        k=None if settings.projection == "identity" else settings.k,
        seed=settings.seed,
        projection=settings.projection,
        chunk_size=settings.chunk_size,
        # Every parameter but those named: Kronecker layers need one forward and backward pass per chunk;
        # embeddings and norms, unless excluded, a vmap pass more.
        exclude=settings.exclude,
    )


def query_featurizer(model: AttributionModel, train: FeatureSet, settings: AttributionSettings) -> Featurizer:
    """The featurizer of outputs scored against ``train``: projection ``eigen`` takes the works' own basis,
    saved beside their features and checked against the hash they recorded."""
    featurizer = featurizer_for(model, settings)
    recorded = train.manifest.get("basis_sha256")
    if settings.projection == "eigen" and recorded is not None:
        featurizer.use_basis(EigenBasis.load(train.directory, sha256=recorded))
    check_basis(recorded, featurizer.basis, str(train.directory))
    return featurizer


def features_dir(data_dir: Path, manifest_id: str, model: AttributionModel, settings: AttributionSettings) -> Path:
    """``DATA/features/MANIFEST/CHECKSUM-FINGERPRINT``: the fingerprint covers the features settings
    and the feature format, so features of other settings or an older format never share a directory."""
    safe = manifest_id.replace("/", "_").replace("@", "-")
    digest = hashlib.sha256(f"{FORMAT}|{settings.fingerprint()}".encode()).hexdigest()
    return Path(data_dir) / "features" / safe / f"{model.checksum()[:16]}-{digest[:16]}"


def check_checkpoint(conn: Connection, model: AttributionModel, manifest: ManifestRecord) -> None:
    """Refuse a model unless its checksum is the checkpoint the manifest is bound to, or one a recorded
    training run of the manifest produced: scores are only ever made by the model that was trained on it."""
    checksum = model.checksum()
    if manifest.checkpoint_sha256 is not None:
        if checksum != manifest.checkpoint_sha256:
            raise ManifestError(
                f"the checkpoint (model checksum {checksum[:16]}) is not the one manifest {manifest.id} "
                f"is bound to ({manifest.checkpoint_sha256[:16]})"
            )
        return
    runs = training_runs_list(conn, manifest_id=manifest.id, limit=CHECKPOINT_RUNS_MAX)
    if not any(checksum in run.checkpoint_sha256s for run in runs):
        raise ManifestError(
            f"the checkpoint (model checksum {checksum[:16]}) is from no recorded training run of manifest "
            f"{manifest.id}: record it with `endcredits manifest run record --checkpoint PATH --model-kind "
            f"{model.kind}`"
        )


def featurize_works(
    model: AttributionModel,
    work_ids: Sequence[str],
    contents: Sequence[bytes],
    out_dir: Path,
    *,
    settings: AttributionSettings,
    ray: str | None = None,
    progress: Progress | None = None,
) -> FeatureSet:
    """The works' features under ``out_dir`` (computed once; an interrupted run continues; features made
    with other features settings are refused)."""
    if len(work_ids) != len(contents):
        raise ValidationError(f"{len(work_ids)} work ids for {len(contents)} contents")
    settings = resolved_settings(model, settings, len(work_ids))
    featurizer = featurizer_for(model, settings)
    batch = model.encode_works(contents, work_ids, settings)
    if ray is None:
        return featurizer.featurize(batch, list(work_ids), out_dir, role="train", progress=progress, settings=settings)
    from endcredits.attribution.distributed import featurize_sharded, runner_for

    return featurize_sharded(
        featurizer,
        batch,
        list(work_ids),
        out_dir,
        runner=runner_for(ray),
        role="train",
        progress=progress,
        settings=settings,
    )


def scorer_for(train: FeatureSet, settings: AttributionSettings) -> LinearScorer:
    """The fitted scorer of ``settings.method`` (TRAK with ``settings.lambda_``)."""
    if settings.method == "trak":
        return TRAKScorer(lambda_=settings.lambda_).fit(train.features_per_model(), train.weights_per_model())
    return TracInScorer().fit(train.features_per_model())


def attribute_outputs(
    model: AttributionModel, train: FeatureSet, outputs: Sequence[Output], *, settings: AttributionSettings
) -> Attribution:
    """Score every output (id, content) against every featurized work."""
    if not outputs:
        raise ValidationError("no outputs to attribute")
    settings = resolved_settings(model, settings, len(train.ids))
    scorer = scorer_for(train, settings)
    query = scorer.query(_targets(model, train, outputs, settings))
    scores = score_items(query, scorer.item_matrix)  # the same as scorer.score, without featurizing twice
    top = top_k_exact(query, scorer.item_matrix, min(settings.top_k, len(train.ids)))
    output_ids = tuple(o for o, _ in outputs)
    return Attribution(scorer.method, scorer.weaker, train.ids, output_ids, scores, top, settings)


def attribute_payees(
    model: AttributionModel,
    train: FeatureSet,
    outputs: Sequence[Output],
    credits: CreditMatrix,
    *,
    settings: AttributionSettings,
) -> npt.NDArray[np.float64]:
    """Every payee's score for every output, ``[outputs, payees]``: one pass over ``Psi = W^T G`` per
    output, equal to the credit-weighted sum of its works' scores (no payee left out)."""
    if not outputs:
        raise ValidationError("no outputs to attribute")
    settings = resolved_settings(model, settings, len(train.ids))
    return PayeeIndex(scorer_for(train, settings), credits).score(_targets(model, train, outputs, settings))


def _targets(
    model: AttributionModel, train: FeatureSet, outputs: Sequence[Output], settings: AttributionSettings
) -> list[npt.NDArray[np.float32]]:
    """Each output's features under every checkpoint the works were featurized with."""
    featurizer = query_featurizer(model, train, settings)
    if list(featurizer.task.checkpoint_sha256s) != train.manifest["checkpoint_sha256"]:
        raise ManifestError(f"features in {train.directory} were computed for other checkpoints; featurize again")
    ids = [o for o, _ in outputs]
    batch = model.encode_outputs([content for _, content in outputs], ids, settings)
    return [featurizer.compute(batch, checkpoint_index=m, ids=ids) for m in range(train.models)]


def manifest_contents(store: Store, manifest: ManifestRecord) -> list[bytes]:
    """The content of each included work, in manifest order, read from the content store and checked
    against its id."""
    return [get_blob(store.data_dir, wid) for wid in manifest.included]


def manifest_texts(store: Store, manifest: ManifestRecord) -> list[str]:
    """The training text of each included work, in manifest order; a work that is not UTF-8 is refused."""
    texts = []
    for wid, data in zip(manifest.included, manifest_contents(store, manifest), strict=True):
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise ValidationError(f"work {wid} is not UTF-8 text; this model reads text") from None
    return texts


def checkpoint_path(store: Store, model_id: str, kind: str = "charlm") -> Path:
    """Where a model's checkpoint lives in the data directory: ``models/MODEL.pt`` for the character LM
    (where ``endcredits demo`` saves it), the ``models/MODEL/`` folder for every other kind."""
    return store.data_dir / "models" / (f"{model_id}.pt" if kind == "charlm" else model_id)


def bound_checkpoint(
    store: Store, manifest_id: str, checkpoint: Path | None = None, *, kind: str = "charlm"
) -> tuple[AttributionModel, ManifestRecord]:
    """The manifest and the model trained on it, loaded as ``kind``: ``checkpoint``, or the model's checkpoint
    in the data directory; refused unless it is a checkpoint the manifest is bound to (``check_checkpoint``)."""
    with store.read() as conn:
        manifest = load_manifest(conn, manifest_id)
    if checkpoint is None:
        checkpoint = checkpoint_path(store, manifest.model_id, kind)
        if not checkpoint.exists():
            raise ConflictError(
                f"no checkpoint for model {manifest.model_id} at {checkpoint.relative_to(store.data_dir)} in the "
                "data directory: name one, or attribute elsewhere and send the scores with the usage batch"
            )
    model = load_model(checkpoint, kind)
    with store.read() as conn:
        check_checkpoint(conn, model, manifest)
    return model, manifest


def featurize_manifest(
    store: Store,
    manifest: ManifestRecord,
    model: AttributionModel,
    *,
    settings: AttributionSettings,
    ray: str | None = None,
    progress: Progress | None = None,
) -> FeatureSet:
    """The manifest's works' features for ``model``, under ``DATA/features`` (computed once, then reused)."""
    settings = resolved_settings(model, settings, len(manifest.included))
    return featurize_works(
        model,
        manifest.included,
        manifest_contents(store, manifest),
        features_dir(store.data_dir, manifest.id, model, settings),
        settings=settings,
        ray=ray,
        progress=progress,
    )


def attribute_manifest(
    store: Store,
    manifest: ManifestRecord,
    model: AttributionModel,
    outputs: Sequence[Output],
    *,
    settings: AttributionSettings,
    ray: str | None = None,
    progress: Progress | None = None,
) -> Attribution:
    """Score every output (id, content) against every work of the manifest, with each output's top works,
    and record the run (its id in ``run_id``). The works are featurized first unless their features are
    stored (``progress`` follows that step)."""
    ids = [o for o, _ in outputs]
    if len(set(ids)) != len(ids):
        raise ValidationError("an output id appears twice")
    settings = resolved_settings(model, settings, len(manifest.included))
    train = featurize_manifest(store, manifest, model, settings=settings, ray=ray, progress=progress)
    att = attribute_outputs(model, train, outputs, settings=settings)
    scores = RunScores.of_matrix("work", att.output_ids, att.work_ids, att.scores)
    run = new_run(
        manifest,
        scores,
        checkpoint_sha256s=[model.checksum()],
        method=att.method,
        weaker=att.weaker,
        settings=settings,
    )
    return replace(att, run_id=record_run(store, run, scores)[0].id)


__all__ = [
    "Attribution",
    "Output",
    "attribute_manifest",
    "attribute_outputs",
    "attribute_payees",
    "bound_checkpoint",
    "check_checkpoint",
    "checkpoint_path",
    "features_dir",
    "featurize_manifest",
    "featurize_works",
    "featurizer_for",
    "manifest_contents",
    "manifest_texts",
    "query_featurizer",
    "resolved_settings",
    "scorer_for",
]
