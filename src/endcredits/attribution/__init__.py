"""Attribution: which training works moved one output, and by how much.

- ``charlm``: the demo model, a small character-level language model trained on ABC tunes.
- ``gradients``: per-example loss gradients projected to k dimensions, and a TracIn-style score.
"""

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
from endcredits.attribution.gradients import featurize, tracin_scores

__all__ = [
    "CharLM",
    "TrainedLM",
    "Vocab",
    "build_vocab",
    "featurize",
    "generate",
    "load_lm",
    "save_lm",
    "tracin_scores",
    "train_char_lm",
]
