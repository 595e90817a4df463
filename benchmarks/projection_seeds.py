"""The LDS of ``mnist-mlp`` across projection seeds: endcredits' dense Gaussian against traker's.

Both project the same exact margin gradients (``Featurizer`` with ``projection="identity"``) to k dimensions,
and both are scored by ``TRAKScorer`` with Q = 1 - p, so the only difference left is the random matrix:
endcredits' ``BlockGaussianProjector`` (seed ``checkpoint_seed(base, m)`` for model m, as the product
projects an ensemble) and traker 0.3.2's ``BasicProjector`` (normal, seed ``base``, ``model_id`` m; dattri
0.3.0's CPU projector derives its blocks' seeds the same way, so at the same seed it draws the same matrix).
Every value of ``--bases`` is one draw of every model's matrix.

- ``--models 1``: the first "full" model (the one the LDS benchmark chooses lambda with), tuning draw.
- ``--models E``: the E half-data models of the recipe ``lds.py`` chose ("half"), tuning and main draws.

The draws and ensembles are ``lds.py``'s (same seeds, same ground-truth cache)::

    PYTHONPATH=src:/tmp/peers .venv/bin/python benchmarks/projection_seeds.py --idx /tmp/fashion \\
        --models 1 --bases 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import _lds_core as core
import numpy as np
import numpy.typing as npt
import torch
from _lds_classifier import RECIPES, margins, train_models
from _lds_data import ImageData, load_images

SETTING = "mnist-mlp"
N_TRAIN, N_REPORT, N_TUNE = 5000, 500, 100
LAMBDAS_RELATIVE = (0.0, 0.1, 1.0)
IDX_FILES = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "test-images": "t10k-images-idx3-ubyte",
    "test-labels": "t10k-labels-idx1-ubyte",
}
Draws = dict[str, tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]]


def _gradients(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, npt.NDArray[np.float32]]:
    """Exact margin gradients of every example ``[n, parameters]`` and the training examples' Q."""
    from endcredits.attribution.featurizer import Featurizer
    from endcredits.attribution.task import classification_task

    featurizer = Featurizer(classification_task(model, [model.state_dict()]), k=None, seed=0, projection="identity")
    grads = torch.from_numpy(featurizer.compute((x, y), role="train"))
    return grads, featurizer.weights((x[:N_TRAIN], y[:N_TRAIN]))


def _project(
    grads: torch.Tensor, sizes: dict[str, int], k: int, base: int, m: int
) -> dict[str, npt.NDArray[np.float32]]:
    """Both projections of ``grads`` at ``k``, N(0, 1/k) entries each."""
    from trak.projectors import BasicProjector

    from endcredits.attribution.featurizer import checkpoint_seed
    from endcredits.attribution.projection import BlockGaussianProjector

    parts, start = {}, 0
    for name, size in sizes.items():
        parts[name], start = grads[:, start : start + size], start + size
    ours = BlockGaussianProjector(sizes, k=k, seed=checkpoint_seed(base, m)).project(parts).numpy()
    theirs = BasicProjector(sum(sizes.values()), k, base, "normal", "cpu", model_id=m).project(grads, model_id=m)
    return {"endcredits": ours, "traker": theirs.numpy() / np.sqrt(k)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idx", type=Path, required=True, help="folder of the four idx files (fashion_idx.py)")
    parser.add_argument("--models", type=int, default=1)
    parser.add_argument("--k", type=int, default=512)
    parser.add_argument("--bases", default="0,1,2,3,4", help="comma-separated base seeds")
    parser.add_argument("--cache-dir", type=Path, default=Path(__file__).parent / ".cache")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bases = [int(b) for b in args.bases.split(",")]
    started = time.perf_counter()
    data = load_images(
        {key: args.idx / name for key, name in IDX_FILES.items()}, n_train=N_TRAIN, n_test=N_REPORT + N_TUNE
    )
    x = torch.from_numpy(np.concatenate([data.x_train, data.x_test]))
    y = torch.from_numpy(np.concatenate([data.y_train, data.y_test]))
    draws = _draws(args, data)
    if args.models == 1:
        subsets, seeds = np.arange(N_TRAIN)[None], [10_000]
    else:
        subsets = core.half_subsets(N_TRAIN, args.models, core.SEED_HALF_ENSEMBLE)
        seeds = [20_000 + i for i in range(args.models)]
    trained = train_models(SETTING, data.x_train, data.y_train, subsets, seeds, classes=data.classes)
    features: dict[tuple[str, int], list[npt.NDArray[np.float32]]] = {}
    weights = []
    for m in range(args.models):
        model = trained.module(m)
        grads, q = _gradients(model, x, y)
        weights.append(q)
        sizes = {name: p.numel() for name, p in model.named_parameters()}
        for base in bases:
            for kind, projected in _project(grads, sizes, args.k, base, m).items():
                features.setdefault((kind, base), []).append(projected)
    report = {key: _lds_row(draws, feats, weights) for key, feats in sorted(features.items())}
    print(json.dumps({f"{kind} base {base}": row for (kind, base), row in report.items()}, indent=1))
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


def _draws(args: argparse.Namespace, data: ImageData) -> Draws:
    """The tuning draw (and the main one for an ensemble), from lds.py's cache or retrained as lds.py does."""
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)

    def retrain(subsets: npt.NDArray[np.int64], seeds: Sequence[int]) -> npt.NDArray[np.float64]:
        trained = train_models(SETTING, data.x_train, data.y_train, subsets, seeds, classes=data.classes)
        return margins(trained.logits(x_test), y_test).numpy().astype(np.float64)

    key = {"setting": SETTING, "data": data.digest, "n_test": N_REPORT + N_TUNE, "recipe": repr(RECIPES[SETTING])}
    plan = [("tune", core.SEED_TUNE, 30)] + ([("main", core.SEED_MAIN, 100)] if args.models > 1 else [])
    return {
        name: core.ground_truth_draw(
            args.cache_dir, SETTING, key, N_TRAIN, m, draw=name, seed=seed, retrain=retrain, log=print
        )
        for name, seed, m in plan
    }


def _lds_row(
    draws: Draws,
    features: list[npt.NDArray[np.float32]],
    weights: list[npt.NDArray[np.float32]],
) -> dict[str, dict[str, float]]:
    """LDS per relative lambda on each draw (tuning: the held-out columns; main: the reported ones)."""
    from endcredits.attribution.scorers import TRAKScorer
    from endcredits.attribution.validity import lds

    columns = {"tune": slice(N_REPORT, N_REPORT + N_TUNE), "main": slice(0, N_REPORT)}
    row = {}
    for lam in LAMBDAS_RELATIVE:
        scorer = TRAKScorer(lam).fit([f[:N_TRAIN] for f in features], weights)
        scores = scorer.score([f[N_TRAIN:] for f in features]).T
        row[f"{lam:g} rel."] = {
            name: round(lds(scores[:, columns[name]], masks, outputs[:, columns[name]])[0], 4)
            for name, (masks, outputs) in draws.items()
        }
    return row


if __name__ == "__main__":
    raise SystemExit(main())
