"""Validity per model: how well a model's attribution predicts retraining, as the linear datamodeling score.

LDS (TRAK, Park et al. 2023, Def. 2.3): draw m random half subsets S_j of the manifest's works; retrain the
model on each (the operator's ``train(subset_work_ids, seed) -> checkpoint``) and measure every output
z on each retrained model, f(z; S_j); an attribution tau predicts g(z, S_j) = sum_{i in S_j} tau(z)_i.
LDS(z) is the Spearman correlation of g(z, .) and f(z, .) over the m subsets; the figure is its mean
over the outputs. Each subset is retrained with R seeds: the LDS is given against the first seed and
against the mean of the R, beside the noise ceiling, the LDS that training noise leaves reachable.

The LDS functions here (``half_subsets`` to ``noise_ceiling``) are the ones ``benchmarks/lds.py`` uses,
through ``benchmarks/_lds_core.py``. ``measure_outputs``, ``ground_truth`` and ``validate`` are pure (no
store); ``validate_manifest`` is the stage's task, which ``endcredits attribution validate`` calls: it
scores the outputs against the manifest's works, retrains, measures and records the figure with the
model (``validity_records``). Importing this module loads no torch.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from endcredits.attribution.settings import AttributionSettings
from endcredits.errors import EndcreditsError, LimitExceededError, ValidationError

if TYPE_CHECKING:
    from endcredits.attribution.models import AttributionModel
    from endcredits.attribution.validity_records import ModelValidity
    from endcredits.manifest.records import ManifestRecord
    from endcredits.store.engine import Store

SUBSETS_MIN = 2
SUBSETS_MAX = 1_000
SEEDS_MIN = 1
SEEDS_MAX = 16
RETRAININGS_MAX = 4_096
"""Most models one validation retrains (subsets x seeds)."""
OUTPUTS_MAX = 10_000
DRAW_SEED = 1
"""The seed of the half subsets: subset j depends only on (DRAW_SEED, j) and the number of works."""

TrainFunction = Callable[[list[str], int], Any]
"""The operator's ``train(subset_work_ids, seed) -> Path`` of a checkpoint ``load_model`` reads."""
Progress = Callable[[int, int], None]
"""``progress(done, total)`` after each retraining."""
ScoresFunction = Callable[
    ["Store", "ManifestRecord", "AttributionModel", Sequence[tuple[str, bytes]], AttributionSettings],
    tuple[Sequence[str], npt.NDArray[np.float64]],
]
"""``(store, manifest, model, outputs, settings) -> (work ids, scores [outputs, works])``."""


# The LDS --------------------------------------------------------------------------------------


def half_subsets(n: int, m: int, seed: int) -> npt.NDArray[np.int64]:
    """[m, n // 2] sorted training indices; subset j depends only on (seed, j), not on m."""
    rows = [np.sort(np.random.default_rng([seed, j]).permutation(n)[: n // 2]) for j in range(m)]
    return np.stack(rows).astype(np.int64) if rows else np.zeros((0, n // 2), dtype=np.int64)


def masks_of(subsets: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.bool_]:
    """[m, n]: row j is True at the indices of subset j."""
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


# The report -----------------------------------------------------------------------------------


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class ValidityReport:
    """One validation's figures. An LDS or ceiling is None where no output varied across the subsets."""

    lds: float | None
    """Mean LDS against the first seed's retraining of each subset."""
    lds_seed_mean: float | None
    """Mean LDS against the mean of the ``seeds`` retrainings of each subset: the figure shown."""
    seed_to_seed_spearman: float | None
    """How alike two retrainings of one subset are (None with one seed)."""
    ceiling_one_seed: float | None
    ceiling_seed_mean: float | None
    """The noise ceiling of ``lds`` and of ``lds_seed_mean`` (None with one seed)."""
    subsets: int
    seeds: int
    outputs: int
    works: int
    lds_per_output: tuple[float | None, ...]
    """Each output's LDS against the seed mean, in the order of the outputs."""

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "lds_per_output": list(self.lds_per_output)}


def _check_counts(subsets: int, seeds: int) -> None:
    if isinstance(subsets, bool) or not isinstance(subsets, int) or not SUBSETS_MIN <= subsets <= SUBSETS_MAX:
        raise ValidationError(f"subsets must be in [{SUBSETS_MIN}, {SUBSETS_MAX}], not {subsets!r}: a rank needs two")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not SEEDS_MIN <= seeds <= SEEDS_MAX:
        raise ValidationError(f"seeds must be in [{SEEDS_MIN}, {SEEDS_MAX}], not {seeds!r}")
    if subsets * seeds > RETRAININGS_MAX:
        raise LimitExceededError(
            f"{subsets} subsets x {seeds} seeds is {subsets * seeds} retrainings, over RETRAININGS_MAX="
            f"{RETRAININGS_MAX}; ask for fewer"
        )


def validate(
    scores: npt.NDArray[np.floating], subsets: npt.NDArray[np.int64], truth: npt.NDArray[np.floating]
) -> ValidityReport:
    """The LDS of ``scores`` [outputs, works] over ``subsets`` [m, works // 2] (indices of works) against
    ``truth`` [m, seeds, outputs] (``ground_truth``), with its noise ceiling."""
    scores, truth = np.asarray(scores, np.float64), np.asarray(truth, np.float64)
    if scores.ndim != 2 or truth.ndim != 3 or np.asarray(subsets).ndim != 2:
        raise ValidationError(
            "validate takes scores [outputs, works], subsets [m, works // 2], truth [m, seeds, outputs]"
        )
    (t, n), (m, seeds, t_truth) = scores.shape, truth.shape
    _check_counts(m, seeds)
    if len(subsets) != m or t_truth != t:
        raise ValidationError(f"truth {truth.shape} does not fit {len(subsets)} subsets and {t} outputs")
    if subsets.size and not 0 <= int(subsets.min()) <= int(subsets.max()) < n:
        raise ValidationError(f"subsets index works outside [0, {n})")
    if not (np.isfinite(scores).all() and np.isfinite(truth).all()):
        raise ValidationError("scores and measured outputs must be finite numbers")
    masks = masks_of(subsets, n)
    first, _ = lds(scores.T, masks, truth[:, 0, :])
    mean, per_output = lds(scores.T, masks, truth.mean(axis=1))
    ceilings: dict[str, float] = {}
    if seeds >= 2:
        with warnings.catch_warnings():  # every output constant: NaN figures, reported as None
            warnings.simplefilter("ignore", RuntimeWarning)
            ceilings = noise_ceiling(truth[:, 0, :], *(truth[:, r, :] for r in range(1, seeds)))
    of_mean = "lds_ceiling_two_seeds" if seeds == 2 else f"lds_ceiling_{seeds}_seeds"
    return ValidityReport(
        lds=_finite_or_none(first),
        lds_seed_mean=_finite_or_none(mean),
        seed_to_seed_spearman=_finite_or_none(ceilings.get("seed_to_seed_spearman", math.nan)),
        ceiling_one_seed=_finite_or_none(ceilings.get("lds_ceiling_one_seed", math.nan)),
        ceiling_seed_mean=_finite_or_none(ceilings.get(of_mean, math.nan)),
        subsets=m,
        seeds=seeds,
        outputs=t,
        works=n,
        lds_per_output=tuple(_finite_or_none(float(v)) for v in per_output),
    )


# Measuring retrained models -------------------------------------------------------------------


def _rows(batch: Any, start: int, stop: int) -> Any:
    from endcredits.attribution.featurizer import map_batch

    return map_batch(batch, lambda t: t[start:stop])


def measure_outputs(
    model: AttributionModel, outputs: Sequence[tuple[str, bytes]], settings: AttributionSettings
) -> npt.NDArray[np.float64]:
    """The task's measurement of each output ``(id, bytes)`` ``[outputs]`` under the model's trained
    parameters (its final checkpoint; ``settings.ensemble`` is not used), in chunks of ``chunk_size``."""
    import torch
    from torch import nn
    from torch.func import functional_call

    from endcredits.attribution.featurizer import batch_size

    final = dataclasses.replace(settings, ensemble="final")
    task = model.task(final)
    batch = model.encode_outputs([b for _, b in outputs], [o for o, _ in outputs], final)
    n = batch_size(batch)

    class Measure(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = task.model

        def forward(self, chunk: Any) -> torch.Tensor:
            values: torch.Tensor = task.measurement(self.model, chunk)
            return values

    call = Measure()
    state = {f"model.{name}": tensor for name, tensor in task.checkpoints[-1].items()}
    out = np.empty(n, dtype=np.float64)
    was_training = task.model.training
    task.model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, final.chunk_size):
                stop = min(n, start + final.chunk_size)
                values = functional_call(call, state, (_rows(batch, start, stop),))
                if tuple(values.shape) != (stop - start,):
                    raise ValidationError(f"the measurement must give one value per output; got {tuple(values.shape)}")
                out[start:stop] = values.detach().to(torch.float64).cpu().numpy()
    finally:
        task.model.train(was_training)
    if not np.isfinite(out).all():
        bad = [outputs[i][0] for i in np.flatnonzero(~np.isfinite(out))[:5]]
        raise ValidationError(f"the measurement of outputs {bad} is not finite")
    return out


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0][:200] if lines else ""


def training_function(name: str) -> TrainFunction:
    """The operator's training function ``module:function``; a one-line ``ValidationError`` when it cannot
    be had (the same refusals as a model kind's ``models.operator_function``)."""
    from endcredits.attribution.models import import_function, is_module_function

    if not is_module_function(name):
        raise ValidationError(f"training function {name!r} is not module:function")
    function: TrainFunction = import_function(name, f"training function {name}")
    return function


def retrain_seed(subset_index: int, seed_index: int) -> int:
    """The seed subset ``subset_index`` is retrained with, the ``seed_index``-th time (0-based)."""
    return seed_index * SUBSETS_MAX + subset_index


def _retrained(train_fn: TrainFunction, kind: str, work_ids: list[str], j: int, seed: int) -> AttributionModel:
    from endcredits.attribution.models import load_model

    where = f"subset {j}, seed {seed}"
    try:
        path = train_fn(work_ids, seed)
    except EndcreditsError:
        raise
    except Exception as exc:  # noqa: BLE001 - the operator's function: say what it raised, in one line
        raise ValidationError(
            f"the training function failed on {where}: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    if not isinstance(path, (str, Path)):
        raise ValidationError(
            f"the training function returned {type(path).__name__} for {where}, not a checkpoint path"
        )
    try:
        return load_model(Path(path), kind)
    except EndcreditsError as exc:
        raise ValidationError(f"the checkpoint trained for {where} does not load as {kind}: {exc}") from None


def ground_truth(
    train_fn: TrainFunction,
    kind: str,
    work_ids: Sequence[str],
    subsets: npt.NDArray[np.int64],
    seeds: int,
    outputs: Sequence[tuple[str, bytes]],
    settings: AttributionSettings,
    *,
    progress: Progress | None = None,
) -> npt.NDArray[np.float64]:
    """``[m, seeds, outputs]``: each output measured on the model ``train_fn`` trains on each subset (rows
    of ``subsets`` index ``work_ids``) with each seed (``retrain_seed``), loaded as ``kind``."""
    m = len(subsets)
    _check_counts(m, seeds)
    if not outputs:
        raise ValidationError("no outputs to measure")
    truth = np.empty((m, seeds, len(outputs)), dtype=np.float64)
    for j, rows in enumerate(subsets):
        chosen = [work_ids[int(i)] for i in rows]
        for r in range(seeds):
            model = _retrained(train_fn, kind, chosen, j, retrain_seed(j, r))
            truth[j, r] = measure_outputs(model, outputs, settings)
            if progress is not None:
                progress(j * seeds + r + 1, m * seeds)
    return truth


# The stage's task -----------------------------------------------------------------------------


def _check_outputs(outputs: Sequence[tuple[str, bytes]]) -> None:
    if not outputs:
        raise ValidationError("no outputs to validate on: give at least one")
    if len(outputs) > OUTPUTS_MAX:
        raise LimitExceededError(f"{len(outputs)} outputs exceed OUTPUTS_MAX={OUTPUTS_MAX}; validate on fewer")
    ids = [o for o, _ in outputs]
    if len(set(ids)) != len(ids):
        raise ValidationError("an output id appears twice")


def pipeline_scores(
    store: Store,
    manifest: ManifestRecord,
    model: AttributionModel,
    outputs: Sequence[tuple[str, bytes]],
    settings: AttributionSettings,
) -> tuple[Sequence[str], npt.NDArray[np.float64]]:
    """The attribution pipeline's scores of ``outputs`` against the manifest's works ``[outputs, works]``,
    the works' features computed once and reused, as ``endcredits attribute`` computes them (no run is
    recorded: these scores move no money)."""
    from endcredits.attribution.pipeline import attribute_outputs, featurize_manifest

    train = featurize_manifest(store, manifest, model, settings=settings)
    att = attribute_outputs(model, train, outputs, settings=settings)
    return att.work_ids, att.scores


def validate_manifest(
    store: Store,
    manifest: ManifestRecord,
    model: AttributionModel,
    train_fn: TrainFunction,
    outputs: Sequence[tuple[str, bytes]],
    *,
    settings: AttributionSettings,
    subsets: int,
    seeds: int,
    scores_fn: ScoresFunction = pipeline_scores,
    train_function_name: str = "",
    progress: Progress | None = None,
) -> ModelValidity:
    """Measure and record the validity of ``model`` (trained on ``manifest``): its attribution of
    ``outputs`` (by ``scores_fn``) against ``subsets`` half subsets of the manifest's works, each retrained
    by ``train_fn`` with ``seeds`` seeds and loaded as ``model.kind``. The model must be one the manifest is
    bound to or a recorded training run of it produced (``pipeline.check_checkpoint``). Everything is checked
    before the first retraining; nothing is recorded unless every retraining succeeds."""
    from endcredits.attribution.pipeline import check_checkpoint
    from endcredits.attribution.validity_records import record_validity

    _check_counts(subsets, seeds)
    _check_outputs(outputs)
    with store.read() as conn:
        check_checkpoint(conn, model, manifest)
    if len(manifest.included) < 2:
        raise ValidationError(f"manifest {manifest.id} includes {len(manifest.included)} works; half subsets need 2")
    work_ids, scores = scores_fn(store, manifest, model, outputs, settings)
    if list(work_ids) != list(manifest.included) or scores.shape != (len(outputs), len(work_ids)):
        raise ValidationError("the scores do not cover every output against every work of the manifest, in order")
    drawn = half_subsets(len(work_ids), subsets, DRAW_SEED)
    truth = ground_truth(train_fn, model.kind, list(work_ids), drawn, seeds, outputs, settings, progress=progress)
    report = validate(scores, drawn, truth)
    with store.write() as conn:
        return record_validity(
            conn,
            report,
            manifest=manifest,
            checkpoint_sha256=model.checksum(),
            model_kind=model.kind,
            train_function=train_function_name,
            settings=settings,
            draw_seed=DRAW_SEED,
        )


__all__ = [
    "DRAW_SEED",
    "OUTPUTS_MAX",
    "RETRAININGS_MAX",
    "SEEDS_MAX",
    "SUBSETS_MAX",
    "ScoresFunction",
    "TrainFunction",
    "ValidityReport",
    "ground_truth",
    "half_subsets",
    "lds",
    "masks_of",
    "measure_outputs",
    "noise_ceiling",
    "pipeline_scores",
    "rankdata",
    "retrain_seed",
    "training_function",
    "spearman_columns",
    "validate",
    "validate_manifest",
]
