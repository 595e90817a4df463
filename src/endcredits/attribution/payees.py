"""Exact per-payee attribution: every payee's score for one output in O(payees x d), no tail cut off.

The credit matrix ``W`` (works x payees) holds each work's exact payee shares (credits and lineage; the
royalties stage computes them as Fractions with ``royalties.shares.work_shares`` and passes them here
as float64 triplets). Every scorer's scores are linear in the item matrix ``G`` (``scorers``), so a
payee's score, defined as the credit-weighted sum of its works' scores,

    score(output, payee p) = sum_w W[w, p] * score(output, w) = query(output) . (W^T G)[p]

is one dot product with the payee's row of ``Psi = W^T G``, precomputed once per (fitted scorer,
credit version). ``PayeeIndex`` holds ``Psi``.

Payee scores become shares of the output's pool in one place for every attribution, per work or per
payee: ``royalties.shares.attribution_weights`` (negative influence earns nothing; an optional baseline
share by credited volume).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from endcredits.attribution.scorers import FloatArray, LinearScorer
from endcredits.errors import LimitExceededError, ValidationError

CREDIT_ENTRIES_MAX = 1 << 34
PAYEES_MAX = 1 << 31
PSI_BYTES_MAX = 64 << 30
TRIPLETS_PER_BLOCK = 1 << 18
"""Credit entries gathered at once while building ``Psi`` (bounds the temporary rows)."""


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


__all__ = ["CreditMatrix", "PayeeIndex"]
