"""Scorers: TRAK against its formula (primal, dual, curvature, ensemble), TracIn, embeddings, quality."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from tiny_tasks import blobs, state, train_logistic

from endcredits.attribution.featurizer import Featurizer
from endcredits.attribution.scorers import EmbeddingSimilarityScorer, InfluenceScorer, TracInScorer, TRAKScorer
from endcredits.attribution.task import AttributionTask, classification_task
from endcredits.errors import ValidationError


def _random(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _trak_by_formula(phis, qs, targets, lam_rel, kernels=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    total = 0.0
    for m, (phi, target) in enumerate(zip(phis, targets, strict=True)):
        phi, target = phi.astype(np.float64), target.astype(np.float64)
        kernel = phi.T @ phi if kernels is None else kernels[m]
        # Relative to the mean eigenvalue of the system solved: the n x n Gram when n < dim.
        size = phi.shape[1] if kernels is not None else min(phi.shape)
        lam = lam_rel * np.trace(kernel) / size
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


def test_a_relative_lambda_means_the_same_ridge_at_any_width() -> None:
    # Nine works: features of 12 dimensions, the same padded to 40 with zeros, and the same rotated into
    # 40 dimensions (as exact gradients are to projected ones). The works span the same 9 directions, so
    # a relative lambda must give the same scores at every width: it is taken relative to the Gram.
    phi, target = _random(1, 9, 12), _random(2, 3, 12)
    rotation = np.linalg.qr(np.random.default_rng(3).standard_normal((40, 40)))[0][:12].astype(np.float32)
    padded = [np.pad(phi, ((0, 0), (0, 28)))], [np.pad(target, ((0, 0), (0, 28)))]
    rotated = [phi @ rotation], [target @ rotation]
    narrow = TRAKScorer(0.5).fit([phi]).score([target])
    for wide_phi, wide_target in (padded, rotated):
        wide = TRAKScorer(0.5).fit(wide_phi)
        assert np.allclose(wide.score(wide_target), narrow, rtol=1e-4, atol=1e-6 * np.abs(narrow).max())
    gram_trace = float(np.trace(phi.astype(np.float64) @ phi.T.astype(np.float64)))
    assert TRAKScorer(0.5).fit([phi]).lambdas_used == pytest.approx([0.5 * gram_trace / 9])


def test_tracin_and_embedding_similarity() -> None:
    phis = [_random(m, 10, 5) for m in range(2)]
    qs = [np.abs(_random(5 + m, 10)) for m in range(2)]
    targets = [_random(7 + m, 3, 5) for m in range(2)]
    expected = sum(0.5 * (t.astype(np.float64) @ (p * q[:, None]).T) for t, p, q in zip(targets, phis, qs, strict=True))
    assert np.allclose(TracInScorer().fit(phis, qs).score(targets), expected, rtol=1e-5)
    embed = EmbeddingSimilarityScorer().fit(phis[:1])
    cosine = embed.score(targets[:1])

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=1, keepdims=True)

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


def _retraining_lds(
    train: Callable[[np.ndarray], torch.nn.Module],
    task: AttributionTask,
    n: int,
    test: tuple[torch.Tensor, torch.Tensor],
) -> Callable[[np.ndarray], float]:
    """LDS against 20 models retrained on seeded half subsets by ``train(kept indices)``."""
    rng = np.random.default_rng(0)
    masks = np.zeros((20, n), dtype=bool)
    measured = []
    for s in range(20):
        keep = np.sort(rng.choice(n, n // 2, replace=False))
        masks[s, keep] = True
        model = train(keep)
        with torch.no_grad():
            measured.append(task.measurement(model, test).numpy())
    outputs = np.array(measured)

    def lds(scores: np.ndarray) -> float:
        predicted = masks.astype(np.float64) @ scores.T
        return float(np.mean([_spearman(predicted[:, j], outputs[:, j]) for j in range(outputs.shape[1])]))

    return lds


def _exact_features(
    model: torch.nn.Module, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]
) -> tuple[AttributionTask, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(task, train features, Q, test features, Gauss-Newton kernel) of a classifier, exact gradients."""
    task = classification_task(model, [state(model)])
    featurizer = Featurizer(task, k=None, seed=0, projection="identity")
    return (
        task,
        featurizer.compute(train, role="train"),
        featurizer.weights(train),
        featurizer.compute(test),
        featurizer.curvature(train),
    )


def test_trak_predicts_retraining_on_half_subsets_logistic_regression() -> None:
    """A quality floor: LDS against real retraining (20 half subsets) on a seeded logistic regression."""
    n, classes, weight_decay = 120, 3, 1e-2
    x, y = blobs(n + 12, d=5, classes=classes, seed=3)
    x_train, y_train, x_test, y_test = x[:n], y[:n], x[n:], y[n:]
    model = train_logistic(x_train, y_train, classes, weight_decay=weight_decay)
    task, phi, q, targets, curvature = _exact_features(model, (x_train, y_train), (x_test, y_test))

    lds = _retraining_lds(
        lambda keep: train_logistic(x_train[keep], y_train[keep], classes, weight_decay=weight_decay),
        task,
        n,
        (x_test, y_test),
    )

    # With the Gauss-Newton kernel (the exact Hessian here) and the training's own L2, TRAK is the
    # influence function; it must beat TRAK's Phi^T Phi kernel and the plain gradient dot product.
    hessian = TRAKScorer(n * weight_decay, lambda_relative=False).fit([phi], [q], curvature_per_model=[curvature])
    exact = lds(hessian.score([targets]))
    plain = lds(TRAKScorer(1e-3).fit([phi], [q]).score([targets]))
    tracin = lds(TracInScorer().fit([phi], [q]).score([targets]))
    assert exact > 0.85 and plain > 0.6 and exact > max(plain, tracin), (exact, plain, tracin)


def _influence_by_formula(phis, qs, targets, lam_rel, response, kernels=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    total = 0.0
    for m, (phi, q, target) in enumerate(zip(phis, qs, targets, strict=True)):
        grads = phi.astype(np.float64) * q.astype(np.float64)[:, None]  # per-example loss gradients
        kernel = grads.T @ grads if kernels is None else kernels[m]
        h, v = np.linalg.eigh(kernel)
        h = np.clip(h, 0.0, None)
        lam = lam_rel * h.sum() / len(h)
        factor = 1.0 / (h + lam) if response == "ridge" else (1.0 - np.exp(-h / lam)) / h
        total = total + target.astype(np.float64) @ (v * factor) @ v.T @ grads.T
    return total / len(phis)


@pytest.mark.parametrize("response", ["ridge", "gradient-flow"])
def test_influence_equals_the_direct_formula_for_an_ensemble(response: str) -> None:
    phis = [_random(m, 40, 12) for m in range(3)]
    qs = [np.abs(_random(10 + m, 40)) for m in range(3)]
    targets = [_random(20 + m, 4, 12) for m in range(3)]
    kernels = [np.cov(_random(30 + m, 50, 12).T) * 50 for m in range(3)]
    for given in (None, kernels):  # the empirical Fisher, then a Gauss-Newton kernel
        scorer = InfluenceScorer(0.3, response=response).fit(phis, qs, curvature_per_model=given)  # type: ignore[arg-type]
        expected = _influence_by_formula(phis, qs, targets, 0.3, response, given)
        assert np.allclose(scorer.score(targets), expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    assert scorer.label == {"method": "influence", "weaker": False}
    # Rotating the features to the kernel's eigenbasis (a diagonal kernel) changes no score.
    h, v = np.linalg.eigh(kernels[0])
    rotated = InfluenceScorer(0.3, response=response).fit(  # type: ignore[arg-type]
        [phis[0].astype(np.float64) @ v], [qs[0]], curvature_per_model=[np.diag(h)]
    )
    plain = InfluenceScorer(0.3, response=response).fit([phis[0]], [qs[0]], curvature_per_model=[kernels[0]])  # type: ignore[arg-type]
    assert np.allclose(
        rotated.score([targets[0].astype(np.float64) @ v]), plain.score([targets[0]]), rtol=1e-4, atol=1e-7
    )


def test_influence_with_one_model_and_a_ridge_is_trak_with_the_curvature_kernel() -> None:
    """For one model TRAK's Q times the margin gradient is the loss gradient, so the two must agree."""
    phi, q, target = _random(0, 30, 8), np.abs(_random(1, 30)), _random(2, 3, 8)
    kernel = np.cov(_random(3, 40, 8).T) * 40
    influence = InfluenceScorer(2.0, response="ridge").fit([phi], [q], curvature_per_model=[kernel])
    trak = TRAKScorer(2.0).fit([phi], [q], curvature_per_model=[kernel])
    assert np.allclose(influence.score([target]), trak.score([target]), rtol=1e-4, atol=1e-7)
    assert influence.lambdas_used == pytest.approx(trak.lambdas_used)


def test_trak_weight_power_flattens_q() -> None:
    phis = [_random(m, 40, 6) for m in range(2)]
    qs = [np.abs(_random(10 + m, 40)) for m in range(2)]
    targets = [_random(20 + m, 3, 6) for m in range(2)]
    q_bar = np.mean(qs, axis=0)
    scores = TRAKScorer(0.1, weight_power=0.5).fit(phis, qs).score(targets)
    unweighted = TRAKScorer(0.1).fit(phis, [np.ones(40, np.float32)] * 2).score(targets)
    assert np.allclose(scores, unweighted * np.sqrt(q_bar)[None, :], rtol=1e-4, atol=1e-7)
    assert np.allclose(
        TRAKScorer(0.1, weight_power=1.0).fit(phis, qs).score(targets),
        _trak_by_formula(phis, qs, targets, 0.1),
        rtol=1e-4,
        atol=1e-7,
    )


@pytest.mark.parametrize("n", [40, 9])  # primal and dual
def test_trak_second_moment_power_is_trak_on_rescaled_columns(n: int) -> None:
    phis = [_random(m, n, 12) * np.linspace(0.1, 10.0, 12, dtype=np.float32) for m in range(2)]
    qs = [np.abs(_random(10 + m, n)) for m in range(2)]
    targets = [_random(20 + m, 3, 12) for m in range(2)]
    scaled_phis, scaled_targets = [], []
    for phi, q, target in zip(phis, qs, targets, strict=True):
        second = ((phi.astype(np.float64) * q[:, None]) ** 2).mean(axis=0)
        scale = (second + 1e-3 * second.mean()) ** -0.25
        scaled_phis.append(phi * scale)
        scaled_targets.append(target * scale)
    scorer = TRAKScorer(0.1, second_moment_power=0.25).fit(phis, qs)
    expected = _trak_by_formula(scaled_phis, qs, scaled_targets, 0.1)
    assert np.allclose(scorer.score(targets), expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    assert np.allclose(
        TRAKScorer(0.1, second_moment_power=0.0).fit(phis, qs).score(targets),
        _trak_by_formula(phis, qs, targets, 0.1),
        rtol=1e-4,
        atol=1e-7,
    )
    with pytest.raises(ValidationError, match="second_moment_power"):
        TRAKScorer(second_moment_power=2.0)
    with pytest.raises(ValidationError, match="no curvature kernel"):
        TRAKScorer(second_moment_power=0.25).fit(phis, qs, curvature_per_model=[np.eye(12)] * 2)
    with pytest.raises(ValidationError, match="all zero"):
        TRAKScorer(second_moment_power=0.25).fit([np.zeros((5, 3), np.float32)])


def test_influence_and_weight_power_refuse_bad_input() -> None:
    with pytest.raises(ValidationError, match="lambda_"):
        InfluenceScorer(0.0)
    with pytest.raises(ValidationError, match="response 'newton' is not one of ridge, gradient-flow"):
        InfluenceScorer(1.0, response="newton")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"curvature kernel 0 must be finite and \[3, 3\]"):
        InfluenceScorer().fit([_random(0, 5, 3)], curvature_per_model=[np.eye(4)])
    with pytest.raises(ValidationError, match="curvature kernel is zero"):
        InfluenceScorer().fit([np.zeros((5, 3), np.float32)])
    with pytest.raises(ValidationError, match="2 curvature kernels for 1 models"):
        InfluenceScorer().fit([_random(0, 5, 3)], curvature_per_model=[np.eye(3)] * 2)
    with pytest.raises(ValidationError, match="weight_power"):
        TRAKScorer(weight_power=float("nan"))
    with pytest.raises(ValidationError, match=r"weights >= 0"):
        TRAKScorer(weight_power=0.5).fit([_random(0, 5, 3)], [_random(1, 5)])


def _train_gd(x: torch.Tensor, y: torch.Tensor, classes: int, *, steps: int, lr: float) -> torch.nn.Linear:
    """Logistic regression by full-batch gradient descent from zero, stopped after ``steps``: deterministic."""
    model = torch.nn.Linear(x.shape[1], classes)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def test_influence_predicts_retraining_of_an_early_stopped_logistic_regression() -> None:
    """A quality floor against real retraining (20 half subsets) of a model stopped early, as SGD-trained
    models are: the influence function, with the response of the training's own length (lambda = n /
    (lr x steps) on the summed Gauss-Newton kernel), must beat TracIn and TRAK's Phi^T Phi kernel."""
    n, classes, steps, lr = 120, 3, 200, 0.5
    x, y = blobs(n + 12, d=20, classes=classes, seed=0)
    x_train, y_train, x_test, y_test = x[:n], y[:n], x[n:], y[n:]
    model = _train_gd(x_train, y_train, classes, steps=steps, lr=lr)
    task, phi, q, targets, curvature = _exact_features(model, (x_train, y_train), (x_test, y_test))
    lds = _retraining_lds(
        lambda keep: _train_gd(x_train[keep], y_train[keep], classes, steps=steps, lr=lr), task, n, (x_test, y_test)
    )

    time_scale = n / (lr * steps)
    flow = lds(
        InfluenceScorer(time_scale, response="gradient-flow", lambda_relative=False)
        .fit([phi], [q], curvature_per_model=[curvature])
        .score([targets])
    )
    plain = lds(TRAKScorer(1e-3).fit([phi], [q]).score([targets]))
    tracin = lds(TracInScorer().fit([phi], [q]).score([targets]))
    assert flow > 0.7 and flow > max(plain, tracin) + 0.05, (flow, plain, tracin)
