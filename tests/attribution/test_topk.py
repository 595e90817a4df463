"""Top-k explanations: the blocked scan is exact whatever the block; FAISS recall is measured."""

from __future__ import annotations

import numpy as np
import pytest

from endcredits.attribution.topk import FaissIndex, TopK, faiss_recall, recall_at_k, top_k_exact
from endcredits.errors import ValidationError


def _data(n: int, d: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((queries, d))


@pytest.mark.parametrize("rows_per_block", [1, 7, 1000])
def test_blocked_scan_equals_a_full_sort(rows_per_block: int) -> None:
    items, query = _data(200, 8, 3)
    items[10] = items[50] = 10 * items[10]  # a tie at the top: the lower index comes first
    query[0] = items[10]
    got = top_k_exact(query, items, 5, rows_per_block=rows_per_block)
    scores = query @ items.astype(np.float64).T
    for row in range(3):
        expected = np.lexsort((np.arange(200), -scores[row]))[:5]
        assert got.indices[row].tolist() == expected.tolist()
        assert np.allclose(got.scores[row], scores[row, expected])
    assert got.indices[0][:2].tolist() == [10, 50]


def test_faiss_flat_is_exact_and_ivf_recall_is_measured() -> None:
    pytest.importorskip("faiss")
    items, query = _data(2000, 16, 20, seed=1)
    flat = FaissIndex(items, kind="flat")
    assert faiss_recall(items, query, 10, flat) == 1.0
    ivf = FaissIndex(items, kind="ivf", nlist=32, nprobe=4, seed=0)
    recall = faiss_recall(items, query, 10, ivf)
    assert 0.2 < recall < 1.0
    assert faiss_recall(items, query, 10, FaissIndex(items, kind="ivf", nlist=32, nprobe=32)) == 1.0
    assert faiss_recall(items, query, 10, FaissIndex(items, kind="ivf", nlist=32, nprobe=4, seed=0)) == recall


def test_recall_and_guards() -> None:
    exact = TopK(np.array([[1, 2, 3, 4]]), np.zeros((1, 4)))
    approx = TopK(np.array([[4, 9, 1, 8]]), np.zeros((1, 4)))
    assert recall_at_k(exact, approx) == 0.5
    items, query = _data(5, 3, 1)
    with pytest.raises(ValidationError, match="k 6"):
        top_k_exact(query, items, 6)
    with pytest.raises(ValidationError, match="query must be"):
        top_k_exact(query[:, :2], items, 2)
