"""Per-payee attribution equals the sum of per-work scores; the rule from scores to weights."""

from __future__ import annotations

import numpy as np
import pytest

from endcredits.attribution.payees import CreditMatrix, PayeeIndex
from endcredits.attribution.scorers import TracInScorer, TRAKScorer
from endcredits.errors import ValidationError


def _credits(works: int, payees: int, seed: int) -> CreditMatrix:
    """Each work split among 1..4 payees, the shares summing to one, some pairs repeated."""
    rng = np.random.default_rng(seed)
    w, p, s = [], [], []
    for work in range(works):
        count = int(rng.integers(1, 5))
        shares = rng.dirichlet(np.ones(count))
        w += [work] * count
        p += rng.integers(0, payees, count).tolist()
        s += shares.tolist()
    return CreditMatrix.from_triplets(w, p, s, works=works, payees=payees)


def test_payee_scores_equal_the_credit_weighted_sum_of_work_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    phis = [rng.standard_normal((300, 16)).astype(np.float32) for _ in range(2)]
    qs = [rng.uniform(0.1, 1.0, 300).astype(np.float32) for _ in range(2)]
    targets = [rng.standard_normal((5, 16)).astype(np.float32) for _ in range(2)]
    credits = _credits(300, 40, seed=2)
    dense = np.zeros((300, 40))
    np.add.at(dense, (credits.work_index, credits.payee_index), credits.share)
    for scorer in (TRAKScorer(1e-2).fit(phis, qs), TracInScorer().fit(phis, qs)):
        per_work = scorer.score(targets)
        expected = per_work @ dense
        scale = np.abs(per_work) @ dense
        monkeypatch.setattr("endcredits.attribution.payees.TRIPLETS_PER_BLOCK", 37)  # blocks split payees
        got = PayeeIndex(scorer, credits).score(targets)
        assert np.all(np.abs(got - expected) <= 1e-6 * scale), np.max(np.abs(got - expected) / scale)
    assert np.allclose(credits.volume(), dense.sum(axis=0))


def test_credit_matrix_from_a_sparse_like_matrix_and_guards() -> None:
    class Coo:  # what scipy.sparse offers: shape and tocoo() with row, col, data
        shape = (3, 2)

        def tocoo(self) -> Coo:
            return self

        row = np.array([2, 0, 1])
        col = np.array([1, 0, 1])
        data = np.array([1.0, 0.5, 1.0])

    matrix = CreditMatrix.from_sparse(Coo())
    assert matrix.payee_index.tolist() == [0, 1, 1] and matrix.work_index.tolist() == [0, 1, 2]
    with pytest.raises(ValidationError, match=r"payee indices must be in \[0, 2\)"):
        CreditMatrix.from_triplets([0], [2], [1.0], works=1, payees=2)
    with pytest.raises(ValidationError, match="negative or not finite"):
        CreditMatrix.from_triplets([0], [0], [-0.1], works=1, payees=1)
    scorer = TracInScorer().fit([np.ones((4, 2), np.float32)])
    with pytest.raises(ValidationError, match="same manifest"):
        PayeeIndex(scorer, matrix)
