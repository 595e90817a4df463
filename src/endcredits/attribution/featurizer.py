"""Per-example gradient features: one float32 row of ``dim`` values per example, per checkpoint.

``Featurizer(task, k=..., seed=..., projection=..., exclude=...)`` turns examples into projected
gradients of ``task.train_output`` (training works) or ``task.measurement`` (outputs), a chunk of
examples at a time. Every parameter is accounted for: ``plan_projection`` assigns each one a path
(``Plan.coverage``), and only parameters named by an ``exclude`` pattern are left out. Four projections:

- ``"kronecker"`` (default): a layer whose weight gradient is ``G = sum_t g_t a_t^T`` (``nn.Linear``,
  transformers' ``Conv1D``, ``nn.Conv2d`` with ``a_t`` its input patch at output position t) is projected
  as ``sum_t (P_out g_t)(P_in a_t)^T`` with two small seeded Gaussian factors, from one batched forward
  and backward pass (forward hooks record ``a_t``, ``autograd.grad`` gives each example's ``g_t``): the
  per-example gradient is never formed. Every other parameter (embeddings, norms, a weight tied to two
  modules, with its whole gradient) goes through ``vmap(grad(...))``, exact or with the blockwise
  Gaussian projection. ``k`` is shared among the layers by size; a factor that keeps every dimension is
  the identity, so with ``k`` at least the parameter count the features are the exact gradient.
- ``"eigen"``: as ``"kronecker"``, with each layer's factors the top eigenvectors of the works' input and
  output-gradient covariances (``eigen.EigenBasis``, fitted in one pass, saved beside the features) instead
  of seeded ones; the other parameters exact while they number at most ``EIGEN_REST_EXACT_MAX``.
- ``"gaussian"``: ``vmap(grad(...))`` for all parameters, then the blockwise Gaussian projection.
- ``"identity"``: the exact flattened gradient (``dim`` = parameter count); for small models.

``featurize(data, ids, out_dir)`` computes every checkpoint's features a chunk at a time and hands
them to a ``FeatureSaver`` (``saver``), which owns the directory and records the plan and its
coverage beside the features. See docs/concepts/attribution.md for the layouts and the measurements.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from endcredits.attribution.eigen import BASIS_NAME, EigenBasis, check_side, covariance_update, factors_from
from endcredits.attribution.projection import BlockGaussianProjector, gaussian_factor
from endcredits.attribution.saver import METADATA_NAME, FeatureSaver, FeatureSet
from endcredits.attribution.settings import (
    CHUNK_SIZE_MAX,
    IDENTITY_DIM_MAX,
    K_MAX,
    SEED_MAX,
    AttributionSettings,
    Projection,
)
from endcredits.attribution.task import AttributionTask, Batch, ExampleFunction
from endcredits.errors import LimitExceededError, ManifestError, ValidationError

Role = Literal["train", "target"]

EXAMPLES_MAX = 100_000_000
CHUNK_GRADIENT_BYTES_MAX = 2 << 30
"""Bound on the per-example gradients one chunk materializes (``vmap`` paths): lower ``chunk_size``."""

IN_MEMORY_FEATURE_BYTES_MAX = 8 << 30
"""``Featurizer.compute`` refuses to return more than this; use ``featurize`` to a directory."""

CURVATURE_BYTES_MAX = 4 << 30
"""The ``[dim, dim]`` float64 Gauss-Newton kernel may take at most this many bytes."""

EIGEN_REST_EXACT_MAX = 1 << 18
"""Projection ``eigen`` keeps every parameter outside the Kronecker layers (embeddings, norms, tied weights)
exact while there are at most this many (1 MiB of features per work and checkpoint), so that no seed moves
a share; beyond, they take the seeded Gaussian projection at their share of ``k``, as ``kronecker``'s do.
Projected, they dominated the disagreement across seeds (docs/benchmarks.md, "Attribution stability")."""

CURVATURE_OUTPUTS_MAX = 1_024
NAMES_SHOWN_MAX = 20

Progress = Callable[[int, int], None]
"""``progress(rows_done, rows_total)`` over all checkpoints, after each chunk."""


# Batches ----------------------------------------------------------------------------------------


def _leaves(batch: Batch) -> list[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        return [batch]
    if isinstance(batch, Mapping):
        return [batch[key] for key in sorted(batch)]
    return list(batch)


def map_batch(batch: Batch, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, Mapping):
        return {key: fn(value) for key, value in batch.items()}
    mapped = [fn(t) for t in batch]
    return tuple(mapped) if isinstance(batch, tuple) else mapped


def batch_size(batch: Batch) -> int:
    """The number of examples in ``batch`` (dimension 0, the same for every tensor)."""
    leaves = _leaves(batch)
    if not leaves or any(not isinstance(t, torch.Tensor) or t.dim() == 0 for t in leaves):
        raise ValidationError("a batch is a tensor, or a tuple, list or dict of tensors with examples along dim 0")
    sizes = {int(t.shape[0]) for t in leaves}
    if len(sizes) != 1:
        raise ValidationError(f"the tensors of a batch hold different numbers of examples: {sorted(sizes)}")
    return sizes.pop()


# The plan: which parameters go where, and how many dimensions each gets -------------------------

KroneckerKind = Literal["linear", "conv1d", "conv2d"]
Coverage = Literal["kronecker", "exact", "projected", "excluded"]
COVERAGES: tuple[Coverage, ...] = ("kronecker", "exact", "projected", "excluded")


@dataclass(frozen=True)
class KroneckerPlan:
    """One layer projected Kronecker-wise: per group of channels, ``k_out x k_in`` dimensions."""

    module: str
    kind: KroneckerKind
    weight: str
    bias: str | None
    d_in: int
    """Inputs per group (a conv's ``in_channels / groups * kh * kw``), plus one when there is a bias."""
    d_out: int
    """Outputs per group."""
    k_in: int
    k_out: int
    groups: int = 1

    @property
    def dim(self) -> int:
        return self.groups * self.k_in * self.k_out

    @property
    def numel(self) -> int:
        return self.groups * self.d_in * self.d_out


@dataclass(frozen=True)
class Plan:
    kronecker: tuple[KroneckerPlan, ...]
    rest: tuple[str, ...]
    """Parameters differentiated with ``vmap(grad)``, in ``named_parameters`` order."""
    rest_sizes: tuple[int, ...]
    rest_dim: int
    """Dimensions of the rest; equal to ``sum(rest_sizes)`` means unprojected."""
    excluded: tuple[str, ...] = ()
    """Parameters left out by name (``exclude``), in ``named_parameters`` order."""
    excluded_sizes: tuple[int, ...] = ()

    @property
    def dim(self) -> int:
        return sum(layer.dim for layer in self.kronecker) + self.rest_dim

    def covered_by(self) -> dict[str, Coverage]:
        """How each parameter is covered, by name: Kronecker layers, then the rest, then the excluded."""
        out: dict[str, Coverage] = {n: "kronecker" for lay in self.kronecker for n in (lay.weight, lay.bias) if n}
        rest: Coverage = "exact" if self.rest_dim == sum(self.rest_sizes) else "projected"
        out.update({name: rest for name in self.rest})
        out.update({name: "excluded" for name in self.excluded})
        return out

    def coverage(self) -> dict[str, Any]:
        """Parameters (scalars) by path, the share covered and the names excluded: JSON-ready."""
        counts: dict[str, int] = dict.fromkeys(COVERAGES, 0)
        counts["kronecker"] = sum(layer.numel for layer in self.kronecker)
        counts["exact" if self.rest_dim == sum(self.rest_sizes) else "projected"] = sum(self.rest_sizes)
        counts["excluded"] = sum(self.excluded_sizes)
        total = sum(counts.values())
        covered = total - counts["excluded"]
        return {
            "parameters": total,
            "covered": covered,
            "share_covered": covered / total,
            **counts,
            "excluded_names": list(self.excluded),
        }

    def describe(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [
            {
                "module": lay.module,
                "kind": lay.kind,
                "groups": lay.groups,
                "d_in": lay.d_in,
                "d_out": lay.d_out,
                "k_in": lay.k_in,
                "k_out": lay.k_out,
            }
            for lay in self.kronecker
        ]
        rows.append({"rest": list(self.rest), "numel": sum(self.rest_sizes), "dim": self.rest_dim})
        return rows


def _factor_sizes(budget: int, d_in: int, d_out: int) -> tuple[int, int]:
    """``(k_in, k_out)`` with ``k_in * k_out <= budget``; exact when it fits.

    A side no longer than ``sqrt(budget)`` is kept whole and the other side gets the rest: a classifier's
    10 outputs stay 10 dimensions instead of being squeezed to 2 next to a wide input (measured on MNIST
    logistic regression at k = 2048, squeezing them cost a fifth of the LDS). Two long sides are shaped
    like the layer (``k_in / k_out ~ d_in / d_out``).
    """
    if budget >= d_in * d_out:
        return d_in, d_out
    side = max(1, math.isqrt(budget))
    if d_out <= side:
        return max(1, min(d_in, budget // d_out)), d_out
    if d_in <= side:
        return d_in, max(1, min(d_out, budget // d_in))
    k_in = max(1, min(d_in, round((budget * d_in / d_out) ** 0.5)))
    k_out = max(1, min(d_out, budget // k_in))
    return max(1, min(d_in, budget // k_out)), k_out


def _is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2: weight ``[in, out]``, ``y = x W + b``), known without importing it."""
    kind = type(module)
    return kind.__name__ == "Conv1D" and kind.__module__ == "transformers.pytorch_utils"


def _layer_shape(module: nn.Module) -> tuple[KroneckerKind, int, int, int] | None:
    """``(kind, inputs per group, outputs per group, groups)`` of a layer the Kronecker projection takes:
    one whose forward is the stock one (a subclass that changes it may use its weight otherwise)."""
    if isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward:
        return "linear", module.in_features, module.out_features, 1
    if isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward:
        kh, kw = module.kernel_size
        groups = module.groups
        return "conv2d", module.in_channels // groups * kh * kw, module.out_channels // groups, groups
    weight = getattr(module, "weight", None)
    if _is_hf_conv1d(module) and isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return "conv1d", int(weight.shape[0]), int(weight.shape[1]), 1
    return None


def _kronecker_layers(model: nn.Module, excluded: set[str]) -> list[KroneckerPlan]:
    """The layers the Kronecker projection takes, in ``named_modules`` order, with ``k_in = k_out = 0``.

    A weight held by two modules (tied) or left out goes elsewhere with its layer; so does a bias that is.
    ``nn.MultiheadAttention`` uses its ``out_proj`` weight without calling it: that goes to ``vmap`` too.
    """
    names = {id(p): name for name, p in model.named_parameters()}
    holders: dict[int, set[int]] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        for p in module.parameters(recurse=False):
            holders.setdefault(id(p), set()).add(id(module))
    uncalled = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}

    def own(p: torch.Tensor | None) -> str | None:
        name = names.get(id(p)) if p is not None else None
        return name if name is not None and name not in excluded and len(holders[id(p)]) == 1 else None

    layers = []
    for module_name, module in model.named_modules():
        shape = _layer_shape(module)
        weight = own(module.weight) if shape is not None and id(module) not in uncalled else None
        if shape is None or weight is None:
            continue
        kind, d_in, d_out, groups = shape
        bias = own(module.bias) if isinstance(module.bias, torch.Tensor) else None
        layers.append(KroneckerPlan(module_name, kind, weight, bias, d_in + (bias is not None), d_out, 0, 0, groups))
    return layers


def _excluded(names: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """The parameters a pattern of ``exclude`` names; a pattern that names none is refused."""
    for pattern in exclude:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            shown = ", ".join(names[:NAMES_SHOWN_MAX]) + (" ..." if len(names) > NAMES_SHOWN_MAX else "")
            raise ValidationError(
                f"exclude pattern {pattern!r} (--exclude) matches no parameter of the model; its parameters are {shown}"
            )
    return [name for name in names if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)]


def covered_parameters(model: nn.Module, exclude: Sequence[str] = ()) -> int:
    """How many parameters the features cover: every parameter but those ``exclude`` names."""
    numel = {name: p.numel() for name, p in model.named_parameters()}
    left_out = set(_excluded(list(numel), exclude))
    return sum(size for name, size in numel.items() if name not in left_out)


def plan_projection(model: nn.Module, *, projection: Projection, k: int | None, exclude: Sequence[str] = ()) -> Plan:
    """Share ``k`` among the parameters not excluded (see the module docstring); ``dim`` may come out below
    ``k``. Each ``exclude`` pattern (``fnmatch``, over ``named_parameters`` names) must match a parameter."""
    numel = {name: p.numel() for name, p in model.named_parameters()}
    if not numel:
        raise ValidationError("the model has no parameters to differentiate")
    excluded = _excluded(list(numel), exclude)
    left = set(numel) - set(excluded)
    names = [name for name in numel if name in left]
    if not names:
        raise ValidationError(f"exclude {list(exclude)} leaves out every parameter; name fewer")
    total = sum(numel[n] for n in names)
    left_out = (tuple(excluded), tuple(numel[n] for n in excluded))
    if projection == "identity":
        if k is not None and k != total:
            raise ValidationError(f"projection 'identity' keeps all {total} parameters; pass k=None or k={total}")
        if total > IDENTITY_DIM_MAX:
            raise LimitExceededError(
                f"{total} parameters is over IDENTITY_DIM_MAX={IDENTITY_DIM_MAX} for projection 'identity'; project"
            )
        return Plan((), tuple(names), tuple(numel[n] for n in names), total, *left_out)
    if k is None or not 1 <= k <= K_MAX:
        raise ValidationError(f"k {k} must be in [1, {K_MAX}] for projection {projection!r}")
    if projection == "gaussian":
        return Plan((), tuple(names), tuple(numel[n] for n in names), min(k, total), *left_out)
    if projection not in ("kronecker", "eigen"):
        raise ValidationError(
            f"projection {projection!r} is not one of 'kronecker', 'eigen', 'gaussian', 'identity' (settings resolve"
            " 'auto' to one of them: AttributionSettings.resolved)"
        )
    layers = []
    for layer in _kronecker_layers(model, set(numel) - left):
        budget = layer.numel if k >= total else max(1, k * layer.numel // total)
        k_in, k_out = _factor_sizes(max(1, budget // layer.groups), layer.d_in, layer.d_out)
        layers.append(dataclasses.replace(layer, k_in=k_in, k_out=k_out))
    taken = {n for layer in layers for n in (layer.weight, layer.bias) if n}
    rest = [n for n in names if n not in taken]
    rest_numel = sum(numel[n] for n in rest)
    rest_dim = rest_numel if k >= total else min(rest_numel, max(1, k * rest_numel // total)) if rest else 0
    if projection == "eigen" and rest_numel <= EIGEN_REST_EXACT_MAX:
        rest_dim = rest_numel  # no seed anywhere: the parameters outside the Kronecker layers exact
    return Plan(tuple(layers), tuple(rest), tuple(numel[n] for n in rest), rest_dim, *left_out)


# The computation of one chunk -------------------------------------------------------------------


class _Call(nn.Module):
    """``forward(batch) = fn(model, batch)``, so ``functional_call`` can swap in a checkpoint."""

    def __init__(self, model: nn.Module, fn: ExampleFunction) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.fn(self.model, batch)


class NonFiniteError(Exception):
    """Internal: rows of one chunk whose features are not finite."""

    def __init__(self, rows: list[int]) -> None:
        super().__init__(rows)
        self.rows = rows


class Featurizer:
    """Projected per-example gradients of one task; see the module docstring.

    Nothing happens at construction but argument checks and the projection plan. ``dim`` is the
    number of features per example and checkpoint (at most ``k``; the parameter count for identity).
    ``exclude`` (``fnmatch`` patterns over parameter names) leaves parameters out by name; no other is.
    """

    def __init__(
        self,
        task: AttributionTask,
        *,
        k: int | None,
        seed: int,
        projection: Projection = "kronecker",
        device: str | torch.device = "cpu",
        chunk_size: int = 64,
        exclude: Sequence[str] = (),
        basis: EigenBasis | None = None,
    ) -> None:
        if not 1 <= chunk_size <= CHUNK_SIZE_MAX:
            raise ValidationError(f"chunk_size {chunk_size} must be in [1, {CHUNK_SIZE_MAX}]")
        self.task = task
        self.k = k
        self.seed = seed
        self.projection: Projection = projection
        self.device = torch.device(device)
        self.chunk_size = chunk_size
        self.plan = plan_projection(task.model, projection=projection, k=k, exclude=exclude)
        self.basis: EigenBasis | None = None
        """Projection ``eigen``: the factors of every Kronecker layer, fitted on the training works."""
        if basis is not None:
            self.use_basis(basis)
        model = task.model
        self._state_names = [name for name, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
        self._factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._rest_projector: BlockGaussianProjector | None = None
        self._projected_checkpoint = 0
        """The checkpoint whose projection ``_factors`` and ``_rest_projector`` hold (one at a time)."""

    @property
    def dim(self) -> int:
        return self.plan.dim

    @property
    def coverage(self) -> dict[str, Any]:
        """The parameters covered, by path, and those excluded (``Plan.coverage``)."""
        return self.plan.coverage()

    # -- public entry points --------------------------------------------------------------------

    def compute(
        self, data: Batch, *, checkpoint_index: int = 0, role: Role = "target", ids: Sequence[str] | None = None
    ) -> npt.NDArray[np.float32]:
        """Features ``[n, dim]`` in memory for one checkpoint (targets, small sets, tests).

        Non-finite gradients raise ``ValidationError`` naming the examples (by ``ids`` when given).
        """
        n = batch_size(data)
        self._check_in_memory(n * self.dim * 4)
        if self.projection == "eigen" and self.basis is None and role == "train":
            self.fit_basis(data)
        out = np.empty((n, self.dim), dtype=np.float32)
        bad: list[int] = []
        for start in range(0, n, self.chunk_size):
            stop = min(n, start + self.chunk_size)
            try:
                out[start:stop] = self._chunk(data, start, stop, checkpoint_index, role)
            except NonFiniteError as exc:
                bad.extend(start + r for r in exc.rows)
        if bad:
            raise ValidationError(_non_finite_message(bad, ids))
        return out

    def weights(self, data: Batch, *, checkpoint_index: int = 0) -> npt.NDArray[np.float32]:
        """TRAK's Q for each training example ``[n]`` (ones when the task has no ``train_weight``)."""
        n = batch_size(data)
        fn = self.task.train_weight
        if fn is None:
            return np.ones(n, dtype=np.float32)
        state = self._state(checkpoint_index)
        call = _Call(self.task.model, fn)
        out = np.empty(n, dtype=np.float32)
        with torch.no_grad(), _eval_mode(self.task.model):
            for start in range(0, n, self.chunk_size):
                stop = min(n, start + self.chunk_size)
                values = functional_call(call, state, (self._slice(data, start, stop),))
                out[start:stop] = _per_example(values, stop - start, "train_weight").cpu().numpy()
        if not np.isfinite(out).all():
            raise ValidationError(_non_finite_message(np.flatnonzero(~np.isfinite(out)).tolist(), None))
        return out

    def curvature(self, data: Batch, *, checkpoint_index: int = 0) -> npt.NDArray[np.float64]:
        """The projected Gauss-Newton kernel ``sum_i sum_r v_ir v_ir^T`` ``[dim, dim]`` float64, where
        ``v_ir`` is the projected gradient of ``task.curvature(...)[i, r]``."""
        fn = self.task.curvature
        if fn is None:
            raise ValidationError("the task has no curvature function; fit TRAK with its Phi^T Phi kernel instead")
        if self.dim * self.dim * 8 > CURVATURE_BYTES_MAX:
            raise LimitExceededError(
                f"a {self.dim} x {self.dim} float64 kernel needs {self.dim * self.dim * 8} bytes, over"
                f" CURVATURE_BYTES_MAX={CURVATURE_BYTES_MAX}; lower k"
            )
        n = batch_size(data)
        with torch.no_grad(), _eval_mode(self.task.model):
            first = functional_call(
                _Call(self.task.model, fn), self._state(checkpoint_index), (self._slice(data, 0, 1),)
            )
        if first.dim() != 2 or first.shape[0] != 1 or not 1 <= first.shape[1] <= CURVATURE_OUTPUTS_MAX:
            raise ValidationError(f"curvature must return [B, R] with R in [1, {CURVATURE_OUTPUTS_MAX}]")
        kernel = torch.zeros((self.dim, self.dim), dtype=torch.float64, device=self.device)
        for r in range(int(first.shape[1])):

            def column(model: nn.Module, batch: Batch, r: int = r) -> torch.Tensor:
                values: torch.Tensor = fn(model, batch)[:, r]
                return values

            for start in range(0, n, self.chunk_size):
                stop = min(n, start + self.chunk_size)
                try:
                    rows = self._features(data, start, stop, checkpoint_index, column).to(torch.float64)
                except NonFiniteError as exc:
                    raise ValidationError(_non_finite_message([start + i for i in exc.rows], None)) from None
                kernel += rows.T @ rows
        return kernel.cpu().numpy()

    def featurize(
        self,
        data: Batch,
        ids: Sequence[str],
        out_dir: Path,
        *,
        role: Role = "train",
        curvature: bool = False,
        progress: Progress | None = None,
        settings: AttributionSettings | None = None,
    ) -> FeatureSet:
        """Write every checkpoint's features under ``out_dir`` through a ``FeatureSaver``; resumable.

        ``role="train"`` differentiates ``train_output`` and also writes Q; ``role="target"`` the
        measurement. ``curvature=True`` also writes each checkpoint's Gauss-Newton kernel. ``settings``,
        the attribution settings these arguments were built from, are saved beside the features and
        must match when the directory is resumed or reused.
        """
        n = batch_size(data)
        if len(ids) != n:
            raise ValidationError(f"{len(ids)} ids for {n} examples; pass one id per example")
        if len(set(ids)) != len(ids):
            raise ValidationError("ids repeat; each example needs its own id")
        if n > EXAMPLES_MAX:
            raise LimitExceededError(f"{n} examples is over {EXAMPLES_MAX}; featurize them in shards")
        if curvature and role != "train":
            raise ValidationError("curvature is a property of the training set; pass role='train'")
        if role == "train":
            self.prepare_basis(data, Path(out_dir))
        saver = FeatureSaver(Path(out_dir), self.header(role, curvature), ids, settings=settings)
        saver.begin()
        self.save_basis(Path(out_dir))
        try:
            for m in range(len(self.task.checkpoints)):
                self._featurize_model(data, ids, saver, m, role, progress)
                if curvature and not saver.curvature_done[m]:
                    saver.write_curvature(m, self.curvature(data, checkpoint_index=m))
        except ValidationError:
            saver.discard()
            raise
        return saver.finish()

    # -- the eigen basis ------------------------------------------------------------------------

    def use_basis(self, basis: EigenBasis) -> None:
        """Project with ``basis`` (projection ``eigen``): it must hold this plan's layers at this plan's sizes."""
        if self.projection != "eigen":
            raise ValidationError(f"an eigen basis is for projection 'eigen', not {self.projection!r}")
        want = {lay.module: ((lay.k_in, lay.d_in), (lay.k_out, lay.d_out)) for lay in self.plan.kronecker}
        for m in range(len(self.task.checkpoints)):
            if m >= len(basis.factors) or basis.shapes(m) != want:
                raise ManifestError(
                    f"the eigen basis {basis.sha256()[:16]} does not fit this model's plan at checkpoint {m} (other"
                    " layers, k or checkpoints); featurize the works again with these settings"
                )
        self.basis, self._factors = basis, {}

    def fit_basis(self, data: Batch) -> EigenBasis:
        """Projection ``eigen``: each Kronecker layer's top eigenvectors of its input and output-gradient
        covariances over ``data`` (the training works, ``train_output``), per checkpoint, in one pass each."""
        if self.projection != "eigen":
            raise ValidationError(f"projection {self.projection!r} has no basis to fit; only 'eigen' does")
        modules = dict(self.task.model.named_modules())
        sizes = {lay.module: (lay.k_in, lay.k_out) for lay in self.plan.kronecker}
        for lay in self.plan.kronecker:
            check_side(lay.module, max(lay.d_in, lay.d_out))
        n, factors = batch_size(data), []
        call = _Call(self.task.model, self.task.train_output)
        for m in range(len(self.task.checkpoints)):
            state, sums = self._state(m), dict[str, list[torch.Tensor]]()
            with _eval_mode(self.task.model):
                for start in range(0, n, self.chunk_size):
                    stop = min(n, start + self.chunk_size)
                    recorded = self._layer_calls(call, state, self._slice(data, start, stop), stop - start)
                    for lay in self.plan.kronecker:
                        if not recorded[lay.module]:
                            raise ValidationError(_refused(lay, "was not called in the forward pass"))
                        calls = [
                            _per_position(lay, modules[lay.module], a, g, stop - start) for a, g in recorded[lay.module]
                        ]
                        covariance_update(sums, lay.module, calls)
            factors.append(factors_from(sums, sizes))
        basis = EigenBasis(tuple(factors))
        self.use_basis(basis)
        return basis

    def prepare_basis(self, data: Batch, out_dir: Path) -> None:
        """Projection ``eigen`` on the training works: the basis saved under ``out_dir`` when there is one
        (a resumed run; checked against its record), else one fitted on ``data``."""
        if self.projection != "eigen" or self.basis is not None:
            return
        record = out_dir / METADATA_NAME
        if (out_dir / BASIS_NAME).exists() and record.exists():
            self.use_basis(EigenBasis.load(out_dir, sha256=json.loads(record.read_text()).get("basis_sha256")))
        else:
            self.fit_basis(data)

    def save_basis(self, out_dir: Path) -> None:
        """Write the basis beside the features (its hash is in their record), unless it is there already."""
        if self.basis is not None and not (out_dir / BASIS_NAME).exists():
            self.basis.save(out_dir)

    # -- internals ------------------------------------------------------------------------------

    def _featurize_model(
        self, data: Batch, ids: Sequence[str], saver: FeatureSaver, m: int, role: Role, progress: Progress | None
    ) -> None:
        """Checkpoint ``m``'s rows the saver lacks, a chunk at a time; non-finite rows are all named, then
        raised, and nothing after the first is written."""
        n = batch_size(data)
        bad: list[int] = []
        for start in range(0, n, self.chunk_size):
            stop = min(n, start + self.chunk_size)
            if saver.is_done(m, start, stop):
                continue
            try:
                chunk = self._chunk(data, start, stop, m, role)
            except NonFiniteError as exc:
                bad.extend(start + r for r in exc.rows)
                continue
            if bad:
                continue  # keep looking, to name every bad example; nothing more is written
            weights = self.weights(self._slice(data, start, stop), checkpoint_index=m) if role == "train" else None
            saver.write(m, start, chunk, weights)
            saver.commit([m], start, stop)
            if progress is not None:
                progress(sum(saver.rows_written(i) for i in range(saver.models)), n * saver.models)
        if bad:
            raise ValidationError(_non_finite_message(bad, ids))

    def header(self, role: Role, curvature: bool) -> dict[str, Any]:
        """What a feature directory records about the featurizer that wrote it (``FeatureSaver`` adds the
        format and the ids); a directory recorded with anything else is not resumed."""
        return {
            "role": role,
            "checkpoint_sha256": list(self.task.checkpoint_sha256s),
            "projection": self.projection,
            "k": self.k,
            "dim": self.dim,
            "seed": self.seed,
            "chunk_size": self.chunk_size,
            "basis_sha256": self.basis.sha256() if self.basis is not None else None,
            "curvature": curvature,
            "plan": self.plan.describe(),
            "coverage": self.plan.coverage(),
        }

    def _check_in_memory(self, needed: int) -> None:
        if needed > IN_MEMORY_FEATURE_BYTES_MAX:
            raise LimitExceededError(
                f"{needed} bytes of features is over IN_MEMORY_FEATURE_BYTES_MAX={IN_MEMORY_FEATURE_BYTES_MAX};"
                " use featurize() to write them to a directory"
            )

    def _state(self, checkpoint_index: int) -> dict[str, torch.Tensor]:
        if not 0 <= checkpoint_index < len(self.task.checkpoints):
            raise ValidationError(f"checkpoint_index {checkpoint_index} is not in [0, {len(self.task.checkpoints)})")
        state = self.task.checkpoints[checkpoint_index]
        # Each parameter once, by the name named_parameters() gives it: functional_call hands a tied
        # parameter to every module that holds it, and refuses two values for it.
        return {f"model.{name}": state[name].detach().to(self.device) for name in self._state_names if name in state}

    def _slice(self, data: Batch, start: int, stop: int) -> Batch:
        return map_batch(data, lambda t: t[start:stop].to(self.device))

    def _chunk(self, data: Batch, start: int, stop: int, checkpoint_index: int, role: Role) -> npt.NDArray[np.float32]:
        fn = self.task.train_output if role == "train" else self.task.measurement
        features: npt.NDArray[np.float32] = self._features(data, start, stop, checkpoint_index, fn).cpu().numpy()
        return features

    def _features(self, data: Batch, start: int, stop: int, checkpoint_index: int, fn: ExampleFunction) -> torch.Tensor:
        batch = self._slice(data, start, stop)
        state = self._state(checkpoint_index)
        if checkpoint_index != self._projected_checkpoint:
            self._factors, self._rest_projector = {}, None
            self._projected_checkpoint = checkpoint_index
        call = _Call(self.task.model, fn)
        parts = []
        with _eval_mode(self.task.model):
            if self.plan.kronecker:
                parts.append(self._kronecker_features(call, state, batch, stop - start))
            if self.plan.rest:
                parts.append(self._rest_features(call, state, batch, stop - start))
        out = torch.cat(parts, dim=1).to(torch.float32)
        finite = torch.isfinite(out).all(dim=1)
        if not bool(finite.all()):
            raise NonFiniteError(torch.nonzero(~finite).flatten().tolist())
        return out

    def _factor(self, layer: KroneckerPlan) -> tuple[torch.Tensor, torch.Tensor]:
        if layer.module not in self._factors and self.projection == "eigen":
            if self.basis is None:
                raise ValidationError(
                    "projection 'eigen' projects with a basis fitted on the training works: featurize the works"
                    " first (role 'train'), then pass their basis (EigenBasis.load of their directory)"
                )
            p_in, p_out = self.basis.factors[self._projected_checkpoint][layer.module]
            self._factors[layer.module] = (
                torch.from_numpy(p_in).to(self.device),
                torch.from_numpy(p_out).to(self.device),
            )
        if layer.module not in self._factors:
            seed = checkpoint_seed(self.seed, self._projected_checkpoint)
            self._factors[layer.module] = (
                gaussian_factor(layer.module, "in", rows=layer.k_in, cols=layer.d_in, seed=seed, device=self.device),
                gaussian_factor(layer.module, "out", rows=layer.k_out, cols=layer.d_out, seed=seed, device=self.device),
            )
        return self._factors[layer.module]

    def _kronecker_features(self, call: _Call, state: dict[str, torch.Tensor], batch: Batch, n: int) -> torch.Tensor:
        """``sum_t (P_out g_t)(P_in a_t)^T`` of every Kronecker layer, from one forward and backward pass."""
        modules = dict(self.task.model.named_modules())
        recorded = self._layer_calls(call, state, batch, n)
        parts = [
            self._project(layer, modules[layer.module], recorded[layer.module], n) for layer in self.plan.kronecker
        ]
        return torch.cat(parts, dim=1)

    def _layer_calls(
        self, call: _Call, state: dict[str, torch.Tensor], batch: Batch, n: int
    ) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Per Kronecker layer, each call's input ``a`` and the gradient ``g`` of the examples' values with
        respect to its output, from one forward and backward pass."""
        modules = dict(self.task.model.named_modules())
        records: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {lay.module: [] for lay in self.plan.kronecker}

        def hook_for(name: str) -> Callable[[nn.Module, tuple[Any, ...], torch.Tensor], None]:
            def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
                records[name].append((inputs[0].detach(), output))

            return hook

        layer_names = {f"model.{n}" for layer in self.plan.kronecker for n in (layer.weight, layer.bias) if n}
        params = {name: t.requires_grad_(True) if name in layer_names else t for name, t in state.items()}
        handles = [modules[lay.module].register_forward_hook(hook_for(lay.module)) for lay in self.plan.kronecker]
        try:
            with torch.enable_grad():
                values = _per_example(functional_call(call, params, (batch,)), n, "the task function")
                outputs = [z for layer in self.plan.kronecker for _, z in records[layer.module]]
                grads = iter(torch.autograd.grad(values.sum(), outputs, allow_unused=True))
        finally:
            for handle in handles:
                handle.remove()
        return {
            layer.module: [
                (a, torch.zeros_like(z) if g is None else g) for (a, z), g in zip(records[layer.module], grads)
            ]
            for layer in self.plan.kronecker
        }

    def _project(
        self, layer: KroneckerPlan, module: nn.Module, calls: list[tuple[torch.Tensor, torch.Tensor]], n: int
    ) -> torch.Tensor:
        """``[n, dim]``: the layer's ``sum_t (P_out g_t)(P_in a_t)^T`` over its positions and calls."""
        if not calls:
            raise ValidationError(_refused(layer, "was not called in the forward pass (its weight is used otherwise)"))
        p_in, p_out = self._factor(layer)
        projected = torch.zeros((n * layer.groups, layer.k_out, layer.k_in), dtype=torch.float32, device=self.device)
        for a, g in calls:
            a, g = _per_position(layer, module, a, g, n)
            projected += (g @ p_out.T).transpose(1, 2) @ (a @ p_in.T)
        return projected.reshape(n, -1)

    def _rest_features(self, call: _Call, state: dict[str, torch.Tensor], batch: Batch, n: int) -> torch.Tensor:
        rest_numel = sum(self.plan.rest_sizes)
        if n * rest_numel * 4 > CHUNK_GRADIENT_BYTES_MAX:
            raise LimitExceededError(
                f"a chunk of {n} examples x {rest_numel} parameters needs {n * rest_numel * 4} bytes of"
                f" per-example gradients, over CHUNK_GRADIENT_BYTES_MAX={CHUNK_GRADIENT_BYTES_MAX}; lower chunk_size"
            )
        keys = [f"model.{name}" for name in self.plan.rest]
        params = {key: state[key] for key in keys}
        consts = {key: t.detach() for key, t in state.items() if key not in params}

        def one(p: dict[str, torch.Tensor], example: Batch) -> torch.Tensor:
            value = functional_call(call, {**consts, **p}, (map_batch(example, lambda t: t.unsqueeze(0)),))
            return _per_example(value, 1, "the task function")[0]

        with torch.enable_grad():
            grads: dict[str, torch.Tensor] = vmap(grad(one), in_dims=(None, 0))(params, batch)
        if self.plan.rest_dim == rest_numel:
            return torch.cat([grads[key].reshape(n, -1) for key in keys], dim=1)
        if self._rest_projector is None:
            sizes = dict(zip(self.plan.rest, self.plan.rest_sizes, strict=True))
            seed = checkpoint_seed(self.seed, self._projected_checkpoint)
            self._rest_projector = BlockGaussianProjector(sizes, k=self.plan.rest_dim, seed=seed, device=self.device)
        return self._rest_projector.project({key[len("model.") :]: g for key, g in grads.items()})


def checkpoint_seed(seed: int, checkpoint_index: int) -> int:
    """The projection seed of checkpoint ``checkpoint_index``: ``seed`` itself for the first, so the features
    of a one-checkpoint run do not depend on this rule, and one derived from both for every other, so the
    checkpoints of an ensemble are projected independently and averaging their scores averages the
    projection's error too (docs/concepts/attribution.md, "Which projection")."""
    if checkpoint_index == 0:
        return seed
    digest = hashlib.sha256(f"endcredits.checkpoint-seed/1|{seed}|{checkpoint_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & SEED_MAX


def _refused(layer: KroneckerPlan, why: str) -> str:
    """The one-line refusal of a layer the Kronecker projection cannot take, with both ways out."""
    pattern = f"{layer.module}.*" if layer.module else "*"
    return (
        f"{layer.kind} layer {layer.module!r} {why}, so the Kronecker projection cannot take it: include it"
        " exactly with every parameter through vmap, projection 'gaussian' (--projection gaussian), or leave it"
        f" out by name, exclude {pattern!r} (--exclude '{pattern}')"
    )


def _per_position(
    layer: KroneckerPlan, module: nn.Module, a: torch.Tensor, g: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's inputs ``a_t`` (with a 1 appended for the bias) and output gradients ``g_t`` at each
    position t: ``[n * groups, positions, d_in]`` and ``[n * groups, positions, d_out]``."""
    conv = isinstance(module, nn.Conv2d)
    if a.shape[0] != n or (conv and a.dim() != 4):
        raise ValidationError(_refused(layer, f"sees inputs of shape {tuple(a.shape)}, not examples along dim 0"))
    if isinstance(module, nn.Conv2d):
        a, g = _conv_patches(module, a, g, n, layer)
    else:
        a = a.reshape(n, -1, a.shape[-1])
    if layer.bias is not None:
        a = torch.cat([a, torch.ones_like(a[..., :1])], dim=-1)
    if not conv:
        g = g.reshape(n, -1, g.shape[-1])
    return a, g


def _conv_patches(
    conv: nn.Conv2d, x: torch.Tensor, g: torch.Tensor, n: int, layer: KroneckerPlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each example's input patches (``unfold`` of the padded input) and output gradients, by output position
    and group of channels: the conv's weight gradient is ``sum_t g_t a_t^T`` per group."""
    positions = int(g.shape[-2] * g.shape[-1])
    needed = n * x.shape[1] * conv.kernel_size[0] * conv.kernel_size[1] * positions * 4
    if needed > CHUNK_GRADIENT_BYTES_MAX:
        raise LimitExceededError(
            f"the input patches of conv layer {layer.module!r} for {n} examples need {needed} bytes, over"
            f" CHUNK_GRADIENT_BYTES_MAX={CHUNK_GRADIENT_BYTES_MAX}; lower chunk_size"
        )
    pads = _conv_pads(conv)
    if any(pads):
        x = F.pad(x, pads, mode="constant" if conv.padding_mode == "zeros" else conv.padding_mode)
    patches = F.unfold(x, conv.kernel_size, dilation=conv.dilation, stride=conv.stride)  # [n, C_in kh kw, T]
    groups = layer.groups
    a = patches.reshape(n, groups, -1, positions).transpose(2, 3).reshape(n * groups, positions, -1)
    g = g.reshape(n, groups, -1, positions).transpose(2, 3).reshape(n * groups, positions, -1)
    return a, g


def _conv_pads(conv: nn.Conv2d) -> list[int]:
    """The ``F.pad`` widths (left, right, top, bottom) ``conv`` pads its input with, as ``Conv2d`` does."""
    if conv.padding == "valid":
        return [0, 0, 0, 0]
    if conv.padding == "same":  # the odd one of an even total on the right, as torch pads
        totals = [d * (k - 1) for d, k in zip(reversed(conv.dilation), reversed(conv.kernel_size), strict=True)]
        return [side for total in totals for side in (total // 2, total - total // 2)]
    ph, pw = (int(p) for p in conv.padding)
    return [pw, pw, ph, ph]


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode (no dropout, no batch statistics) for the duration; restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _per_example(values: torch.Tensor, n: int, what: str) -> torch.Tensor:
    if values.shape != (n,):
        raise ValidationError(f"{what} must return one value per example, shape [{n}]; got {tuple(values.shape)}")
    return values


def _non_finite_message(rows: Sequence[int], ids: Sequence[str] | None) -> str:
    rows = sorted(rows)
    names = [ids[r] for r in rows] if ids is not None else rows
    shown = names[:NAMES_SHOWN_MAX]
    more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
    what = "works" if ids is not None else "examples"
    return (
        f"gradients of {what} {shown}{more} are NaN or infinite; nothing was written. Check the checkpoint's"
        " parameters and those examples"
    )


__all__ = [
    "CHUNK_SIZE_MAX",
    "EIGEN_REST_EXACT_MAX",
    "K_MAX",
    "FeatureSet",
    "Featurizer",
    "COVERAGES",
    "Coverage",
    "KroneckerPlan",
    "Plan",
    "Projection",
    "Role",
    "batch_size",
    "checkpoint_seed",
    "covered_parameters",
    "plan_projection",
]
