"""Which diffusion measurement, on the tuning draw of ``lds.py --setting image-ddpm`` only.

For endcredits' two measurements (``loss``: minus the denoising loss; ``squared-norm``: D-TRAK's), each
ensemble recipe and each relative lambda of the grid: the tuning LDS over all tuning outputs, the held-out
and the generated ones apart, and the paired gap between the measurements (mean over the tuning outputs
and its standard error; the subsets' share of the noise is not in it). The main (reported) draw is never
scored here. ``--work-timesteps 8,24`` compares timesteps for the training images' features (the test
images keep ``--ddpm-timesteps``); ``--peers`` adds traker; ``--ggn`` adds the loss with a Gauss-Newton
kernel (``_lds_ddpm._DenoisingGaussNewton``); ``--tsnorm`` adds the loss with timestep-normalized
features of the training images (``loss-tsnorm``) and of both sides (``loss-tsnorm-both``); ``--relatif``
adds the loss with unit-norm training feature rows (``loss-unit``) and with each training image's scores
divided by the square root of its self-influence (``loss-relatif``). It builds the problem as ``lds.py``
does, so pass the same draw flags to share its cache::

    PYTHONPATH=$PWD/src:$PWD/benchmarks OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ddpm_measurement.py \\
        --ddpm-steps 200 --tune-subsets 16 --seeds-per-subset 3 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import _lds_core as core
import numpy as np
import numpy.typing as npt
import torch
from _lds_ddpm import build_problem

MEASUREMENTS = {"loss": "endcredits-loss", "squared-norm": "endcredits"}
PEER_GRID = (0.0, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4)
"""traker's ridge is absolute; its kernel's eigenvalues are far below 1 here (docs/benchmarks.md)."""
CONTENDERS = ("squared-norm", "loss-tsnorm", "loss-tsnorm-both", "loss-unit", "loss-relatif")
"""Each compared with the loss (the paired gaps)."""
GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ddpm-steps", type=int, default=100)
    parser.add_argument("--ddpm-train", type=int, default=64)
    parser.add_argument("--ddpm-timesteps", type=int, default=8)
    parser.add_argument("--subsets", type=int, default=32, help="the main draw's (its cache key only)")
    parser.add_argument("--seeds-per-subset", type=int, default=1, help="the main draw's (its cache key only)")
    parser.add_argument("--tune-subsets", type=int, default=8)
    parser.add_argument("--tune-tests", type=int, default=32)
    parser.add_argument("--projection", default="auto", choices=["auto", "gaussian", "identity"])
    parser.add_argument("--k", type=int, default=1024)
    parser.add_argument("--lambdas", default=",".join(f"{v:g}" for v in GRID))
    parser.add_argument("--images", default=None)
    parser.add_argument("--cache-dir", default="benchmarks/.cache")
    parser.add_argument(
        "--work-timesteps",
        default="",
        help="comma-separated timesteps of the training images' features to compare (default: --ddpm-timesteps)",
    )
    parser.add_argument("--peers", action="store_true", help="also traker, minus the loss (needs traker)")
    parser.add_argument(
        "--ggn", action="store_true", help="also the loss with a Gauss-Newton kernel (Gaussian projection to --k)"
    )
    parser.add_argument(
        "--tsnorm", action="store_true", help="also the loss with timestep-normalized features (_lds_ddpm)"
    )
    parser.add_argument(
        "--relatif", action="store_true", help="also the loss with unit-norm or self-influence-relative training rows"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.models, args.peer_batch_size, args.ddpm_checkpoints = 1, 100, ""
    grid = [float(v) for v in args.lambdas.split(",")]
    torch.set_num_threads(1)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    works = [int(v) for v in args.work_timesteps.split(",") if v] or [args.ddpm_timesteps]
    methods = {
        **MEASUREMENTS,
        **({"traker": "traker"} if args.peers else {}),
        **({"loss-ggn": "endcredits-loss-ggn"} if args.ggn else {}),
        **(
            {"loss-tsnorm": "endcredits-loss-tsnorm", "loss-tsnorm-both": "endcredits-loss-tsnorm-both"}
            if args.tsnorm
            else {}
        ),
        **({"loss-unit": "endcredits-loss-unit", "loss-relatif": "endcredits-loss-relatif"} if args.relatif else {}),
    }
    per: dict[tuple[str, str, float], npt.NDArray[np.float64]] = {}
    notes: dict[str, Any] = {}
    for work in works:
        args.ddpm_work_timesteps = work
        problem = build_problem(args, log)
        cols = problem.tune_cols
        for recipe in ("full", "half"):
            for name, method in methods.items():
                label = name if len(works) == 1 else f"{name}@{work}"
                lambdas = PEER_GRID if method == "traker" else grid
                run = problem.run_method(method, problem.ensembles[recipe], lambdas)
                notes.setdefault(label, run.notes)  # the first recipe's (full)
                for lam in lambdas:
                    _, per_output = core.lds(run.scores[lam][:, cols], problem.tune_masks, problem.tune_outputs)
                    per[(recipe, label, lam)] = per_output
    n_held = len(cols) // 2  # the tuning outputs: held-out images first, then generated ones

    def summary(values: npt.NDArray[np.float64]) -> dict[str, float]:
        return {
            "all": float(np.nanmean(values)),
            "held-out": float(np.nanmean(values[:n_held])),
            "generated": float(np.nanmean(values[n_held:])),
        }

    def gap(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> dict[str, float]:
        d = (a - b)[np.isfinite(a - b)]
        return {**summary(a - b), "se": float(d.std(ddof=1) / np.sqrt(d.size))}

    tuning = {f"{r} {m} {lam:g}": summary(v) for (r, m, lam), v in per.items()}
    contenders = [n for n in CONTENDERS if n in methods]
    gaps = (
        {
            f"{r}: {name} {ls:g} - loss {ll:g}": gap(per[(r, name, ls)], per[(r, "loss", ll)])
            for r in ("full", "half")
            for name in contenders
            for ls in grid
            for ll in (1.0, max(grid, key=lambda v: np.nanmean(per[(r, "loss", v)])))
        }
        if len(works) == 1
        else {}
    )

    def groups(row: dict[str, float]) -> str:
        return f"(held-out {row['held-out']:+.3f}, generated {row['generated']:+.3f})"

    for key, row in tuning.items():
        log(f"{key:<28} tuning LDS {row['all']:+.3f} {groups(row)}")
    for key, row in gaps.items():
        log(f"{key:<40} gap {row['all']:+.3f} ± {row['se']:.3f} {groups(row)}")
    report = {
        "steps": args.ddpm_steps,
        "tune_subsets": args.tune_subsets,
        "tune_outputs": len(cols),
        "projection": notes,
        "tuning": tuning,
        "gaps": gaps,
    }
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
