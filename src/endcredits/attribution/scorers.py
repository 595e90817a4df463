"""Scorers: from features to scores ``[outputs, works]``, all of them linear in the work features.

Every scorer is fitted once on the training works into one *item matrix* ``G`` (float32 ``[works, d]``);
an output's scores are ``query(output) @ G^T``, the query stacking the output's features of every model.
Being linear in each row of ``G`` is what makes a payee's score exact (``payees``: the query times the
sum of its works' rows) and a top-k search a maximum inner product search (``topk``).

- ``TRAKScorer`` (the default): TRAK's regularized kernel inverse, averaged over models, times the
  averaged Q; lambda relative to the kernel's mean eigenvalue; optional Q power and Adam's metric.
- ``InfluenceScorer``: the influence function per model, with a ridge or gradient-flow response on the
  Gauss-Newton kernel's eigenvalues, averaged over models.
- ``TracInScorer``: the gradient dot product, summed over checkpoints.
- ``EmbeddingSimilarityScorer``: cosine of black-box embeddings; resemblance, not influence, so it is
  labelled ``weaker`` and statements must say so.

The formulas, defaults and measured choices: docs/concepts/attribution.md, "Scores".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from endcredits.errors import LimitExceededError, ValidationError

FloatArray = npt.NDArray[np.floating[Any]]

KERNEL_BYTES_MAX = 4 << 30
"""The ``[min(n, dim)]^2`` float64 system TRAK solves may take at most this many bytes."""

ITEM_MATRIX_BYTES_MAX = 64 << 30
ROWS_PER_BLOCK = 16_384
"""Rows of the training features handled at once in float64."""

MODELS_MAX = 1_000
WEIGHT_POWER_MAX = 4.0
SECOND_MOMENT_POWER_MAX = 1.0
SECOND_MOMENT_EPS = 1e-3
"""Added to each column's second moment, relative to their mean: columns with (almost) no gradient are not
blown up."""


def _check_per_model(
    features: Sequence[FloatArray], weights: Sequence[FloatArray] | None, what: str
) -> tuple[int, list[int]]:
    if not 1 <= len(features) <= MODELS_MAX:
        raise ValidationError(f"{what} needs features of 1 to {MODELS_MAX} models; got {len(features)}")
    shapes = [np.shape(f) for f in features]
    if any(len(s) != 2 for s in shapes):
        raise ValidationError(f"{what}: features must be 2-D [examples, dim]; got shapes {shapes}")
    rows = {s[0] for s in shapes}
    if len(rows) != 1:
        raise ValidationError(f"{what}: models hold different numbers of examples {sorted(rows)}")
    n = rows.pop()
    if weights is not None:
        if len(weights) != len(features):
            raise ValidationError(f"{what}: {len(weights)} weight vectors for {len(features)} models")
        for m, w in enumerate(weights):
            if np.shape(w) != (n,):
                raise ValidationError(f"{what}: weights of model {m} have shape {np.shape(w)}, not ({n},)")
            if not np.isfinite(w).all():
                raise ValidationError(f"{what}: weights of model {m} are not finite; featurize again")
    return n, [s[1] for s in shapes]


def _finite_block(block: FloatArray, start: int, what: str) -> npt.NDArray[np.float64]:
    out = np.asarray(block, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if bad.size:
        raise ValidationError(f"{what} of rows {(bad[:10] + start).tolist()} are not finite; featurize them again")
    return out


class LinearScorer:
    """What every scorer is once fitted: ``scores = query(targets) @ item_matrix^T``."""

    method: str = "linear"
    weaker: bool = False

    def __init__(self) -> None:
        self._items: npt.NDArray[np.float32] | None = None
        self._dims: list[int] = []

    @property
    def item_matrix(self) -> npt.NDArray[np.float32]:
        """``G`` ``[works, d]``: the preconditioned training features of every model, side by side."""
        if self._items is None:
            raise ValidationError(f"{type(self).__name__} is not fitted; call fit() first")
        return self._items

    @property
    def label(self) -> dict[str, Any]:
        """What a statement shows about the method: its name and whether it is the weaker kind."""
        return {"method": self.method, "weaker": self.weaker}

    def query(self, target_features_per_model: Sequence[FloatArray]) -> npt.NDArray[np.float64]:
        """The outputs' features of every model side by side, float64 ``[outputs, d]``."""
        items = self.item_matrix
        _, dims = _check_per_model(target_features_per_model, None, "query")
        if dims != self._dims:
            raise ValidationError(f"target features have dims {dims} but the scorer was fitted on {self._dims}")
        parts = [
            self._query_part(m, _finite_block(f, 0, "target features")) for m, f in enumerate(target_features_per_model)
        ]
        out = np.concatenate(parts, axis=1)
        if out.shape[1] != items.shape[1]:
            raise ValidationError("target features do not match the item matrix")
        return out

    def _query_part(self, m: int, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return features

    def score(self, target_features_per_model: Sequence[FloatArray]) -> npt.NDArray[np.float64]:
        """Scores float64 ``[outputs, works]``."""
        return score_items(self.query(target_features_per_model), self.item_matrix)

    def _set_items(self, blocks: Sequence[npt.NDArray[np.float32]], dims: list[int]) -> None:
        joined = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)  # one model: no copy
        self._items = np.ascontiguousarray(joined, dtype=np.float32)
        self._dims = dims


def score_items(query: FloatArray, items: FloatArray) -> npt.NDArray[np.float64]:
    """``query @ items^T`` in float64, ``ROWS_PER_BLOCK`` item rows at a time."""
    q = np.asarray(query, dtype=np.float64)
    out = np.empty((q.shape[0], items.shape[0]), dtype=np.float64)
    for start in range(0, items.shape[0], ROWS_PER_BLOCK):
        block = np.asarray(items[start : start + ROWS_PER_BLOCK], dtype=np.float64)
        out[:, start : start + block.shape[0]] = q @ block.T
    return out


def _check_train(
    features: Sequence[FloatArray],
    weights: Sequence[FloatArray] | None,
    what: str,
    curvature: Sequence[FloatArray] | None = None,
) -> tuple[int, list[int], int]:
    """``(works, dims per model, models)`` of training features that fit in an item matrix (and, when
    given, one curvature kernel per model)."""
    n, dims = _check_per_model(features, weights, what)
    if curvature is not None and len(curvature) != len(dims):
        raise ValidationError(f"{len(curvature)} curvature kernels for {len(dims)} models")
    needed = n * sum(dims) * 4
    if needed > ITEM_MATRIX_BYTES_MAX:
        raise LimitExceededError(
            f"the item matrix of {n} works x {sum(dims)} dims needs {needed} bytes, over"
            f" ITEM_MATRIX_BYTES_MAX={ITEM_MATRIX_BYTES_MAX}; lower k or the ensemble size, or shard the works"
        )
    return n, dims, len(dims)


class TRAKScorer(LinearScorer):
    """TRAK with a regularized kernel inverse, Q reweighting and ensemble averaging (docs/concepts/attribution.md)."""

    method = "trak"

    def __init__(
        self,
        lambda_: float = 1.0,
        *,
        lambda_relative: bool = True,
        weight_power: float = 1.0,
        second_moment_power: float = 0.0,
    ) -> None:
        super().__init__()
        if not (np.isfinite(lambda_) and lambda_ >= 0.0):
            raise ValidationError(f"lambda_ {lambda_} must be finite and >= 0")
        if not (np.isfinite(weight_power) and 0.0 <= weight_power <= WEIGHT_POWER_MAX):
            raise ValidationError(f"weight_power {weight_power} must be in [0, {WEIGHT_POWER_MAX}]")
        if not (np.isfinite(second_moment_power) and 0.0 <= second_moment_power <= SECOND_MOMENT_POWER_MAX):
            raise ValidationError(
                f"second_moment_power {second_moment_power} must be in [0, {SECOND_MOMENT_POWER_MAX}]"
            )
        self.lambda_ = float(lambda_)
        self.lambda_relative = lambda_relative
        self.weight_power = float(weight_power)
        self.second_moment_power = float(second_moment_power)
        self._column_scales: list[npt.NDArray[np.float64] | None] = []
        self.lambdas_used: list[float] = []
        """The absolute lambda each model's kernel got."""

    def fit(
        self,
        train_features_per_model: Sequence[FloatArray],
        train_weights_per_model: Sequence[FloatArray] | None = None,
        *,
        curvature_per_model: Sequence[FloatArray] | None = None,
    ) -> TRAKScorer:
        """Precompute ``G``. ``curvature_per_model`` replaces ``Phi^T Phi`` by each model's Gauss-Newton kernel."""
        n, dims, models = _check_train(train_features_per_model, train_weights_per_model, "TRAK", curvature_per_model)
        q_bar = np.ones(n, dtype=np.float64)
        if train_weights_per_model is not None:
            q_bar = np.mean([np.asarray(w, dtype=np.float64) for w in train_weights_per_model], axis=0)
            if self.weight_power != 1.0:
                if (q_bar < 0.0).any():
                    raise ValidationError("weight_power needs training weights >= 0 (TRAK's Q = 1 - p)")
                q_bar = q_bar**self.weight_power
        blocks = []
        self.lambdas_used = []
        self._column_scales = []
        for m, phi in enumerate(train_features_per_model):
            kernel = None if curvature_per_model is None else _curvature(curvature_per_model[m], m, phi.shape[1])
            scale = None
            if self.second_moment_power > 0.0:
                if kernel is not None:
                    raise ValidationError("second_moment_power rescales the features; it takes no curvature kernel")
                q = None if train_weights_per_model is None else np.asarray(train_weights_per_model[m], np.float64)
                scale = _second_moment_scale(phi, q, self.second_moment_power)
                phi = _scaled_columns(phi, scale)
            self._column_scales.append(scale)
            blocks.append(self._precondition(phi, kernel, q_bar / models))
        self._set_items(blocks, dims)
        return self

    def _query_part(self, m: int, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        scale = self._column_scales[m] if m < len(self._column_scales) else None
        return features if scale is None else features * scale

    def _lambda(self, trace: float, size: int) -> float:
        """The absolute ridge: ``lambda_`` times the mean eigenvalue of the ``size x size`` system solved
        (``Phi Phi^T`` when there are fewer works than dimensions, else ``Phi^T Phi``), whose nonzero
        spectrum the two share; so a relative ``lambda_`` means the same at any k, exact gradients included."""
        value = self.lambda_ * trace / size if self.lambda_relative else self.lambda_
        if value <= 0.0:
            value = np.finfo(np.float64).eps * max(trace / size, 1.0)
        self.lambdas_used.append(value)
        return value

    def _precondition(
        self, phi: FloatArray, kernel: npt.NDArray[np.float64] | None, row_scale: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float32]:
        """``diag(row_scale) Phi (K + lambda I)^-1`` as float32 ``[n, dim]``, computed in float64 a block
        of rows at a time (the float64 product is never held whole: 10^6 works at k = 1024 would be 8 GB)."""
        n, dim = phi.shape
        if kernel is None and n < dim:
            # The dual form: Phi (Phi^T Phi + lambda I)^-1 = (Phi Phi^T + lambda I)^-1 Phi.
            _check_kernel_bytes(n)
            full = _finite_block(phi, 0, "training features")
            gram = full @ full.T
            lam = self._lambda(float(np.trace(gram)), n)
            solved = np.linalg.solve(gram + lam * np.eye(n), full)
            return np.asarray(solved * row_scale[:, None], dtype=np.float32)
        _check_kernel_bytes(dim)
        if kernel is None:
            kernel = _feature_kernel(phi)
        lam = self._lambda(float(np.trace(kernel)), dim)
        inverse = np.linalg.inv(kernel + lam * np.eye(dim))
        inverse = (inverse + inverse.T) / 2.0
        out = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, ROWS_PER_BLOCK):
            block = _finite_block(phi[start : start + ROWS_PER_BLOCK], start, "training features")
            stop = start + block.shape[0]
            out[start:stop] = (block @ inverse) * row_scale[start:stop, None]
        return out


def _second_moment_scale(phi: FloatArray, q: npt.NDArray[np.float64] | None, power: float) -> npt.NDArray[np.float64]:
    """``(v + eps mean(v))^-power`` per column, ``v`` the mean of ``(q_i phi_ij)^2`` over rows."""
    n, dim = phi.shape
    second = np.zeros(dim, dtype=np.float64)
    for start in range(0, n, ROWS_PER_BLOCK):
        block = _finite_block(phi[start : start + ROWS_PER_BLOCK], start, "training features")
        if q is not None:
            block *= q[start : start + block.shape[0], None]
        second += (block * block).sum(axis=0)
    second /= max(n, 1)
    floor = SECOND_MOMENT_EPS * float(second.mean())
    if not floor > 0.0:
        raise ValidationError("the training features are all zero; there is no second moment to rescale by")
    scale: npt.NDArray[np.float64] = (second + floor) ** -power
    return scale


def _scaled_columns(phi: FloatArray, scale: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    out = np.empty(phi.shape, dtype=np.float32)
    for start in range(0, phi.shape[0], ROWS_PER_BLOCK):
        block = _finite_block(phi[start : start + ROWS_PER_BLOCK], start, "training features")
        out[start : start + block.shape[0]] = block * scale
    return out


def _feature_kernel(phi: FloatArray, row_weights: npt.NDArray[np.float64] | None = None) -> npt.NDArray[np.float64]:
    """``Phi^T diag(w)^2 Phi`` in float64, summed a block of rows at a time (``w`` = 1 when not given)."""
    n, dim = phi.shape
    kernel = np.zeros((dim, dim), dtype=np.float64)
    for start in range(0, n, ROWS_PER_BLOCK):
        block = _finite_block(phi[start : start + ROWS_PER_BLOCK], start, "training features")
        if row_weights is not None:
            block *= row_weights[start : start + block.shape[0], None]
        kernel += block.T @ block
    return kernel


def _curvature(kernel: FloatArray, model: int, dim: int) -> npt.NDArray[np.float64]:
    """A model's Gauss-Newton kernel as float64, refused unless finite and ``[dim, dim]``."""
    out = np.asarray(kernel, dtype=np.float64)
    if out.shape != (dim, dim) or not np.isfinite(out).all():
        raise ValidationError(f"curvature kernel {model} must be finite and [{dim}, {dim}]; got {out.shape}")
    return out


def _check_kernel_bytes(size: int) -> None:
    if size * size * 8 > KERNEL_BYTES_MAX:
        raise LimitExceededError(
            f"TRAK's {size} x {size} float64 system needs {size * size * 8} bytes, over"
            f" KERNEL_BYTES_MAX={KERNEL_BYTES_MAX}; lower k"
        )


Response = Literal["ridge", "gradient-flow"]
RESPONSES: tuple[Response, ...] = ("ridge", "gradient-flow")


class InfluenceScorer(LinearScorer):
    """The influence function per model with the Gauss-Newton kernel and a ridge or gradient-flow
    response, averaged over models (docs/concepts/attribution.md)."""

    method = "influence"

    def __init__(
        self, lambda_: float = 10.0, *, response: Response = "gradient-flow", lambda_relative: bool = True
    ) -> None:
        super().__init__()
        if not (np.isfinite(lambda_) and lambda_ > 0.0):
            raise ValidationError(f"lambda_ {lambda_} must be finite and > 0")
        if response not in RESPONSES:
            raise ValidationError(f"response {response!r} is not one of {', '.join(RESPONSES)}")
        self.lambda_ = float(lambda_)
        self.response: Response = response
        self.lambda_relative = lambda_relative
        self.lambdas_used: list[float] = []
        """The absolute lambda each model's kernel got."""

    def fit(
        self,
        train_features_per_model: Sequence[FloatArray],
        train_weights_per_model: Sequence[FloatArray] | None = None,
        *,
        curvature_per_model: Sequence[FloatArray] | None = None,
    ) -> InfluenceScorer:
        """Precompute ``G``. ``train_weights_per_model`` (Q) turn the features into loss gradients;
        ``curvature_per_model`` is each model's Gauss-Newton kernel (else the empirical Fisher)."""
        n, dims, models = _check_train(
            train_features_per_model, train_weights_per_model, "influence", curvature_per_model
        )
        blocks = []
        self.lambdas_used = []
        for m, phi in enumerate(train_features_per_model):
            dim = dims[m]
            _check_kernel_bytes(dim)
            q = np.ones(n) if train_weights_per_model is None else np.asarray(train_weights_per_model[m], np.float64)
            kernel = (
                _feature_kernel(phi, q) if curvature_per_model is None else _curvature(curvature_per_model[m], m, dim)
            )
            vectors, factor = self._response(kernel)
            out = np.empty((n, dim), dtype=np.float32)
            for start in range(0, n, ROWS_PER_BLOCK):
                block = _finite_block(phi[start : start + ROWS_PER_BLOCK], start, "training features")
                stop = start + block.shape[0]
                filtered = block * factor if vectors is None else ((block @ vectors) * factor) @ vectors.T
                out[start:stop] = filtered * (q[start:stop, None] / models)
            blocks.append(out)
        self._set_items(blocks, dims)
        return self

    def _response(
        self, kernel: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64] | None, npt.NDArray[np.float64]]:
        """``(V, F(h))``, the response being ``V diag(F(h)) V^T`` for the kernel's eigenvalues h (negative
        rounding error clipped to 0); ``V`` is None when the kernel is already diagonal (features rotated
        to its eigenbasis, as a caller trying many lambdas may do): no O(dim^3) work then."""
        dim = kernel.shape[0]
        vectors: npt.NDArray[np.float64] | None = None
        if np.count_nonzero(kernel - np.diag(np.diag(kernel))) == 0:
            eigenvalues = np.diag(kernel).copy()
        else:
            eigenvalues, vectors = np.linalg.eigh((kernel + kernel.T) / 2.0)
        h = np.clip(eigenvalues, 0.0, None)
        mean = float(h.sum()) / dim
        lam = self.lambda_ * mean if self.lambda_relative else self.lambda_
        if not lam > 0.0:
            raise ValidationError("the curvature kernel is zero; the features carry no gradient")
        self.lambdas_used.append(lam)
        if self.response == "ridge":
            factor = 1.0 / (h + lam)
        else:
            x = h / lam
            # (1 - exp(-x)) / h = -expm1(-x) / (x lam); -> 1 / lam as x -> 0.
            small = x < 1e-8
            factor = np.where(small, 1.0 / lam, -np.expm1(-x) / np.where(small, 1.0, h))
        return vectors, np.asarray(factor, dtype=np.float64)


class TracInScorer(LinearScorer):
    """The gradient dot product, summed over checkpoints with weights ``c_m`` (default ``1/M``)."""

    method = "tracin"

    def fit(
        self,
        train_features_per_model: Sequence[FloatArray],
        train_weights_per_model: Sequence[FloatArray] | None = None,
        *,
        checkpoint_weights: Sequence[float] | None = None,
    ) -> TracInScorer:
        n, dims, models = _check_train(train_features_per_model, train_weights_per_model, "TracIn")
        c = [1.0 / models] * models if checkpoint_weights is None else [float(x) for x in checkpoint_weights]
        if len(c) != models or not all(np.isfinite(c)):
            raise ValidationError(f"checkpoint_weights must be {models} finite numbers; got {checkpoint_weights}")
        blocks = []
        for m, phi in enumerate(train_features_per_model):
            q = np.ones(n) if train_weights_per_model is None else np.asarray(train_weights_per_model[m], np.float64)
            block = np.empty((n, dims[m]), dtype=np.float32)
            for start in range(0, n, ROWS_PER_BLOCK):
                rows = _finite_block(phi[start : start + ROWS_PER_BLOCK], start, "training features")
                block[start : start + rows.shape[0]] = rows * (c[m] * q[start : start + rows.shape[0]])[:, None]
            blocks.append(block)
        self._set_items(blocks, dims)
        return self


class EmbeddingSimilarityScorer(LinearScorer):
    """Cosine similarity of black-box embeddings, averaged over embedding models. Labelled weaker:
    resemblance is not influence (on published benchmarks it sits several times below gradient methods)."""

    method = "embedding-similarity"
    weaker = True

    def fit(
        self,
        train_features_per_model: Sequence[FloatArray],
        train_weights_per_model: Sequence[FloatArray] | None = None,
    ) -> EmbeddingSimilarityScorer:
        """``train_weights_per_model`` is accepted for a uniform interface and must be ``None``."""
        if train_weights_per_model is not None:
            raise ValidationError("embedding similarity takes no training weights; pass None")
        _, dims, models = _check_train(train_features_per_model, None, "embedding similarity")
        blocks = [(_unit_rows(f, "embeddings") / models).astype(np.float32) for f in train_features_per_model]
        self._set_items(blocks, dims)
        return self

    def _query_part(self, m: int, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return _unit_rows(features, "target embeddings")


def _unit_rows(features: FloatArray, what: str) -> npt.NDArray[np.float64]:
    rows = _finite_block(features, 0, what)
    norms = np.linalg.norm(rows, axis=1)
    zero = np.flatnonzero(norms == 0.0)
    if zero.size:
        raise ValidationError(f"{what} of rows {zero[:10].tolist()} are zero vectors; cosine is undefined for them")
    unit: npt.NDArray[np.float64] = rows / norms[:, None]
    return unit


__all__ = [
    "RESPONSES",
    "EmbeddingSimilarityScorer",
    "InfluenceScorer",
    "LinearScorer",
    "Response",
    "TRAKScorer",
    "TracInScorer",
    "score_items",
]
