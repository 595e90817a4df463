"""LDS machinery shared by lds.py and its settings: the seeds, the ``Problem`` a setting builds, random half
subsets, the ground-truth cache, Spearman correlation and the score itself. The subsets, Spearman, LDS and
noise ceiling are ``endcredits.attribution.validity``'s, which `endcredits attribution validate` measures
with: one implementation, re-exported here.

LDS (TRAK, Park et al. 2023, Def. 2.3): draw m subsets S_j of half the training set; retrain on each and
record the model output f(z; S_j) for every test example z; an attribution tau predicts
g(z, S_j) = sum_{i in S_j} tau(z)_i. LDS(z) is the Spearman correlation of g(z, .) and f(z, .) over the m
subsets, and the benchmark reports its mean over test examples.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from endcredits.attribution.validity import (
    half_subsets,
    lds,
    masks_of,
    noise_ceiling,
    rankdata,
    spearman_columns,
)

SEED_MAIN = 1
SEED_TUNE = 2
SEED_HALF_ENSEMBLE = 3
SEED_COUNTERFACTUAL = 4
"""The four draws: the reported subsets, the tuning subsets, the half-subset ensembles, the counterfactual."""

GROUND_TRUTH_VERSION = 1
"""Bumped whenever retraining changes, so that stale cached ground truth is never read."""


def cache_key(parts: dict[str, object]) -> str:
    text = json.dumps({"version": GROUND_TRUTH_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached_outputs(
    path: Path,
    subsets: npt.NDArray[np.int64],
    compute: Callable[[npt.NDArray[np.int64], list[int]], npt.NDArray[np.float64]],
) -> tuple[npt.NDArray[np.float64], int]:
    """The outputs [m, T] of models retrained on ``subsets``, read from ``path`` where already computed.

    ``compute(subsets_missing, their_row_numbers)`` retrains the missing rows. Rows are stored with their
    subsets, so a cache made with m subsets serves any m' <= m and grows when more are asked for.
    Returns the outputs and how many rows were computed now.
    """
    have_subsets = np.zeros((0, subsets.shape[1]), dtype=np.int64)
    have_outputs: npt.NDArray[np.float64] | None = None
    if path.is_file():
        with np.load(path) as stored:
            have_subsets, have_outputs = stored["subsets"], stored["outputs"]
        k = min(len(have_subsets), len(subsets))
        if have_subsets.shape[1:] != subsets.shape[1:] or not np.array_equal(have_subsets[:k], subsets[:k]):
            have_subsets, have_outputs = have_subsets[:0], None  # a different draw: start again
    done = len(have_subsets) if have_outputs is not None else 0
    if done >= len(subsets):
        assert have_outputs is not None
        return have_outputs[: len(subsets)], 0
    missing = list(range(done, len(subsets)))
    new = np.asarray(compute(subsets[done:], missing), dtype=np.float64)
    outputs = new if have_outputs is None or done == 0 else np.concatenate([have_outputs[:done], new])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, subsets=subsets, outputs=outputs)
    partial.replace(path)
    return outputs, len(missing)


GT_SEED_OFFSET = {"main": 1_000_000, "tune": 2_000_000, "reseed": 5_000_000}
"""Model j of a draw is trained with seed offset + j. The main draw's subsets retrained with seed s >= 2
form the draw ``reseed_draw(s)``: "reseed" for s = 2, "reseed-3", "reseed-4", ... after it."""


def reseed_draw(seed_number: int) -> str:
    """The draw name of the main subsets' retraining number ``seed_number`` (2, 3, ...)."""
    if seed_number < 2:
        raise ValueError("the main draw itself is seed 1")
    return "reseed" if seed_number == 2 else f"reseed-{seed_number}"


def seed_offset(draw: str) -> int:
    if draw.startswith("reseed-"):
        return GT_SEED_OFFSET["reseed"] + (int(draw.removeprefix("reseed-")) - 2) * 1_000_000
    return GT_SEED_OFFSET[draw]


def ground_truth_draw(
    cache_dir: Path,
    label: str,
    key_parts: dict[str, object],
    n_train: int,
    m: int,
    *,
    draw: str,
    seed: int,
    retrain: Callable[[npt.NDArray[np.int64], list[int]], npt.NDArray[np.float64]],
    log: Callable[[str], None],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Masks [m, n_train] and outputs [m, targets] of one draw of half subsets (``draw`` is "main" or "tune"),
    from the cache or by ``retrain(subsets, seeds)``."""
    subsets = half_subsets(n_train, m, seed)
    key = cache_key({**key_parts, "n_train": n_train, "draw_seed": seed, "draw": draw})
    path = Path(cache_dir) / "lds" / f"{label}-{draw}-{key}.npz"
    started = time.perf_counter()
    offset = seed_offset(draw)
    outputs, computed = cached_outputs(path, subsets, lambda s, rows: retrain(s, [offset + r for r in rows]))
    log(
        f"ground truth '{draw}': {m} subsets ({computed} retrained now, {time.perf_counter() - started:.1f} s);"
        f" cache {path.name}"
    )
    return masks_of(subsets, n_train), outputs


def ground_truth_draws(
    args: Any,
    label: str,
    key_parts: dict[str, object],
    n_train: int,
    *,
    retrain: Callable[[npt.NDArray[np.int64], list[int]], npt.NDArray[np.float64]],
    log: Callable[[str], None],
) -> dict[str, tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]]:
    """Every draw of a setting whose targets are the same in each: the main subsets, the tuning subsets,
    and the main subsets retrained ``args.seeds_per_subset - 1`` more times (``reseed_draw``)."""
    plan = [("main", SEED_MAIN, args.subsets), ("tune", SEED_TUNE, args.tune_subsets)]
    plan += [(reseed_draw(r), SEED_MAIN, args.subsets) for r in range(2, args.seeds_per_subset + 1)]
    return {
        name: ground_truth_draw(
            args.cache_dir, label, key_parts, n_train, m, draw=name, seed=seed, retrain=retrain, log=log
        )
        for name, seed, m in plan
    }


@dataclass
class Problem:
    """What a setting hands to the generic selection and report code."""

    setting: str
    n_train: int
    report_cols: npt.NDArray[np.int64]
    tune_cols: npt.NDArray[np.int64]
    main_masks: npt.NDArray[np.bool_]
    main_outputs: npt.NDArray[np.float64]
    tune_masks: npt.NDArray[np.bool_]
    tune_outputs: npt.NDArray[np.float64]
    ensembles: dict[str, list[Any]]
    """recipe -> E trained models."""
    run_method: Callable[[str, list[Any], Sequence[float]], Any]
    """(method, models, lambdas) -> _lds_methods.MethodRun over all target columns."""
    counterfactual: Callable[[dict[str, npt.NDArray[np.float64]], list[int], int, int], dict[str, Any]] | None
    info: dict[str, Any]
    main_outputs_reseeded: list[npt.NDArray[np.float64]] = field(default_factory=list)
    """The main draw's subsets retrained with seeds 2..R (``--seeds-per-subset R``): for the noise ceiling and
    the LDS against the mean of the R seeds per subset."""


__all__ = [
    "GROUND_TRUTH_VERSION",
    "GT_SEED_OFFSET",
    "SEED_COUNTERFACTUAL",
    "SEED_HALF_ENSEMBLE",
    "SEED_MAIN",
    "SEED_TUNE",
    "Problem",
    "cache_key",
    "cached_outputs",
    "ground_truth_draw",
    "half_subsets",
    "lds",
    "masks_of",
    "noise_ceiling",
    "rankdata",
    "reseed_draw",
    "seed_offset",
    "spearman_columns",
]
