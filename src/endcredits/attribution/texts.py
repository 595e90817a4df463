"""Attributing generated texts to a manifest's text works, for a trained ``CharLM`` (the demo's model).

The training works' features are written once per (manifest, checkpoint, k, seed) under
``DATA/features/`` and reused: ``endcredits featurize`` fills them (resumable, on Ray when given a
cluster), ``endcredits attribute`` and the demo read them. Each output is then featurized and scored
against every work:

- ``trak`` (default): ``phi(output)^T (Phi^T Phi + lambda I)^-1 phi(work)``, Kronecker-projected
  gradients (of the linear layers) of each work's summed log-likelihood and of the output's mean
  log-likelihood per character, over the first ``LENGTH_CHARS_DEFAULT`` characters;
- ``tracin``: the plain dot product of the same features (the first cut, kept for comparison).

The top works per output (exact scan) explain the scores; the method and whether it is the weaker
kind travel with them, so a statement can say how the numbers were made.

``featurize_manifest`` and ``attribute_manifest`` are the stage's two tasks over a store, the one path
the CLI, the API and the demo call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from endcredits.attribution.charlm import TrainedLM, load_lm
from endcredits.attribution.featurizer import FeatureSet, Featurizer, Progress
from endcredits.attribution.payees import CreditMatrix, PayeeIndex
from endcredits.attribution.scorers import LinearScorer, TracInScorer, TRAKScorer, score_items
from endcredits.attribution.task import encode_texts, language_model_task
from endcredits.attribution.topk import TopK, top_k_exact
from endcredits.errors import ConflictError, ManifestError, ValidationError
from endcredits.manifest.records import ManifestRecord, load_manifest
from endcredits.store.blobs import get_blob
from endcredits.store.engine import Store

Method = Literal["trak", "tracin"]
METHODS: tuple[Method, ...] = ("trak", "tracin")

LENGTH_CHARS_DEFAULT = 256
"""Characters of each text that are featurized: a tune's header and its first phrases (the median tune
in the corpus has 305 characters); the model's attention costs grow with the length."""

K_DEFAULT = 1_024
LAMBDA_DEFAULT = 100.0
"""TRAK's ridge, relative to the mean eigenvalue of ``Phi^T Phi`` (see ``TRAKScorer``): the value
``benchmarks/lds.py --setting abc-lm`` chose for this model on its tuning draw (never on the reported
ground truth)."""

CHUNK_SIZE = 32


@dataclass(frozen=True)
class TextAttribution:
    method: str
    weaker: bool
    work_ids: tuple[str, ...]
    output_ids: tuple[str, ...]
    scores: npt.NDArray[np.float64]  # [outputs, works]
    top: TopK  # per output, the works with the highest scores

    def top_works(self, row: int) -> list[tuple[str, float]]:
        """The explaining works of output ``row``, best first, with their scores."""
        return [
            (self.work_ids[int(j)], float(s)) for j, s in zip(self.top.indices[row], self.top.scores[row]) if j >= 0
        ]


def featurizer_for(lm: TrainedLM, *, k: int, seed: int) -> Featurizer:
    task = language_model_task(lm.model, [lm.model.state_dict()])
    # Linear layers only (every weight matrix of the model but the embedding): the Kronecker path needs
    # one forward and backward pass per chunk, while embeddings and norms would need a vmap pass more.
    return Featurizer(task, k=k, seed=seed, projection="kronecker", chunk_size=CHUNK_SIZE, other_parameters=False)


def features_dir(data_dir: Path, manifest_id: str, lm: TrainedLM, *, k: int, seed: int) -> Path:
    safe = manifest_id.replace("/", "_").replace("@", "-")
    return Path(data_dir) / "features" / safe / f"{lm.checksum()[:16]}-k{k}-s{seed}"


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
    k: int,
    seed: int,
    ray: str | None = None,
    progress: Progress | None = None,
) -> FeatureSet:
    """The works' features under ``out_dir`` (computed once; an interrupted run continues)."""
    if len(work_ids) != len(texts):
        raise ValidationError(f"{len(work_ids)} work ids for {len(texts)} texts")
    featurizer = featurizer_for(lm, k=k, seed=seed)
    batch = encode_texts(lm.vocab, texts, length_max=LENGTH_CHARS_DEFAULT)
    if ray is None:
        return featurizer.featurize(batch, list(work_ids), out_dir, role="train", progress=progress)
    from endcredits.attribution.distributed import featurize_sharded, runner_for

    return featurize_sharded(
        featurizer, batch, list(work_ids), out_dir, runner=runner_for(ray), role="train", progress=progress
    )


def scorer_for(method: str, train: FeatureSet) -> LinearScorer:
    if method == "trak":
        return TRAKScorer(lambda_=LAMBDA_DEFAULT).fit(train.features_per_model(), train.weights_per_model())
    if method == "tracin":
        return TracInScorer().fit(train.features_per_model())
    raise ValidationError(f"method {method!r} is not one of {', '.join(METHODS)}")


def attribute_outputs(
    lm: TrainedLM,
    train: FeatureSet,
    outputs: Sequence[tuple[str, str]],
    *,
    k: int,
    seed: int,
    method: str = "trak",
    top_k: int = 5,
) -> TextAttribution:
    """Score every output (id, text) against every featurized work."""
    if not outputs:
        raise ValidationError("no outputs to attribute")
    scorer = scorer_for(method, train)
    query = scorer.query(_targets(lm, train, outputs, k=k, seed=seed))
    scores = score_items(query, scorer.item_matrix)  # the same as scorer.score, without featurizing twice
    top = top_k_exact(query, scorer.item_matrix, min(top_k, len(train.ids)))
    return TextAttribution(scorer.method, scorer.weaker, train.ids, tuple(o for o, _ in outputs), scores, top)


def attribute_payees(
    lm: TrainedLM,
    train: FeatureSet,
    outputs: Sequence[tuple[str, str]],
    credits: CreditMatrix,
    *,
    k: int,
    seed: int,
    method: str = "trak",
) -> npt.NDArray[np.float64]:
    """Every payee's score for every output, ``[outputs, payees]``: one pass over ``Psi = W^T G`` per
    output, equal to the credit-weighted sum of its works' scores (no payee left out)."""
    if not outputs:
        raise ValidationError("no outputs to attribute")
    return PayeeIndex(scorer_for(method, train), credits).score(_targets(lm, train, outputs, k=k, seed=seed))


def _targets(
    lm: TrainedLM, train: FeatureSet, outputs: Sequence[tuple[str, str]], *, k: int, seed: int
) -> list[npt.NDArray[np.float32]]:
    """Each output's features under every checkpoint the works were featurized with."""
    featurizer = featurizer_for(lm, k=k, seed=seed)
    batch = encode_texts(lm.vocab, [text for _, text in outputs], length_max=LENGTH_CHARS_DEFAULT)
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
    k: int,
    seed: int,
    ray: str | None = None,
    progress: Progress | None = None,
) -> FeatureSet:
    """The manifest's works' features for ``lm``, under ``DATA/features`` (computed once, then reused)."""
    return featurize_works(
        lm,
        manifest.included,
        manifest_texts(store, manifest),
        features_dir(store.data_dir, manifest.id, lm, k=k, seed=seed),
        k=k,
        seed=seed,
        ray=ray,
        progress=progress,
    )


def attribute_manifest(
    store: Store,
    manifest: ManifestRecord,
    lm: TrainedLM,
    outputs: Sequence[tuple[str, str]],
    *,
    k: int,
    seed: int,
    method: str = "trak",
    top_k: int = 5,
    ray: str | None = None,
    progress: Progress | None = None,
) -> TextAttribution:
    """Score every output (id, text) against every work of the manifest, with each output's top works.
    The works are featurized first unless their features are stored (``progress`` follows that step)."""
    if method not in METHODS:
        raise ValidationError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    ids = [o for o, _ in outputs]
    if len(set(ids)) != len(ids):
        raise ValidationError("an output id appears twice")
    train = featurize_manifest(store, manifest, lm, k=k, seed=seed, ray=ray, progress=progress)
    return attribute_outputs(lm, train, outputs, k=k, seed=seed, method=method, top_k=top_k)


__all__ = [
    "K_DEFAULT",
    "LAMBDA_DEFAULT",
    "METHODS",
    "TextAttribution",
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
    "manifest_texts",
    "scorer_for",
]
