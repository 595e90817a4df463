"""Attribution: which training works moved one output, and by how much.

- ``task``: the contract a model owner fills in (model, checkpoints, per-example functions), with
  ``classification_task`` and ``language_model_task``.
- ``settings``: ``AttributionSettings``, every choice that changes the numbers, checked, saved with the features.
- ``featurizer``: projected per-example gradients (Kronecker, Gaussian or none); ``saver`` writes them
  memory-mapped and resumes an interrupted run.
- ``scorers``: TRAK (the default), TracIn, embedding similarity (labelled weaker); all linear in the
  work features.
- ``payees``: exact per-payee scores through ``Psi = W^T G``, and the rule from scores to weights.
- ``topk``: the works that explain an output, by exact scan or FAISS, with recall measured.
- ``charlm`` and ``gradients``: the demo's character model and its first-cut TracIn features.

Usage, for a classifier trained as an ensemble of checkpoints::

    from endcredits.attribution import Featurizer, TRAKScorer, classification_task

    task = classification_task(model, [m.state_dict() for m in members])
    featurizer = Featurizer(task, k=4096, seed=0, projection="kronecker")
    train = featurizer.featurize((x_train, y_train), work_ids, out_dir=Path("features/train"))
    targets = [featurizer.compute((x_out, y_out), checkpoint_index=m) for m in range(train.models)]
    scorer = TRAKScorer(lambda_=1.0).fit(train.features_per_model(), train.weights_per_model())
    scores = scorer.score(targets)  # float64 [outputs, works]

    credits = CreditMatrix.from_triplets(work_index, payee_index, share, works=n_works, payees=n_payees)
    payee_scores = PayeeIndex(scorer, credits).score(targets)  # [outputs, payees], O(payees x d) each
    explained = top_k_exact(scorer.query(targets), scorer.item_matrix, k=10)

For a small model, ``projection="identity"`` keeps the exact gradients; for logistic regression,
``featurize(..., curvature=True)`` and ``TRAKScorer(n * weight_decay, lambda_relative=False).fit(...,
curvature_per_model=train.curvature_per_model())`` give the influence function with the exact Hessian.

The names below load on first use (PEP 562), so ``endcredits.attribution.settings`` imports without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from endcredits.attribution.charlm import (
        CharLM,
        TrainedLM,
        Vocab,
        build_vocab,
        generate,
        load_lm,
        save_lm,
        train_char_lm,
    )
    from endcredits.attribution.featurizer import Featurizer
    from endcredits.attribution.gradients import featurize, tracin_scores
    from endcredits.attribution.payees import CreditMatrix, PayeeIndex
    from endcredits.attribution.saver import FeatureSaver, FeatureSet
    from endcredits.attribution.scorers import (
        EmbeddingSimilarityScorer,
        InfluenceScorer,
        LinearScorer,
        TracInScorer,
        TRAKScorer,
    )
    from endcredits.attribution.settings import AttributionSettings, Projection
    from endcredits.attribution.task import (
        AttributionTask,
        checkpoint_sha256,
        classification_task,
        encode_texts,
        language_model_task,
    )
    from endcredits.attribution.topk import FaissIndex, TopK, faiss_recall, recall_at_k, top_k_exact

_MODULE_OF = {
    "CharLM": "endcredits.attribution.charlm",
    "TrainedLM": "endcredits.attribution.charlm",
    "Vocab": "endcredits.attribution.charlm",
    "build_vocab": "endcredits.attribution.charlm",
    "generate": "endcredits.attribution.charlm",
    "load_lm": "endcredits.attribution.charlm",
    "save_lm": "endcredits.attribution.charlm",
    "train_char_lm": "endcredits.attribution.charlm",
    "Featurizer": "endcredits.attribution.featurizer",
    "FeatureSaver": "endcredits.attribution.saver",
    "FeatureSet": "endcredits.attribution.saver",
    "featurize": "endcredits.attribution.gradients",
    "tracin_scores": "endcredits.attribution.gradients",
    "CreditMatrix": "endcredits.attribution.payees",
    "PayeeIndex": "endcredits.attribution.payees",
    "EmbeddingSimilarityScorer": "endcredits.attribution.scorers",
    "InfluenceScorer": "endcredits.attribution.scorers",
    "LinearScorer": "endcredits.attribution.scorers",
    "TracInScorer": "endcredits.attribution.scorers",
    "TRAKScorer": "endcredits.attribution.scorers",
    "AttributionSettings": "endcredits.attribution.settings",
    "Projection": "endcredits.attribution.settings",
    "AttributionTask": "endcredits.attribution.task",
    "checkpoint_sha256": "endcredits.attribution.task",
    "classification_task": "endcredits.attribution.task",
    "encode_texts": "endcredits.attribution.task",
    "language_model_task": "endcredits.attribution.task",
    "FaissIndex": "endcredits.attribution.topk",
    "TopK": "endcredits.attribution.topk",
    "faiss_recall": "endcredits.attribution.topk",
    "recall_at_k": "endcredits.attribution.topk",
    "top_k_exact": "endcredits.attribution.topk",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AttributionSettings",
    "AttributionTask",
    "CharLM",
    "CreditMatrix",
    "EmbeddingSimilarityScorer",
    "FaissIndex",
    "FeatureSaver",
    "FeatureSet",
    "Featurizer",
    "InfluenceScorer",
    "LinearScorer",
    "PayeeIndex",
    "Projection",
    "TRAKScorer",
    "TopK",
    "TracInScorer",
    "TrainedLM",
    "Vocab",
    "build_vocab",
    "checkpoint_sha256",
    "classification_task",
    "encode_texts",
    "faiss_recall",
    "featurize",
    "generate",
    "language_model_task",
    "load_lm",
    "recall_at_k",
    "save_lm",
    "top_k_exact",
    "tracin_scores",
    "train_char_lm",
]
