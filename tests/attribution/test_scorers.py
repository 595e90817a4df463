"""Scorers: TRAK against its formula (primal, dual, curvature, ensemble), TracIn, embeddings, quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_tasks import blobs, state, train_logistic

from endcredits.attribution.featurizer import Featurizer
from endcredits.attribution.scorers import EmbeddingSimilarityScorer, TracInScorer, TRAKScorer
from endcredits.attribution.task import classification_task
from endcredits.errors import ValidationError


def _random(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _trak_by_formula(phis, qs, targets, lam_rel, kernels=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    total = 0.0
    for m, (phi, target) in enumerate(zip(phis, targets, strict=True)):
        phi, target = phi.astype(np.float64), target.astype(np.float64)
        kernel = phi.T @ phi if kernels is None else kernels[m]
        lam = lam_rel * np.trace(kernel) / phi.shape[1]
        total = total + target @ np.linalg.inv(kernel + lam * np.eye(phi.shape[1])) @ phi.T
    return total / len(phis) * np.mean(qs, axis=0)[None, :]


@pytest.mark.parametrize("n", [40, 9])  # more examples than dims (primal) and fewer (dual)
def test_trak_equals_the_direct_formula_for_an_ensemble(n: int) -> None:
    phis = [_random(m, n, 12) for m in range(3)]
    qs = [np.abs(_random(10 + m, n)) for m in range(3)]
    targets = [_random(20 + m, 4, 12) for m in range(3)]
    scorer = TRAKScorer(0.05).fit(phis, qs)
    expected = _trak_by_formula(phis, qs, targets, 0.05)
    assert np.allclose(scorer.score(targets), expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    assert scorer.item_matrix.shape == (n, 36) and scorer.label == {"method": "trak", "weaker": False}
    kernels = [np.cov(_random(30 + m, 50, 12).T) * 50 for m in range(3)]
    with_curvature = TRAKScorer(0.05).fit(phis, qs, curvature_per_model=kernels)
    expected = _trak_by_formula(phis, qs, targets, 0.05, kernels)
    assert np.allclose(with_curvature.score(targets), expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    absolute = TRAKScorer(3.0, lambda_relative=False).fit(phis[:1])
    assert absolute.lambdas_used == [3.0]


def test_tracin_and_embedding_similarity() -> None:
    phis = [_random(m, 10, 5) for m in range(2)]
    qs = [np.abs(_random(5 + m, 10)) for m in range(2)]
    targets = [_random(7 + m, 3, 5) for m in range(2)]
    expected = sum(0.5 * (t.astype(np.float64) @ (p * q[:, None]).T) for t, p, q in zip(targets, phis, qs, strict=True))
    assert np.allclose(TracInScorer().fit(phis, qs).score(targets), expected, rtol=1e-5)
    embed = EmbeddingSimilarityScorer().fit(phis[:1])
    cosine = embed.score(targets[:1])
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    assert np.allclose(cosine, unit(targets[0].astype(np.float64)) @ unit(phis[0].astype(np.float64)).T, atol=1e-6)
    assert embed.label == {"method": "embedding-similarity", "weaker": True}
    with pytest.raises(ValidationError, match="zero vectors"):
        EmbeddingSimilarityScorer().fit([np.zeros((2, 3), np.float32)])


def test_scorer_guards() -> None:
    with pytest.raises(ValidationError, match="not fitted"):
        TRAKScorer().score([_random(0, 2, 3)])
    scorer = TRAKScorer().fit([_random(0, 5, 3)])
    with pytest.raises(ValidationError, match="dims"):
        scorer.score([_random(1, 2, 4)])
    bad = _random(0, 5, 3)
    bad[2, 1] = np.nan
    with pytest.raises(ValidationError, match=r"rows \[2\] are not finite"):
        TRAKScorer().fit([bad])
    with pytest.raises(ValidationError, match="lambda_"):
        TRAKScorer(-1.0)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_trak_predicts_retraining_on_half_subsets_logistic_regression() -> None:
    """A quality floor: LDS against real retraining (20 half subsets) on a seeded logistic regression."""
    n, classes, weight_decay = 120, 3, 1e-2
    x, y = blobs(n + 12, d=5, classes=classes, seed=3)
    x_train, y_train, x_test, y_test = x[:n], y[:n], x[n:], y[n:]
    model = train_logistic(x_train, y_train, classes, weight_decay=weight_decay)
    task = classification_task(model, [state(model)])
    featurizer = Featurizer(task, k=None, seed=0, projection="identity")
    phi = featurizer.compute((x_train, y_train), role="train")
    q = featurizer.weights((x_train, y_train))
    targets = featurizer.compute((x_test, y_test))
    curvature = featurizer.curvature((x_train, y_train))

    rng = np.random.default_rng(0)
    masks = np.zeros((20, n), dtype=bool)
    measured = []
    for s in range(20):
        keep = np.sort(rng.choice(n, n // 2, replace=False))
        masks[s, keep] = True
        sub = train_logistic(x_train[keep], y_train[keep], classes, weight_decay=weight_decay)
        with torch.no_grad():
            measured.append(task.measurement(sub, (x_test, y_test)).numpy())
    outputs = np.array(measured)

    def lds(scores: np.ndarray) -> float:
        predicted = masks.astype(np.float64) @ scores.T
        return float(np.mean([_spearman(predicted[:, j], outputs[:, j]) for j in range(outputs.shape[1])]))

    # With the Gauss-Newton kernel (the exact Hessian here) and the training's own L2, TRAK is the
    # influence function; it must beat TRAK's Phi^T Phi kernel and the plain gradient dot product.
    hessian = TRAKScorer(n * weight_decay, lambda_relative=False).fit([phi], [q], curvature_per_model=[curvature])
    exact = lds(hessian.score([targets]))
    plain = lds(TRAKScorer(1e-3).fit([phi], [q]).score([targets]))
    tracin = lds(TracInScorer().fit([phi], [q]).score([targets]))
    assert exact > 0.85 and plain > 0.6 and exact > max(plain, tracin), (exact, plain, tracin)
