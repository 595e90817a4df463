"""Explanations: the k works that raised an output's score most, to show on a statement.

Payment never depends on these (``payees`` scores every payee exactly); they explain it. Scores are
inner products of a query with the rows of a scorer's item matrix (``scorers``), so this is a maximum
inner product search:

- ``top_k_exact``: a blocked scan (``ROWS_PER_BLOCK`` rows at a time, float64), exact, ties broken by
  the lower work index, so the answer never depends on the block size.
- ``FaissIndex``: FAISS with the inner-product metric, ``"flat"`` (exact, brute force: right for up to
  about 10^4 queries) or ``"ivf"`` (an inverted file of ``nlist`` k-means cells, ``nprobe`` of them
  searched: approximate, for large N). FAISS is an optional dependency: ``pip install
  'endcredits[faiss]'``.
- ``recall_at_k``: how many of the exact top k an approximate search found, averaged over queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from endcredits.attribution.scorers import FloatArray
from endcredits.errors import ValidationError

ROWS_PER_BLOCK = 65_536
TOP_K_MAX = 10_000


@dataclass(frozen=True)
class TopK:
    """Per query, the works' indices and scores, best first: ``[queries, k]`` each."""

    indices: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]


def _check(query: FloatArray, works: int, d: int, k: int) -> npt.NDArray[np.float64]:
    q = np.asarray(query, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != d:
        raise ValidationError(f"query must be [outputs, {d}] to match the items; got {q.shape}")
    if not 1 <= k <= min(TOP_K_MAX, works):
        raise ValidationError(f"k {k} must be in [1, min({TOP_K_MAX}, works={works})]")
    if not np.isfinite(q).all():
        raise ValidationError("query features are not finite; featurize the output again")
    return q


def _best(scores: npt.NDArray[np.float64], indices: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.int64]:
    """Positions of the k best (highest score, then lowest index) among ``scores``."""
    if scores.size <= k:
        return np.lexsort((indices, -scores))
    threshold = np.partition(scores, scores.size - k)[scores.size - k]
    above = np.flatnonzero(scores > threshold)
    tied = np.flatnonzero(scores == threshold)
    tied = tied[np.argsort(indices[tied], kind="stable")][: k - above.size]
    chosen = np.concatenate([above, tied])
    return chosen[np.lexsort((indices[chosen], -scores[chosen]))]


def top_k_exact(query: FloatArray, items: FloatArray, k: int, *, rows_per_block: int = ROWS_PER_BLOCK) -> TopK:
    """The exact top k works per query by a blocked scan; memory O(queries x rows_per_block)."""
    if items.ndim != 2:
        raise ValidationError(f"items must be [works, d]; got shape {items.shape}")
    q = _check(query, items.shape[0], items.shape[1], k)
    if rows_per_block < 1:
        raise ValidationError(f"rows_per_block {rows_per_block} must be >= 1")
    best_idx = [np.empty(0, dtype=np.int64) for _ in range(q.shape[0])]
    best_val = [np.empty(0, dtype=np.float64) for _ in range(q.shape[0])]
    for start in range(0, items.shape[0], rows_per_block):
        block = np.asarray(items[start : start + rows_per_block], dtype=np.float64)
        scores = q @ block.T
        block_idx = np.arange(start, start + block.shape[0], dtype=np.int64)
        for row in range(q.shape[0]):
            values = np.concatenate([best_val[row], scores[row]])
            indices = np.concatenate([best_idx[row], block_idx])
            keep = _best(values, indices, k)
            best_idx[row], best_val[row] = indices[keep], values[keep]
    return TopK(np.stack(best_idx), np.stack(best_val))


class FaissIndex:
    """A FAISS inner-product index over an item matrix (see the module docstring)."""

    def __init__(
        self,
        items: FloatArray,
        *,
        kind: Literal["flat", "ivf"] = "flat",
        nlist: int | None = None,
        nprobe: int = 8,
        seed: int = 0,
    ) -> None:
        try:
            import faiss
        except ImportError as exc:
            raise ValidationError("FAISS is not installed; pip install 'endcredits[faiss]' or use top_k_exact") from exc
        data = np.ascontiguousarray(items, dtype=np.float32)
        if data.ndim != 2 or data.shape[0] < 1 or not np.isfinite(data).all():
            raise ValidationError("items must be a finite [works, d] matrix with at least one row")
        n, d = data.shape
        self.kind = kind
        self.index: Any
        if kind == "flat":
            self.index = faiss.IndexFlatIP(d)
        elif kind == "ivf":
            cells = nlist if nlist is not None else max(1, math.isqrt(16 * n))
            if not 1 <= cells <= n:
                raise ValidationError(f"nlist {cells} must be in [1, works={n}]")
            if not 1 <= nprobe <= cells:
                raise ValidationError(f"nprobe {nprobe} must be in [1, nlist={cells}]")
            quantizer = faiss.IndexFlatIP(d)
            self.index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
            self.index.cp.seed = seed
            self.index.train(data)
            self.index.nprobe = nprobe
            self._quantizer = quantizer  # FAISS does not own it; keep it alive
        else:
            raise ValidationError(f"kind {kind!r} is not 'flat' or 'ivf'")
        self.index.add(data)

    def search(self, query: FloatArray, k: int) -> TopK:
        q = np.ascontiguousarray(_check(query, self.index.ntotal, self.index.d, k), dtype=np.float32)
        scores, indices = self.index.search(q, k)
        return TopK(indices.astype(np.int64), scores.astype(np.float64))


def recall_at_k(exact: TopK, approximate: TopK) -> float:
    """The mean over queries of |exact top k intersect approximate top k| / k."""
    if exact.indices.shape != approximate.indices.shape:
        raise ValidationError(f"top-k shapes differ: {exact.indices.shape} and {approximate.indices.shape}")
    queries, k = exact.indices.shape
    if queries == 0:
        raise ValidationError("recall needs at least one query")
    found = [np.intersect1d(exact.indices[r], approximate.indices[r]).size for r in range(queries)]
    return float(np.mean(found) / k)


def faiss_recall(items: FloatArray, query: FloatArray, k: int, index: FaissIndex) -> float:
    """FAISS recall@k against the exact blocked scan, on these queries."""
    return recall_at_k(top_k_exact(query, items, k), index.search(query, k))


__all__ = ["FaissIndex", "TopK", "faiss_recall", "recall_at_k", "top_k_exact"]
