"""Attribution: which training works moved one output, and by how much.

The residual should follow influence, so this package scores, for one output, how much each training
work moved the model toward it, reproducibly (same model, manifest, method and seed: same scores). The
engine takes any ``torch.nn.Module`` through a task contract (``task``), projects per-example gradients
(``featurizer``, saved by ``saver``), fits a scorer linear in the work features (``scorers``, TRAK by
default), sums scores exactly per payee (``payees``) and finds the works that explain an output
(``topk``); ``settings`` holds every choice that changes the numbers. ``models`` loads
any model (the demo's ``charlm``, Hugging Face causal LMs in ``hf``, diffusers UNets in ``diffusion``, an
operator's ``module:function``) behind one interface; ``pipeline`` and ``distributed`` are what the CLI,
the API and the demo call.

The names below load on first use (PEP 562), so ``endcredits.attribution.settings`` imports without torch.

See docs/concepts/attribution.md, "The attribution engine" (a worked example: "Using the engine").
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
