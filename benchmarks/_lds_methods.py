"""The attribution methods the LDS benchmark compares, behind one call shape.

``run(method, models, train, targets, k=..., lambdas=[...])`` returns, for each regularization value, the
scores ``[n_train, n_targets]`` (positive: training on the example raised the measurement) and the wall
time of featurizing and scoring. Methods that can reuse their features across values of lambda do so;
the time reported for a value is featurizing once plus scoring with that value.

- ``endcredits``: ``endcredits.attribution`` (``classification_task`` / ``language_model_task``,
  ``Featurizer`` with its Kronecker projection, ``TRAKScorer`` with a relative lambda).
- ``traker``: MadryLab's ``TRAKer`` 0.3.2 on CPU (its ``BasicProjector``, normal projection), float32.
- ``dattri``: ``dattri.algorithm.trak.TRAKAttributor`` 0.3.0 on CPU (normal projection), float32.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

CLASSIFIER_METHODS = ("endcredits", "endcredits-if", "traker", "dattri", "dattri-if")


@dataclass
class MethodRun:
    scores: dict[float, npt.NDArray[np.float64]]
    """lambda -> scores [n_train, n_targets]."""
    featurize_s: float
    score_s: dict[float, float]
    notes: dict[str, Any] = field(default_factory=dict)

    def seconds(self, lam: float) -> float:
        return self.featurize_s + self.score_s[lam]


def available(method: str) -> str | None:
    """None when the method can run here, else why not."""
    module = {"traker": "trak", "dattri": "dattri", "dattri-if": "dattri"}.get(method)
    if module is None:
        return None
    try:
        with _quiet():
            __import__(module)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return f"{module} is not importable ({type(exc).__name__}: {exc}); pip install traker==0.3.2 dattri==0.3.0"
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Peers print progress bars and log at INFO; keep the benchmark's output readable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stderr(io.StringIO()):
            yield


# endcredits -------------------------------------------------------------------------------------


def concrete_projection(task: Any, k: int | None, works: int) -> tuple[str, int | None]:
    """Projection ``auto`` made concrete for ``task``'s model, ``works`` training examples and its checkpoints,
    exactly as ``AttributionSettings.resolved`` does for the product; ``k`` is None for exact gradients."""
    from endcredits.attribution.featurizer import covered_parameters
    from endcredits.attribution.settings import AttributionSettings

    settings = AttributionSettings(k=k or AttributionSettings().k).resolved(
        parameters=covered_parameters(task.model, ()), works=works, checkpoints=len(task.checkpoints)
    )
    return settings.projection, None if settings.projection == "identity" else k


def run_endcredits(
    task: Any,
    train_batch: Any,
    target_batch: Any,
    *,
    k: int | None,
    lambdas: Sequence[float],
    seed: int = 0,
    projection: str = "auto",
    chunk_size: int = 256,
    curvature: bool = False,
    scorer: str = "trak",
    response: str = "gradient-flow",
    features: Callable[[Any, Any, int, str], npt.NDArray[np.float32]] | None = None,
    trak: Callable[..., Any] | None = None,
) -> MethodRun:
    """``Featurizer`` once per model (training features, Q, target features), then the scorer per lambda.
    ``features(featurizer, batch, model_index, role)``, when given, computes the features instead of
    ``Featurizer.compute``; ``trak``, when given, is the class used instead of ``TRAKScorer``.

    ``scorer="trak"``: ``TRAKScorer``; ``curvature``: its kernel is the task's Gauss-Newton matrix
    (``Featurizer.curvature``) instead of ``Phi^T Phi``. ``scorer="influence"``: ``InfluenceScorer``
    with the Gauss-Newton kernel (always featurized) and ``response`` ("ridge" or "gradient-flow").
    """
    from endcredits.attribution.featurizer import Featurizer, batch_size
    from endcredits.attribution.scorers import InfluenceScorer, TRAKScorer

    curvature = curvature or scorer == "influence"
    trak = trak or TRAKScorer

    started = time.perf_counter()
    if projection == "auto":  # as the product resolves it: AttributionSettings.resolved
        projection, k = concrete_projection(task, k, batch_size(train_batch))
    featurizer = Featurizer(task, k=k, seed=seed, projection=projection, chunk_size=chunk_size)
    compute = features or (lambda f, batch, m, role: f.compute(batch, checkpoint_index=m, role=role))
    train_features, train_weights, target_features, kernels = [], [], [], []
    for m in range(len(task.checkpoints)):
        train_features.append(compute(featurizer, train_batch, m, "train"))
        train_weights.append(featurizer.weights(train_batch, checkpoint_index=m))
        target_features.append(compute(featurizer, target_batch, m, "target"))
        if curvature:
            kernels.append(featurizer.curvature(train_batch, checkpoint_index=m))
        if scorer == "influence":
            # Scores do not change when features rotate: rotate to the kernel's eigenbasis once, so
            # that every lambda of the grid finds a diagonal kernel (no decomposition per lambda).
            eigenvalues, vectors = np.linalg.eigh(kernels[m])
            train_features[m] = train_features[m].astype(np.float64) @ vectors
            target_features[m] = target_features[m].astype(np.float64) @ vectors
            kernels[m] = np.diag(eigenvalues)
    featurize_s = time.perf_counter() - started
    scores: dict[float, npt.NDArray[np.float64]] = {}
    score_s: dict[float, float] = {}
    for lam in lambdas:
        started = time.perf_counter()
        lam_value, power, moment = (*lam, 0.0)[:3] if isinstance(lam, tuple) else (lam, 1.0, 0.0)
        fitted = (
            trak(lambda_=lam_value, weight_power=power, second_moment_power=moment)
            if scorer == "trak"
            else InfluenceScorer(lam_value, response=response)
        )  # type: ignore[arg-type]
        fitted.fit(train_features, train_weights, curvature_per_model=kernels or None)
        scores[lam] = fitted.score(target_features).T  # [outputs, works] -> [works, outputs]
        score_s[lam] = time.perf_counter() - started
    notes = {
        "dim": featurizer.dim,
        "projection": projection,
        "kernel": "gauss-newton" if curvature else "Phi^T Phi",
        "scorer": scorer,
        **({"response": response} if scorer == "influence" else {}),
    }
    return MethodRun(scores, featurize_s, score_s, notes)


@dataclass(frozen=True)
class PeerJob:
    """An ensemble, the training set and the targets (every test example the run scores), as tensors whose
    first dimension is the example: ``(images, labels)`` for a classifier, ``(ids, mask)`` for a language
    model (``encode_texts``)."""

    models: Sequence[nn.Module]
    train: tuple[torch.Tensor, ...]
    targets: tuple[torch.Tensor, ...]
    k: int
    seed: int = 0
    batch_size: int = 100
    states: Sequence[Mapping[str, torch.Tensor]] | None = None
    """The parameter states featurized, in order: by default each model's own; an ensemble over training
    checkpoints as well (abc-lm's "+checkpoints" recipes) lists several per model, all for ``models[0]``'s
    architecture."""

    def batches(self, which: str) -> Iterator[tuple[torch.Tensor, ...]]:
        data = self.train if which == "train" else self.targets
        for start in range(0, len(data[0]), self.batch_size):
            yield tuple(t[start : start + self.batch_size] for t in data)

    def peer_copies(self) -> tuple[nn.Module, list[dict[str, torch.Tensor]]]:
        """A private module and private checkpoints for a peer. traker's ``load_checkpoint`` and dattri's
        ``AttributionTask`` load each checkpoint into the module they are given (``load_state_dict``, in
        place): handed ``models[0]`` and the ensemble's own state dicts, loading model m overwrote model 0,
        so its later use (dattri's target gradients, the next lambda, the next method) saw the last model."""
        states = self.states if self.states is not None else [m.state_dict() for m in self.models]
        copies = [{name: value.detach().clone() for name, value in state.items()} for state in states]
        return copy.deepcopy(self.models[0]), copies


def run_endcredits_classifier(
    job: PeerJob,
    lambdas: Sequence[float],
    projection: str = "auto",
    curvature: bool = False,
    scorer: str = "trak",
    response: str = "gradient-flow",
) -> MethodRun:
    from endcredits.attribution.task import classification_task

    task = classification_task(job.models[0], [m.state_dict() for m in job.models])
    return run_endcredits(
        task,
        job.train,
        job.targets,
        k=job.k,
        lambdas=lambdas,
        seed=job.seed,
        projection=projection,
        curvature=curvature,
        scorer=scorer,
        response=response,
    )


def run_endcredits_influence_classifier(
    job: PeerJob,
    lambdas: Sequence[float],
    projection: str = "auto",
    curvature: bool = True,
    response: str = "gradient-flow",
) -> MethodRun:
    """``InfluenceScorer``: per-model loss gradients, the Gauss-Newton kernel, a gradient-flow response."""
    return run_endcredits_classifier(job, lambdas, projection=projection, scorer="influence", response=response)


def _per_lambda(lambdas: Sequence[float], one: Any, notes: dict[str, Any]) -> MethodRun:
    """Peers whose lambda enters before their features are final: a whole run, timed, per lambda."""
    scores: dict[float, npt.NDArray[np.float64]] = {}
    score_s: dict[float, float] = {}
    for lam in lambdas:
        with _quiet():
            started = time.perf_counter()
            result = one(lam)
            score_s[lam] = time.perf_counter() - started
        scores[lam] = np.asarray(result, dtype=np.float64)  # [n_train, n_targets]
    return MethodRun(scores, 0.0, score_s, notes)


# traker -----------------------------------------------------------------------------------------


def run_traker_classifier(job: PeerJob, lambdas: Sequence[float]) -> MethodRun:
    """TRAKer with its image-classification margin (``task="image_classification"``)."""
    return run_traker(job, lambdas, "image_classification")


def run_traker(job: PeerJob, lambdas: Sequence[float], task: Any) -> MethodRun:
    """TRAKer on CPU (BasicProjector, normal projection), float32, with ``task`` (its name for a model
    output it has, or an ``AbstractModelOutput``).

    TRAKer's lambda enters only in ``finalize_features`` (``(X^T X + lambda I)^-1``), so the projected
    training and target gradients are computed once and each lambda of the grid re-finalizes the features
    and the scores from them: the same scores as a fresh ``TRAKer(lambda_reg=lambda)`` with the same
    projector seed, without repeating the projection. Time per lambda: featurizing once (training and
    target gradients, the lambda-independent part) plus finalizing with that lambda."""
    with _quiet():
        from trak import TRAKer

    logging.getLogger("TRAK").setLevel(logging.ERROR)
    model, states = job.peer_copies()
    scores: dict[float, npt.NDArray[np.float64]] = {}
    score_s: dict[float, float] = {}
    with tempfile.TemporaryDirectory() as save_dir, _quiet():
        started = time.perf_counter()
        traker = TRAKer(
            model=model,
            task=task,
            train_set_size=len(job.train[0]),
            save_dir=save_dir,
            device="cpu",
            proj_dim=job.k,
            use_half_precision=False,
            projector_seed=job.seed,
            lambda_reg=lambdas[0],
            logging_level=logging.ERROR,
        )
        for m, state in enumerate(states):
            traker.load_checkpoint(state, model_id=m)
            for batch in job.batches("train"):
                traker.featurize(batch=batch, num_samples=len(batch[0]))
        featurize_s = time.perf_counter() - started
        for i, lam in enumerate(lambdas):
            started = time.perf_counter()
            traker.score_computer.lambda_reg = lam
            for m in range(len(states)):
                traker.saver.model_ids[m]["is_finalized"] = 0
            traker.finalize_features()
            if i == 0:
                # TRAKer scores targets only once its features are finalized; their projected gradients do
                # not depend on lambda and are kept in its store for the other values.
                target_started = time.perf_counter()
                # finalize_features freed the projector's matrix. With k within one block (k <= 100) TRAKer
                # regenerates it only when the model id changes, so scoring the model it featurized last
                # (always, with one state) would find none: a model id it never had forces the regeneration.
                traker.projector.model_id = -1
                for m, state in enumerate(states):
                    traker.start_scoring_checkpoint(
                        exp_name="lds", checkpoint=state, model_id=m, num_targets=len(job.targets[0])
                    )
                    for batch in job.batches("targets"):
                        traker.score(batch=batch, num_samples=len(batch[0]))
                target_s = time.perf_counter() - target_started
                featurize_s += target_s
                started += target_s
                # Every projection is done. finalize_features frees the projector's matrix first, and a
                # second free of a matrix nobody regenerated fails: the later lambdas skip it.
                traker.projector.free_memory = lambda: None
            scores[lam] = np.array(traker.finalize_scores(exp_name="lds"), dtype=np.float64)  # [n_train, n_targets]
            score_s[lam] = time.perf_counter() - started
    return MethodRun(
        scores,
        featurize_s,
        score_s,
        {"projector": "BasicProjector (normal), CPU", "features": "projected once, finalized per lambda"},
    )


# dattri -----------------------------------------------------------------------------------------


ExampleFunction = Callable[[nn.Module, dict[str, torch.Tensor], tuple[torch.Tensor, ...]], torch.Tensor]
"""(module, parameters, one example without its batch dimension) -> a scalar, for dattri's vmap."""


def _correct_log_probability(
    model: nn.Module, params: dict[str, torch.Tensor], pair: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    image, label = pair
    logits = torch.func.functional_call(model, params, image.unsqueeze(0))
    return -nn.functional.cross_entropy(logits, label.unsqueeze(0))


def _classifier_margin(
    model: nn.Module, params: dict[str, torch.Tensor], pair: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    logp = _correct_log_probability(model, params, pair)
    return logp - torch.log(1 - torch.exp(logp))


def _classifier_probability(
    model: nn.Module, params: dict[str, torch.Tensor], pair: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    return torch.exp(_correct_log_probability(model, params, pair))


def run_dattri_classifier(job: PeerJob, lambdas: Sequence[float]) -> MethodRun:
    """dattri's TRAKAttributor with the model output and Q of its own MNIST examples (log-odds of the
    correct class, Q = 1 - p), its checkpoints being the ensemble's models."""
    return run_dattri(job, lambdas, _classifier_margin, _classifier_probability)


def run_dattri(
    job: PeerJob,
    lambdas: Sequence[float],
    output: ExampleFunction,
    probability: ExampleFunction,
    target: ExampleFunction | None = None,
) -> MethodRun:
    """dattri's TRAKAttributor on CPU (normal projection), float32: ``output`` is differentiated for the
    training examples (dattri's ``loss_func``), ``target`` (default ``output``) for the targets, and
    Q = 1 - ``probability``.

    dattri's lambda enters only in ``cache``: per checkpoint, ``kernel = X^T X``,
    ``kernel.diagonal().add_(regularization)``, ``torch.linalg.solve(kernel, X^T)``. The training set is
    cached once with ``regularization = 0`` while ``_dattri_ridge_grid`` repeats that diagonal add and
    solve for every lambda of the grid on the same ``X^T X`` and ``X^T``: the same operations, so the same
    scores as one ``TRAKAttributor(regularization=lambda)`` per value, with the training gradients projected
    once. ``attribute`` (the targets' gradients) then runs per lambda. Time per lambda: caching once plus
    that lambda's ``attribute``."""
    with _quiet():
        from dattri.algorithm.trak import TRAKAttributor
        from dattri.task import AttributionTask

    model, states = job.peer_copies()

    def bound(function: ExampleFunction) -> Callable[[dict[str, torch.Tensor], tuple[torch.Tensor, ...]], torch.Tensor]:
        return lambda params, example: function(model, params, example)

    loader = {
        which: torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data), batch_size=job.batch_size)
        for which, data in (("train", job.train), ("targets", job.targets))
    }
    scores: dict[float, npt.NDArray[np.float64]] = {}
    score_s: dict[float, float] = {}
    with _quiet(), torch.no_grad():
        started = time.perf_counter()
        task = AttributionTask(
            model=model,
            loss_func=bound(output),
            target_func=bound(target or output),
            checkpoints=[dict(state) for state in states],
        )
        attributor = TRAKAttributor(
            task=task,
            correct_probability_func=bound(probability),
            device="cpu",
            regularization=0.0,
            projector_kwargs={"proj_dim": job.k, "proj_seed": job.seed, "proj_max_batch_size": 32, "device": "cpu"},
        )
        with _dattri_ridge_grid(lambdas) as solutions:
            attributor.cache(loader["train"])
        if any(len(solved) != len(states) for solved in solutions.values()):
            raise RuntimeError("dattri's cache did not solve one ridge system per checkpoint")
        featurize_s = time.perf_counter() - started
        for lam in lambdas:
            started = time.perf_counter()
            attributor.regularization, attributor.inv_XTX_XT_list = lam, solutions[lam]
            scores[lam] = np.asarray(attributor.attribute(loader["targets"]), dtype=np.float64)  # [n_train, n_targets]
            score_s[lam] = time.perf_counter() - started
    return MethodRun(
        scores, featurize_s, score_s, {"projector": "normal, CPU", "features": "projected once, solved per lambda"}
    )


@contextlib.contextmanager
def _dattri_ridge_grid(lambdas: Sequence[float]) -> Iterator[dict[float, list[torch.Tensor]]]:
    """While dattri caches with ``regularization = 0``: each ``torch.linalg.solve(X^T X, X^T)`` it makes is
    made for every lambda instead, with dattri's own ridge (``diagonal().add_(lambda)``) on a copy of the
    kernel; yields lambda -> the solutions in checkpoint order, and hands dattri the first lambda's."""
    solve = torch.linalg.solve
    solutions: dict[float, list[torch.Tensor]] = {lam: [] for lam in lambdas}

    def every_lambda(kernel: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        for lam in lambdas:
            ridge = kernel.clone()
            ridge.diagonal().add_(lam)
            solutions[lam].append(solve(ridge, rhs))
        return solutions[lambdas[0]][-1]

    with mock.patch.object(torch.linalg, "solve", every_lambda):
        yield solutions


def run_dattri_if_classifier(job: PeerJob, lambdas: Sequence[float]) -> MethodRun:
    """dattri's IFAttributorExplicit (the explicit Hessian of the mean training loss over one batch of all
    the training data, plus ``regularization * I``), per model, averaged over the ensemble. Its score is
    ``grad L_test^T H^-1 grad L_train``: positive when training on the example lowers the test loss,
    i.e. raises the margin (the loss is a decreasing function of the margin: the same ranking)."""
    with _quiet():
        from dattri.algorithm.influence_function import IFAttributorExplicit
        from dattri.task import AttributionTask

    model, states = job.peer_copies()

    def loss(params: dict[str, torch.Tensor], pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        image, label = pair
        logits = torch.func.functional_call(model, params, image)
        return nn.functional.cross_entropy(logits, label)

    everything = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*job.train), batch_size=len(job.train[0]))
    loader = {
        which: torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data), batch_size=job.batch_size)
        for which, data in (("train", job.train), ("targets", job.targets))
    }

    def one(lam: float) -> Any:
        total = 0.0
        for state in states:
            task = AttributionTask(model=model, loss_func=loss, checkpoints=dict(state))
            attributor = IFAttributorExplicit(task=task, device="cpu", regularization=lam)
            attributor.cache(everything)
            total = total + attributor.attribute(loader["train"], loader["targets"]) / len(states)
        return total

    return _per_lambda(lambdas, one, {"hessian": "explicit, mean training loss"})


CLASSIFIER_RUNNERS = {
    "endcredits": run_endcredits_classifier,
    "endcredits-if": run_endcredits_influence_classifier,
    "dattri-if": run_dattri_if_classifier,
    "traker": run_traker_classifier,
    "dattri": run_dattri_classifier,
}

LAMBDA_GRIDS: dict[str, tuple[float, ...]] = {
    # endcredits' lambda is relative: a fraction of the kernel's mean eigenvalue (trace / dim).
    "endcredits": (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4),
    # Relative as well; finer near the values the LR and MLP tuning draws chose.
    "endcredits-if": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1e3),
    # An absolute ridge on the Hessian of the *mean* loss. dattri's default, 0, is not in the grid: the
    # LR, trained without weight decay, has a singular Hessian (torch.linalg.solve refuses it).
    "dattri-if": (1e-2, 0.1, 1.0),
    # image-ddpm: endcredits with TRAK's measurement (minus the denoising loss) instead of D-TRAK's.
    "endcredits-loss": (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4),
    # The peers take an absolute lambda; their default is 0.
    "traker": (0.0, 1.0, 1e2, 1e4, 1e6),
    # image-ddpm's D-TRAK written from the paper (_lds_ddpm.run_dtrak): an absolute ridge on Phi^T Phi, whose
    # eigenvalues (summed squared norms over the pixels) run high.
    "dtrak": (1e-2, 1.0, 1e2, 1e4, 1e6, 1e8, 1e10),
    "dattri": (0.0, 1.0, 1e2, 1e4, 1e6),
}


LogLikelihood = Callable[..., torch.Tensor]
"""``ll(model, params, (ids, mask), mean=False)``: one example's log-likelihood, summed or per token."""


def _traker_log_likelihood(log_likelihood: LogLikelihood) -> Any:
    """TRAKer's model output for a language model: an example's summed log-likelihood; Q one."""
    from trak.modelout_functions import AbstractModelOutput

    class LogLikelihoodOutput(AbstractModelOutput):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()

        @staticmethod
        def get_output(
            model: nn.Module,
            weights: dict[str, torch.Tensor],
            buffers: dict[str, torch.Tensor],
            ids: torch.Tensor,
            mask: torch.Tensor,
        ) -> torch.Tensor:
            return log_likelihood(model, {**weights, **buffers}, (ids, mask))

        def get_out_to_loss_grad(
            self, model: nn.Module, weights: Any, buffers: Any, batch: Sequence[torch.Tensor]
        ) -> torch.Tensor:
            return torch.ones(len(batch[0]), 1)

    return LogLikelihoodOutput()


def _q_is_one(model: nn.Module, params: dict[str, torch.Tensor], example: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """dattri's Q is ``1 - probability``: zero here (one per example, batched like its input under vmap)."""
    return example[1].sum() * 0.0


def run_peer_log_likelihood(
    method: str, job: PeerJob, lambdas: Sequence[float], log_likelihood: LogLikelihood
) -> MethodRun | None:
    """traker's or dattri's TRAK of a language model: training texts through their summed log-likelihood,
    targets (dattri) through their mean per token; None for another method."""

    def mean(model: nn.Module, params: dict[str, torch.Tensor], example: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return log_likelihood(model, params, example, mean=True)

    if method == "traker":
        return run_traker(job, lambdas, _traker_log_likelihood(log_likelihood))
    if method == "dattri":
        return run_dattri(job, lambdas, log_likelihood, _q_is_one, target=mean)
    return None
