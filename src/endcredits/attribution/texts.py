"""Attributing generated texts to a manifest's text works, for a trained ``CharLM`` (the demo's model).

Every choice that changes the numbers is one ``AttributionSettings`` (``settings``). The training works'
features are written once per (manifest, checkpoint, features settings) under ``DATA/features/``, in a
directory named by the settings' fingerprint, and reused: ``endcredits featurize`` fills them
(resumable, on Ray when given a cluster), ``endcredits attribute`` and the demo read them. Each output
is then featurized the same way and scored against every work:

- ``trak`` (default): ``phi(output)^T (Phi^T Phi + lambda I)^-1 phi(work)``, Kronecker-projected
  gradients (of the linear layers) of each work's summed log-likelihood and of the output's mean
  log-likelihood per character, over the first ``length_chars`` characters;
- ``tracin``: the plain dot product of the same features (the first cut, kept for comparison).

The top works per output (exact scan) explain the scores; the method and whether it is the weaker
kind travel with them, so a statement can say how the numbers were made.

``featurize_manifest`` and ``attribute_manifest`` are the stage's two tasks over a store, the one path
the CLI, the API and the demo call; ``attribute_manifest`` records the run (``attribution.records``), whose
id an accrual names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from endcredits.attribution.charlm import TrainedLM, load_lm
from endcredits.attribution.featurizer import Featurizer, Progress
from endcredits.attribution.payees import CreditMatrix, PayeeIndex
from endcredits.attribution.records import RunScores, new_run, record_run
from endcredits.attribution.saver import FORMAT, FeatureSet
from endcredits.attribution.scorers import LinearScorer, TracInScorer, TRAKScorer, score_items
from endcredits.attribution.settings import AttributionSettings
from endcredits.attribution.task import encode_texts, language_model_task
from endcredits.attribution.topk import TopK, top_k_exact
from endcredits.errors import ConflictError, ManifestError, ValidationError
from endcredits.manifest.records import ManifestRecord, load_manifest
from endcredits.store.blobs import get_blob
from endcredits.store.engine import Store


@dataclass(frozen=True)
class TextAttribution:
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


def ensemble_states(lm: TrainedLM, settings: AttributionSettings) -> list[dict[str, torch.Tensor]]:
    """The parameter states featurized, by ``settings.ensemble``: the final ones, or for ``trajectory``
    every intermediate checkpoint the training run kept (``train_char_lm(checkpoint_steps=...)``), in
    step order, then the final ones."""
    final = lm.model.state_dict()
    if settings.ensemble == "final":
        return [final]
    kept = [lm.checkpoints[step] for step in sorted(lm.checkpoints) if step != lm.steps]
    if not kept:
        raise ValidationError(
            "ensemble 'trajectory' needs the intermediate checkpoints of the training run (train_char_lm("
            "checkpoint_steps=...)); a saved model holds only its final parameters: use ensemble 'final'"
        )
    return [*kept, final]


def featurizer_for(lm: TrainedLM, settings: AttributionSettings) -> Featurizer:
    """The featurizer the settings describe, over the checkpoints of ``settings.ensemble``."""
    task = language_model_task(lm.model, ensemble_states(lm, settings))
    return Featurizer(
        task,
        k=None if settings.projection == "identity" else settings.k,
        seed=settings.seed,
        projection=settings.projection,
        chunk_size=settings.chunk_size,
        # Every parameter but those named: Kronecker layers need one forward and backward pass per chunk;
        # embeddings and norms, unless excluded, a vmap pass more.
        exclude=settings.exclude,
    )


def features_dir(data_dir: Path, manifest_id: str, lm: TrainedLM, settings: AttributionSettings) -> Path:
    """``DATA/features/MANIFEST/CHECKPOINT-FINGERPRINT``: the fingerprint covers the features settings
    and the feature format, so features of other settings or an older format never share a directory."""
    safe = manifest_id.replace("/", "_").replace("@", "-")
    digest = hashlib.sha256(f"{FORMAT}|{settings.fingerprint()}".encode()).hexdigest()
    return Path(data_dir) / "features" / safe / f"{lm.checksum()[:16]}-{digest[:16]}"


def check_checkpoint(lm: TrainedLM, manifest_checkpoint_sha256: str | None, manifest_id: str) -> None:
    if manifest_checkpoint_sha256 is not None and manifest_checkpoint_sha256 != lm.checksum():
        raise ManifestError(
            f"the checkpoint (sha256 {lm.checksum()[:16]}) is not the one manifest {manifest_id} "
            f"was trained into ({manifest_checkpoint_sha256[:16]})"
        )


def featurize_works(
    lm: TrainedLM,
    work_ids: Sequence[str],
    texts: Sequence[str],
    out_dir: Path,
    *,
    settings: AttributionSettings,
    ray: str | None = None,
    progress: Progress | None = None,
) -> FeatureSet:
    """The works' features under ``out_dir`` (computed once; an interrupted run continues; features made
    with other features settings are refused)."""
    if len(work_ids) != len(texts):
        raise ValidationError(f"{len(work_ids)} work ids for {len(texts)} texts")
    featurizer = featurizer_for(lm, settings)
    batch = encode_texts(lm.vocab, texts, length_max=settings.length_chars)
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
    lm: TrainedLM, train: FeatureSet, outputs: Sequence[tuple[str, str]], *, settings: AttributionSettings
) -> TextAttribution:
    """Score every output (id, text) against every featurized work."""
    if not outputs:
        raise ValidationError("no outputs to attribute")
    scorer = scorer_for(train, settings)
    query = scorer.query(_targets(lm, train, outputs, settings))
    scores = score_items(query, scorer.item_matrix)  # the same as scorer.score, without featurizing twice
    top = top_k_exact(query, scorer.item_matrix, min(settings.top_k, len(train.ids)))
    output_ids = tuple(o for o, _ in outputs)
    return TextAttribution(scorer.method, scorer.weaker, train.ids, output_ids, scores, top, settings)


def attribute_payees(
    lm: TrainedLM,
    train: FeatureSet,
    outputs: Sequence[tuple[str, str]],
    credits: CreditMatrix,
    *,
    settings: AttributionSettings,
) -> npt.NDArray[np.float64]:
    """Every payee's score for every output, ``[outputs, payees]``: one pass over ``Psi = W^T G`` per
    output, equal to the credit-weighted sum of its works' scores (no payee left out)."""
    if not outputs:
        raise ValidationError("no outputs to attribute")
    return PayeeIndex(scorer_for(train, settings), credits).score(_targets(lm, train, outputs, settings))


def _targets(
    lm: TrainedLM, train: FeatureSet, outputs: Sequence[tuple[str, str]], settings: AttributionSettings
) -> list[npt.NDArray[np.float32]]:
    """Each output's features under every checkpoint the works were featurized with."""
    featurizer = featurizer_for(lm, settings)
    if list(featurizer.task.checkpoint_sha256s) != train.manifest["checkpoint_sha256"]:
        raise ManifestError(f"features in {train.directory} were computed for other checkpoints; featurize again")
    batch = encode_texts(lm.vocab, [text for _, text in outputs], length_max=settings.length_chars)
    return [featurizer.compute(batch, checkpoint_index=m, ids=[o for o, _ in outputs]) for m in range(train.models)]


def manifest_texts(store: Store, manifest: ManifestRecord) -> list[str]:
    """The training text of each included work, in manifest order, read from the content store and
    checked against its id."""
    texts = []
    for wid in manifest.included:
        try:
            texts.append(get_blob(store.data_dir, wid).decode("utf-8"))
        except UnicodeDecodeError:
            raise ValidationError(f"work {wid} is not UTF-8 text; this model reads text") from None
    return texts


def checkpoint_path(store: Store, model_id: str) -> Path:
    """Where a model's checkpoint lives in the data directory (where ``endcredits demo`` saves it)."""
    return store.data_dir / "models" / f"{model_id}.pt"


def bound_checkpoint(
    store: Store, manifest_id: str, checkpoint: Path | None = None
) -> tuple[TrainedLM, ManifestRecord]:
    """The manifest and the model trained on it: ``checkpoint``, or the model's checkpoint in the data
    directory; refused unless it is the checkpoint the manifest is bound to (when one is bound)."""

    with store.read() as conn:
        manifest = load_manifest(conn, manifest_id)
    if checkpoint is None:
        checkpoint = checkpoint_path(store, manifest.model_id)
        if not checkpoint.is_file():
            raise ConflictError(
                f"no checkpoint for model {manifest.model_id} at models/{manifest.model_id}.pt in the data "
                "directory: name one, or attribute elsewhere and send the scores with the usage batch"
            )
    lm = load_lm(checkpoint)
    check_checkpoint(lm, manifest.checkpoint_sha256, manifest.id)
    return lm, manifest


def featurize_manifest(
    store: Store,
    manifest: ManifestRecord,
    lm: TrainedLM,
    *,
    settings: AttributionSettings,
    ray: str | None = None,
    progress: Progress | None = None,
) -> FeatureSet:
    """The manifest's works' features for ``lm``, under ``DATA/features`` (computed once, then reused)."""
    return featurize_works(
        lm,
        manifest.included,
        manifest_texts(store, manifest),
        features_dir(store.data_dir, manifest.id, lm, settings),
        settings=settings,
        ray=ray,
        progress=progress,
    )


def attribute_manifest(
    store: Store,
    manifest: ManifestRecord,
    lm: TrainedLM,
    outputs: Sequence[tuple[str, str]],
    *,
    settings: AttributionSettings,
    ray: str | None = None,
    progress: Progress | None = None,
) -> TextAttribution:
    """Score every output (id, text) against every work of the manifest, with each output's top works, and
    record the run (its id in ``run_id``). The works are featurized first unless their features are stored
    (``progress`` follows that step)."""
    ids = [o for o, _ in outputs]
    if len(set(ids)) != len(ids):
        raise ValidationError("an output id appears twice")
    train = featurize_manifest(store, manifest, lm, settings=settings, ray=ray, progress=progress)
    att = attribute_outputs(lm, train, outputs, settings=settings)
    scores = RunScores.of_matrix("work", att.output_ids, att.work_ids, att.scores)
    run = new_run(
        manifest, scores, checkpoint_sha256s=[lm.checksum()], method=att.method, weaker=att.weaker, settings=settings
    )
    return replace(att, run_id=record_run(store, run, scores)[0].id)


__all__ = [
    "TextAttribution",
    "attribute_manifest",
    "attribute_outputs",
    "attribute_payees",
    "bound_checkpoint",
    "check_checkpoint",
    "checkpoint_path",
    "ensemble_states",
    "features_dir",
    "featurize_manifest",
    "featurize_works",
    "featurizer_for",
    "manifest_texts",
    "scorer_for",
]
