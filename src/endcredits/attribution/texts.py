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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from endcredits.attribution.charlm import TrainedLM
from endcredits.attribution.featurizer import FeatureSet, Featurizer, Progress
from endcredits.attribution.payees import CreditMatrix, PayeeIndex
from endcredits.attribution.scorers import LinearScorer, TracInScorer, TRAKScorer, score_items
from endcredits.attribution.task import encode_texts, language_model_task
from endcredits.attribution.topk import TopK, top_k_exact
from endcredits.errors import ManifestError, ValidationError

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
    from endcredits.scale import featurize_sharded, runner_for

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


__all__ = [
    "K_DEFAULT",
    "LAMBDA_DEFAULT",
    "METHODS",
    "TextAttribution",
    "attribute_outputs",
    "attribute_payees",
    "check_checkpoint",
    "features_dir",
    "featurize_works",
    "featurizer_for",
    "scorer_for",
]
