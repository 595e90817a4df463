"""Parts the generative settings of the LDS benchmark share (``hf-gpt2``, ``image-ddpm``): the counterfactual
check by retraining, and a memo that lets stage B reuse stage A's run when they featurize the same models.

The counterfactual check: for each test example, a model trained on everything with one seed gives the
baseline loss; the same seed retrains without the ``remove`` training examples a method scores highest,
and without as many random ones; the report is the mean increase of the test example's loss (and the
fraction of test examples where a method's removal raised it more than the random one did).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from _lds_methods import MethodRun

CF_TRAIN_SEED = 30_000
"""Model i of the counterfactual check (its baseline and every removal) is trained with this seed + i."""


def counterfactual_by_retraining(
    *,
    n_train: int,
    scores: dict[str, npt.NDArray[np.float64]],
    tests: Sequence[int],
    remove: int,
    seed: int,
    loss_after_training: Callable[[npt.NDArray[np.int64], int, int], float],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """``loss_after_training(kept_train_indices, train_seed, test_column)``: the test example's loss under a
    model trained on the kept training examples with that seed."""
    rng = np.random.default_rng(seed)
    remove = min(remove, n_train // 4)
    started = time.perf_counter()
    everything = np.arange(n_train)
    increase: dict[str, list[float]] = {}
    base_losses = []
    for i, t in enumerate(tests):
        train_seed = CF_TRAIN_SEED + i
        base = loss_after_training(everything, train_seed, t)
        base_losses.append(base)
        removed_by = {m: np.argsort(-s[:, t], kind="stable")[:remove] for m, s in scores.items()}
        removed_by["random"] = rng.choice(n_train, size=remove, replace=False)
        for what, removed in removed_by.items():
            loss = loss_after_training(np.setdiff1d(everything, removed), train_seed, t)
            increase.setdefault(what, []).append(loss - base)
        log(f"    counterfactual {i + 1}/{len(tests)}")
    random = increase.pop("random")
    return {
        "tests": len(tests),
        "removed": remove,
        "seconds": time.perf_counter() - started,
        "baseline_mean_loss": float(np.mean(base_losses)),
        "random_mean_increase": float(np.mean(random)),
        "methods": {
            m: {
                "top_mean_increase": float(np.mean(v)),
                "fraction_above_random": float(np.mean(np.asarray(v) > np.asarray(random))),
            }
            for m, v in increase.items()
        },
    }


class RunMemo:
    """Stage A featurizes one model with the whole lambda grid; stage B, with one model (``--models 1``),
    featurizes the same model again for the chosen lambda. The memo hands stage B stage A's scores
    instead: the same numbers, computed once (the seconds reported are stage A's, for that lambda)."""

    def __init__(self, run: Callable[[str, list[Any], Sequence[float]], MethodRun]) -> None:
        self._run = run
        self._done: dict[tuple[str, tuple[int, ...]], MethodRun] = {}

    def __call__(self, method: str, members: list[Any], lambdas: Sequence[float]) -> MethodRun:
        key = (method, tuple(id(m) for m in members))
        done = self._done.get(key)
        if done is not None and all(lam in done.scores for lam in lambdas):
            return MethodRun(
                {lam: done.scores[lam] for lam in lambdas},
                done.featurize_s,
                {lam: done.score_s[lam] for lam in lambdas},
                done.notes,
            )
        run = self._run(method, members, lambdas)
        self._done[key] = run
        return run
