"""LDS machinery shared by lds.py and its settings: the seeds, the ``Problem`` a setting builds, random half
subsets, the ground-truth cache, Spearman correlation and the score itself.

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

SEED_MAIN = 1
SEED_TUNE = 2
SEED_HALF_ENSEMBLE = 3
SEED_COUNTERFACTUAL = 4
"""The four draws: the reported subsets, the tuning subsets, the half-subset ensembles, the counterfactual."""

GROUND_TRUTH_VERSION = 1
"""Bumped whenever retraining changes, so that stale cached ground truth is never read."""


def half_subsets(n: int, m: int, seed: int) -> npt.NDArray[np.int64]:
    """[m, n // 2] sorted training indices; subset j depends only on (seed, j), not on m."""
    rows = [np.sort(np.random.default_rng([seed, j]).permutation(n)[: n // 2]) for j in range(m)]
    return np.stack(rows).astype(np.int64) if rows else np.zeros((0, n // 2), dtype=np.int64)


def masks_of(subsets: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.bool_]:
    masks = np.zeros((len(subsets), n), dtype=bool)
    for j, rows in enumerate(subsets):
        masks[j, rows] = True
    return masks


def rankdata(values: npt.NDArray[np.floating], axis: int = 0) -> npt.NDArray[np.float64]:
    """Ranks along ``axis`` (1-based), ties given their average rank, like ``scipy.stats.rankdata``."""
    moved = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    out = np.empty_like(flat)
    for r, row in enumerate(flat):
        order = np.argsort(row, kind="mergesort")
        sorted_row = row[order]
        # Boundaries of runs of equal values; each run gets the mean of its positions.
        starts = np.flatnonzero(np.r_[True, sorted_row[1:] != sorted_row[:-1]])
        ends = np.r_[starts[1:], len(row)]
        ranks = np.empty(len(row))
        ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
        out[r] = ranks
    return np.moveaxis(out.reshape(moved.shape), -1, axis)


def spearman_columns(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Spearman correlation of each column of ``a`` with the same column of ``b`` ([m, T] each); NaN for a
    constant column."""
    ra, rb = rankdata(a, axis=0), rankdata(b, axis=0)
    ra -= ra.mean(axis=0)
    rb -= rb.mean(axis=0)
    denom = np.sqrt((ra * ra).sum(axis=0) * (rb * rb).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ra * rb).sum(axis=0) / np.where(denom > 0, denom, 1.0), np.nan)


def lds(
    scores: npt.NDArray[np.floating], masks: npt.NDArray[np.bool_], outputs: npt.NDArray[np.floating]
) -> tuple[float, npt.NDArray[np.float64]]:
    """Mean LDS over test examples and the per-example values.

    ``scores`` [n_train, T] (higher = the training example raises the output), ``masks`` [m, n_train],
    ``outputs`` [m, T] (the measured model output on each subset's retrained model).
    """
    predicted = masks.astype(np.float64) @ np.asarray(scores, dtype=np.float64)
    per_example = spearman_columns(predicted, np.asarray(outputs, dtype=np.float64))
    finite = per_example[np.isfinite(per_example)]
    return (float(finite.mean()) if finite.size else float("nan")), per_example


def noise_ceiling(outputs: npt.NDArray[np.floating], *reseeded: npt.NDArray[np.floating]) -> dict[str, float]:
    """How much of the measured output training noise leaves predictable, from the same subsets retrained
    with other seeds. With output = signal + independent noise, the Spearman correlation r of two
    retrainings estimates the signal's share of the variance, and no attribution (a function of the
    subset alone) can reach an LDS above about sqrt(r) per test example against one retraining, or
    sqrt(R r / (1 + (R - 1) r)) against the mean of R. r is averaged over every pair of seeds."""
    runs = [np.asarray(o, np.float64) for o in (outputs, *reseeded)]
    pairs = [spearman_columns(runs[a], runs[b]) for a in range(len(runs)) for b in range(a + 1, len(runs))]
    r = np.nanmean(np.stack(pairs), axis=0)
    r = np.clip(r[np.isfinite(r)], 0, None)
    out = {
        "seed_to_seed_spearman": float(r.mean()),
        "lds_ceiling_one_seed": float(np.sqrt(r).mean()),
        "lds_ceiling_two_seeds": float(np.sqrt(2 * r / (1 + r)).mean()),
    }
    if len(runs) > 2:
        seeds = len(runs)
        out[f"lds_ceiling_{seeds}_seeds"] = float(np.sqrt(seeds * r / (1 + (seeds - 1) * r)).mean())
    return out


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
