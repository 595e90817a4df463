"""Exact per-payee attribution: every payee's score for one output in O(payees x d), no tail cut off.

The credit matrix ``W`` (works x payees) holds each work's exact payee shares (credits and lineage; the
royalties stage computes them as Fractions with ``royalties.shares.work_shares`` and passes them here
as float64 triplets). Every scorer's scores are linear in the item matrix ``G`` (``scorers``), so a
payee's score, defined as the credit-weighted sum of its works' scores,

    score(output, payee p) = sum_w W[w, p] * score(output, w) = query(output) . (W^T G)[p]

is one dot product with the payee's row of ``Psi = W^T G``, precomputed once per (fitted scorer,
credit version). ``PayeeIndex`` holds ``Psi``.

``payee_weights`` turns one output's payee scores into integer weights in the exact ratio of the
payees' shares of the output's residual pool (see its docstring for the rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import lcm
from typing import Any

import numpy as np
import numpy.typing as npt

from endcredits.attribution.scorers import FloatArray, LinearScorer
from endcredits.errors import LimitExceededError, ValidationError
from endcredits.limits import PAYEES_PER_OUTPUT_MAX

CREDIT_ENTRIES_MAX = 1 << 34
PAYEES_MAX = 1 << 31
PSI_BYTES_MAX = 64 << 30
TRIPLETS_PER_BLOCK = 1 << 18
"""Credit entries gathered at once while building ``Psi`` (bounds the temporary rows)."""

WEIGHT_BITS = 32
"""Influence is quantized to integers summing to at most 2^32 per output (``payee_weights``)."""


@dataclass(frozen=True)
class CreditMatrix:
    """``W`` as sorted triplets: ``share`` of work ``work_index`` goes to payee ``payee_index``."""

    work_index: npt.NDArray[np.int64]
    payee_index: npt.NDArray[np.int64]
    share: npt.NDArray[np.float64]
    works: int
    payees: int

    @classmethod
    def from_triplets(
        cls,
        work_index: Sequence[int] | npt.NDArray[np.integer[Any]],
        payee_index: Sequence[int] | npt.NDArray[np.integer[Any]],
        share: Sequence[float] | FloatArray,
        *,
        works: int,
        payees: int,
    ) -> CreditMatrix:
        """Check and sort (by payee, then work) the entries; repeated (work, payee) pairs add up."""
        w = np.asarray(work_index, dtype=np.int64).ravel()
        p = np.asarray(payee_index, dtype=np.int64).ravel()
        s = np.asarray(share, dtype=np.float64).ravel()
        if not (w.shape == p.shape == s.shape):
            raise ValidationError(f"credit triplets differ in length: {w.size}, {p.size}, {s.size}")
        if w.size > CREDIT_ENTRIES_MAX or not 0 <= payees <= PAYEES_MAX:
            raise LimitExceededError(f"{w.size} credit entries or {payees} payees is over the bound; shard the works")
        if w.size and (w.min() < 0 or w.max() >= works):
            raise ValidationError(f"credit work indices must be in [0, {works}); got {int(w.min())}..{int(w.max())}")
        if p.size and (p.min() < 0 or p.max() >= payees):
            raise ValidationError(f"credit payee indices must be in [0, {payees}); got {int(p.min())}..{int(p.max())}")
        bad = np.flatnonzero(~(np.isfinite(s) & (s >= 0.0)))
        if bad.size:
            raise ValidationError(
                f"credit shares at entries {bad[:10].tolist()} are negative or not finite; a share is in [0, 1]"
            )
        order = np.lexsort((w, p))
        return cls(w[order], p[order], s[order], works, payees)

    @classmethod
    def from_sparse(cls, matrix: Any) -> CreditMatrix:
        """From any matrix with ``shape`` and ``tocoo()`` (``scipy.sparse``), rows works, columns payees."""
        if not hasattr(matrix, "tocoo") or not hasattr(matrix, "shape"):
            raise ValidationError("pass a scipy.sparse matrix (works x payees) or use from_triplets()")
        coo = matrix.tocoo()
        works, payees = (int(x) for x in matrix.shape)
        return cls.from_triplets(coo.row, coo.col, coo.data, works=works, payees=payees)

    def volume(self) -> npt.NDArray[np.float64]:
        """Each payee's total share over all works: ``sum_w W[w, p]``."""
        return np.bincount(self.payee_index, weights=self.share, minlength=self.payees).astype(np.float64)

    def transpose_times(self, items: FloatArray, *, dtype: type[np.floating[Any]] = np.float64) -> npt.NDArray[Any]:
        """``W^T items`` ``[payees, d]``, accumulated in float64 in a fixed order (by payee, then work)."""
        if items.ndim != 2 or items.shape[0] != self.works:
            raise ValidationError(f"items must be [{self.works}, d]; got {items.shape}")
        needed = self.payees * items.shape[1] * np.dtype(dtype).itemsize
        if needed > PSI_BYTES_MAX:
            raise LimitExceededError(f"W^T G needs {needed} bytes, over PSI_BYTES_MAX={PSI_BYTES_MAX}; lower k")
        out = np.zeros((self.payees, items.shape[1]), dtype=np.float64)
        for start in range(0, self.work_index.size, TRIPLETS_PER_BLOCK):
            w = self.work_index[start : start + TRIPLETS_PER_BLOCK]
            p = self.payee_index[start : start + TRIPLETS_PER_BLOCK]
            rows = np.asarray(items[w], dtype=np.float64) * self.share[start : start + TRIPLETS_PER_BLOCK, None]
            starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
            out[p[starts]] += np.add.reduceat(rows, starts, axis=0)
        return out.astype(dtype, copy=False)


class PayeeIndex:
    """``Psi = W^T G`` for a fitted scorer: one output's payee scores cost O(payees x d)."""

    def __init__(
        self, scorer: LinearScorer, credits: CreditMatrix, *, dtype: type[np.floating[Any]] = np.float64
    ) -> None:
        items = scorer.item_matrix
        if items.shape[0] != credits.works:
            raise ValidationError(
                f"the credit matrix has {credits.works} works but the scorer was fitted on {items.shape[0]};"
                " build both from the same manifest"
            )
        self.scorer = scorer
        self.credits = credits
        self.psi = credits.transpose_times(items, dtype=dtype)

    def score(self, target_features_per_model: Sequence[FloatArray]) -> npt.NDArray[np.float64]:
        """Payee scores float64 ``[outputs, payees]``."""
        query = self.scorer.query(target_features_per_model)
        out: npt.NDArray[np.float64] = query.astype(self.psi.dtype, copy=False) @ self.psi.T
        return out.astype(np.float64, copy=False)


def _as_fractions(values: Sequence[int | Fraction], what: str) -> list[Fraction]:
    out = [Fraction(v) for v in values]
    if any(v < 0 for v in out):
        raise ValidationError(f"{what} must be >= 0")
    return out


def payee_weights(
    scores: Sequence[float] | FloatArray,
    *,
    baseline_share: Fraction,
    volume: Sequence[int | Fraction] | None = None,
    bits: int = WEIGHT_BITS,
) -> list[int]:
    """Integer weights per payee, in the exact ratio of each payee's share of one output's pool.

    The rule (the agreement supplies ``baseline_share`` b, a Fraction in [0, 1]):

    1. Negative influence earns nothing: a payee whose score is <= 0 gets no influence share (a work
       that made the output less likely is not charged either; its payees are simply not paid).
    2. Positive scores are quantized once: ``I_p = floor(s_p / sum(s+) * 2^bits)`` (float64, in payee
       order, so the same scores always give the same integers; a payee below 2^-bits of the positive
       mass gets 0).
    3. With b > 0, b of the pool goes by volume ``V_p`` (exact: ints or Fractions, e.g. the payee's
       credited share of the manifest's works, as stock-photo funds pay by contribution) and 1 - b by
       influence: ``share_p = (1 - b) I_p / sum(I) + b V_p / sum(V)``. If nothing has positive
       influence, the whole pool goes by volume; with no volume either, every weight is 0 (the caller
       holds the pool, nothing is paid out on no evidence).

    The returned integers are ``share_p`` times one common denominator (exact Python ints); hand them
    to ``endcredits.money`` to allocate microunits.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size > PAYEES_PER_OUTPUT_MAX:
        raise LimitExceededError(f"{values.size} payees is over PAYEES_PER_OUTPUT_MAX={PAYEES_PER_OUTPUT_MAX}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValidationError(f"payee scores at {bad[:10].tolist()} are not finite; attribute the output again")
    b = Fraction(baseline_share)
    if not 0 <= b <= 1:
        raise ValidationError(f"baseline_share {b} must be in [0, 1]")
    if not 1 <= bits <= 52:
        raise ValidationError(f"bits {bits} must be in [1, 52] (float64 holds 52 fraction bits)")
    positive = np.where(values > 0.0, values, 0.0)
    mass = float(positive.sum())
    influence = (
        np.floor(positive / mass * float(1 << bits)).astype(np.int64).tolist() if mass > 0.0 else [0] * values.size
    )
    influence_total = sum(influence)
    volumes = [Fraction(0)] * values.size
    if b > 0:
        if volume is None or len(volume) != values.size:
            raise ValidationError(f"a baseline share needs one volume per payee ({values.size})")
        volumes = _as_fractions(volume, "volumes")
    volume_total = sum(volumes, Fraction(0))
    if influence_total == 0:
        return _integers(volumes) if volume_total > 0 else [0] * values.size
    if b == 0 or volume_total == 0:
        return influence
    shares = [(1 - b) * Fraction(i, influence_total) + b * v / volume_total for i, v in zip(influence, volumes)]
    return _integers(shares)


def _integers(fractions: Sequence[Fraction]) -> list[int]:
    denominator = 1
    for f in fractions:
        denominator = lcm(denominator, f.denominator)
    return [int(f * denominator) for f in fractions]


__all__ = ["WEIGHT_BITS", "CreditMatrix", "PayeeIndex", "payee_weights"]
