"""Attribution speed: featurizing throughput against traker, and one output's payee scores against a raw scan.

    python benchmarks/attribution.py --json
    python benchmarks/attribution.py --works 1000000 --payees 100000 --k 1024 --json

1. Featurizing: projected per-example gradients of one MLP classifier (784-256-10, MNIST-shaped input,
   seeded random pixels: throughput does not depend on content) at the same k, in the same run:
   endcredits' ``Featurizer`` (Kronecker projection by default) against traker's ``TRAKer.featurize``
   on CPU (its ``BasicProjector``: a Gaussian matrix regenerated block by block), both on one model,
   examples per second over the same examples after a warm-up chunk.
2. Payee attribution: ``works`` training works with k-dimensional features (seeded Gaussian rows,
   written to a memory-mapped file block by block), each credited to 1..4 of ``payees`` payees.
   Setup (not per output): TRAK's preconditioned features and ``Psi = W^T G`` (float32). Then, per
   output, ``PayeeIndex.score`` (the query through the kernel inverse, and one pass over Psi), p50 and
   p90 over ``--queries`` outputs, against ``psi @ q`` in raw NumPy over the same bytes measured in
   the same run. Peak memory (max RSS) after each part.
3. Explanations: the top ``--top-k`` works per output over the first ``--explain-works`` rows of the same
   scorer's item matrix (the preconditioned features), by the exact blocked scan (``top_k_exact``) and by
   FAISS (``FaissIndex``: flat, and IVF at each ``--nprobes`` value), each with its per-output latency
   (p50, one output at a time, as a statement asks) and FAISS's recall@k against the exact scan. The
   features are Gaussian, with no cluster structure for IVF's cells to follow: its recall here is a
   floor, not what trained models' features (which cluster by class and style) give.

Parts 4 and 5 (``--stability``, ``--cost``; either runs instead of parts 1-3) train three small models here
(``_attribution_models``: the character LM, a 2-layer GPT-2, a diffusers UNet on 16 x 16 MNIST digits),
each on ``--model-works`` works credited to 1..3 of ``--model-payees`` payees by a seeded random credit
matrix, and attribute generated outputs with TRAK (``AttributionSettings().lambda_``) through
``PayeeIndex``; a payee's share is its positive score over the output's positive total, as
``royalties.shares.attribution_weights`` makes it.

    python benchmarks/attribution.py --threads 1 --stability --cost --json

4. Stability: do the payee shares depend on the projection seed? Per rung of a ladder of settings
   (``kK``: Kronecker at k = K; ``gK``: the blockwise Gaussian projection; ``eK``: the eigen projection, its
   Kronecker layers' factors the top eigenvectors of the works' covariances, the other parameters exact;
   ``kKx``, ``eKp``: the other parameters exact, or projected with a seed; ``meanR-kK``: R seeds' Kronecker
   features fitted as R models, which averages their TRAK scores; ``identity``: exact gradients, no seed),
   ``--replicates`` replicates with disjoint seeds; per output and pair of replicates, the Spearman
   correlation of the payee shares and the payees two top-10s share, mean
   and min over every (output, pair). Target: mean Spearman >= 0.95 and mean top-10 overlap >= 9. Two
   draws of seeds and outputs: on ``choose`` (projection seeds from 0, outputs sampled with seed 1) the
   rung with the fewest feature bytes per work that meets the target is chosen; ``report`` (seeds from
   1000, outputs with seed 2) gives its figures. Cost per rung: seconds to featurize the works (every
   seed of a replicate; median over replicates) and feature bytes per work. Beside the agreement across
   seeds, every rung's agreement with the exact (identity) shares of the same outputs: Spearman per output
   and replicate, and the payees the two top-10s share. A rung without a seed agrees with itself across
   seeds trivially; its agreement with exact gradients is the figure that says what it costs in accuracy.
5. Cost per output: seconds to attribute a batch of generated outputs (encode, featurize, every payee's
   score; the works' features, TRAK and Psi precomputed) against seconds to generate the batch (charlm
   ``generate``, GPT-2 ``model.generate`` with its cache, both to 256 characters; a ``--sample-steps``
   DDPM loop for the UNet), medians of ``--repeats`` after a warm-up, at each of ``--batch-sizes``.

Part 6 (``--worker``, alone) is the attribution worker (``ledger.worker.attribute_and_accrue``) on the
demo's store (``run_demo`` with ``--worker-train-steps``): per ``--worker-batches`` value B, new tunes
generated (timed), attributed B at a time against every payee with the demo run's settings, recorded as
a run and accrued in process as one usage batch; outputs/s of the attribution (encode, featurize, score)
and end to end (recording and accrual too), beside the generation time per output. ``--ray auto`` spreads
the batches over a local Ray cluster.

    python benchmarks/attribution.py --worker --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from _attribution_models import Setup, build
from numpy.lib.format import open_memmap
from torch import nn

from endcredits.attribution import (
    CreditMatrix,
    FaissIndex,
    Featurizer,
    PayeeIndex,
    TopK,
    TracInScorer,
    TRAKScorer,
    classification_task,
    recall_at_k,
    top_k_exact,
)
from endcredits.attribution.featurizer import Plan
from endcredits.attribution.settings import K_DEFAULT, AttributionSettings, Projection
from endcredits.attribution.task import Batch

BLOCK_ROWS = 65_536


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)).eval()


def featurize_throughput(examples: int, k: int, chunk: int, seed: int) -> dict[str, object]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(examples + chunk, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (examples + chunk,), generator=g)
    model = _mlp(seed)
    params = sum(p.numel() for p in model.parameters())
    task = classification_task(model, [{n: t.detach().clone() for n, t in model.state_dict().items()}])
    out: dict[str, object] = {"model": "mlp 784-256-10", "parameters": params, "k": k, "examples": examples}
    for projection in ("kronecker", "gaussian"):
        featurizer = Featurizer(task, k=k, seed=seed, projection=projection, chunk_size=chunk)
        featurizer.compute((x[:chunk], y[:chunk]))  # warm-up: projection factors, first-call costs
        started = time.perf_counter()
        featurizer.compute((x[chunk:], y[chunk:]))
        out[f"endcredits_{projection}_examples_per_s"] = round(examples / (time.perf_counter() - started), 1)
    out["endcredits_dim"] = Featurizer(task, k=k, seed=seed).dim
    out["traker_examples_per_s"] = _traker_throughput(model, x, y, examples, k, chunk, seed)
    if isinstance(out["traker_examples_per_s"], float):
        out["ratio_kronecker_vs_traker"] = round(
            float(out["endcredits_kronecker_examples_per_s"]) / out["traker_examples_per_s"], 2
        )  # type: ignore[arg-type]
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return out


def _traker_throughput(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, examples: int, k: int, chunk: int, seed: int
) -> float | str:
    try:
        from trak import TRAKer
    except ImportError:
        return "traker not installed (pip install traker==0.3.2)"
    save_dir = Path(tempfile.mkdtemp(prefix="bench-traker-"))
    try:
        traker = TRAKer(
            model=model,
            task="image_classification",
            train_set_size=examples + chunk,
            save_dir=str(save_dir),
            device="cpu",
            proj_dim=k,
            projector_seed=seed,
            use_half_precision=False,
            logging_level=40,
        )
        traker.load_checkpoint(model.state_dict(), model_id=0)
        traker.featurize(batch=(x[:chunk], y[:chunk]), num_samples=chunk)  # warm-up, as for ours
        started = time.perf_counter()
        for start in range(chunk, examples + chunk, chunk):
            stop = min(examples + chunk, start + chunk)
            traker.featurize(batch=(x[start:stop], y[start:stop]), num_samples=stop - start)
        return round(examples / (time.perf_counter() - started), 1)
    finally:
        shutil.rmtree(save_dir, ignore_errors=True)


def payee_latency(
    works: int, payees: int, k: int, queries: int, seed: int, tmp: Path
) -> tuple[dict[str, object], TRAKScorer, np.ndarray]:
    """Part 2: its figures, and the scorer and the outputs' features for part 3."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    phi = open_memmap(tmp / "phi.npy", mode="w+", dtype=np.float32, shape=(works, k))
    for start in range(0, works, BLOCK_ROWS):
        stop = min(works, start + BLOCK_ROWS)
        phi[start:stop] = rng.standard_normal((stop - start, k), dtype=np.float32) / np.float32(np.sqrt(k))
    phi.flush()
    generated_s = time.perf_counter() - started
    credits_per_work = rng.integers(1, 5, size=works)
    work_index = np.repeat(np.arange(works, dtype=np.int64), credits_per_work)
    payee_index = rng.integers(0, payees, size=work_index.size)
    share = rng.random(work_index.size)
    credits = CreditMatrix.from_triplets(work_index, payee_index, share, works=works, payees=payees)

    started = time.perf_counter()
    scorer = TRAKScorer(lambda_=1e-3).fit([phi])
    index = PayeeIndex(scorer, credits, dtype=np.float32)
    setup_s = time.perf_counter() - started
    targets = rng.standard_normal((queries, k), dtype=np.float32)
    ours, raw = [], []
    psi = index.psi
    for i in range(queries):
        target = targets[i : i + 1]
        t0 = time.perf_counter()
        scores = index.score([target])
        t1 = time.perf_counter()
        plain = psi @ target[0]
        t2 = time.perf_counter()
        ours.append(t1 - t0)
        raw.append(t2 - t1)
        assert scores.shape == (1, payees) and plain.shape == (payees,)
    p50, p50_raw = float(np.median(ours)), float(np.median(raw))
    return (
        {
            "works": works,
            "payees": payees,
            "k": k,
            "credit_entries": int(work_index.size),
            "queries": queries,
            "features_generated_s": round(generated_s, 2),
            "setup_s": round(setup_s, 2),
            "psi_bytes": int(psi.nbytes),
            "p50_ms": round(p50 * 1e3, 3),
            "p90_ms": round(float(np.quantile(ours, 0.9)) * 1e3, 3),
            "raw_numpy_scan_p50_ms": round(p50_raw * 1e3, 3),
            "ratio_to_raw_scan": round(p50 / p50_raw, 2),
            "peak_rss_mb": round(_peak_rss_mb(), 1),
        },
        scorer,
        targets,
    )


def _p50_ms(search: Callable[[np.ndarray], TopK], queries: np.ndarray) -> tuple[float, list[TopK]]:
    """Median milliseconds of ``search(one query)`` over the queries, one at a time, and the answers."""
    times, answers = [], []
    for i in range(queries.shape[0]):
        started = time.perf_counter()
        answers.append(search(queries[i : i + 1]))
        times.append(time.perf_counter() - started)
    return round(float(np.median(times)) * 1e3, 3), answers


def explanations(
    scorer: TRAKScorer, targets: np.ndarray, *, works: int, top_k: int, nprobes: list[int]
) -> dict[str, object]:
    """Part 3: the exact scan and FAISS (flat, IVF) on the first ``works`` rows of the item matrix."""
    items = np.ascontiguousarray(scorer.item_matrix[:works])
    queries = scorer.query([targets]).astype(np.float32)
    exact_ms, exact = _p50_ms(lambda q: top_k_exact(q, items, top_k), queries)

    def measured(index: FaissIndex) -> dict[str, float]:
        ms, answers = _p50_ms(lambda q: index.search(q, top_k), queries)
        found = [recall_at_k(e, a) for e, a in zip(exact, answers, strict=True)]
        return {"p50_ms": ms, "recall_at_k": round(float(np.mean(found)), 4)}

    started = time.perf_counter()
    flat = FaissIndex(items, kind="flat")
    flat_build_s = round(time.perf_counter() - started, 2)
    flat_figures = measured(flat)
    started = time.perf_counter()
    ivf = FaissIndex(items, kind="ivf", nprobe=1)
    ivf_build_s = round(time.perf_counter() - started, 2)
    per_nprobe = {}
    for nprobe in nprobes:
        ivf.index.nprobe = min(nprobe, ivf.index.nlist)
        per_nprobe[str(nprobe)] = measured(ivf)
    return {
        "works": int(items.shape[0]),
        "dim": int(items.shape[1]),
        "top_k": top_k,
        "queries": int(queries.shape[0]),
        "exact_scan_p50_ms": exact_ms,
        "faiss_flat": {"build_s": flat_build_s, **flat_figures},
        "faiss_ivf": {"nlist": int(ivf.index.nlist), "build_s": ivf_build_s, "nprobe": per_nprobe},
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


# -- 4. stability of payee shares across projection seeds ---------------------------------------------

TARGET_SPEARMAN = 0.95
TARGET_TOP10 = 9
DRAWS = {"choose": (0, 1), "report": (1_000, 2)}
"""Per draw: the first projection seed and the seed of the outputs' generation."""


@dataclass(frozen=True)
class Rung:
    """One setting of the ladder: a projection, its k, and the number of seeds whose scores are averaged."""

    name: str
    projection: Projection
    k: int | None
    members: int
    rest: str = "plan"
    """The parameters outside the Kronecker layers (embeddings, norms): as the plan has them, ``exact`` or
    ``projected`` (the seeded Gaussian at their share of k)."""

    @property
    def seedless(self) -> bool:
        """No random projection anywhere: every seed gives the same features (``eigen``'s plan keeps these
        models' other parameters exact: they are under ``EIGEN_REST_EXACT_MAX``)."""
        return self.projection == "identity" or (self.projection == "eigen" and self.rest != "projected")


def parse_rung(name: str) -> Rung:
    """``identity``, ``kK`` (Kronecker at k = K), ``gK`` (the blockwise Gaussian projection at k = K), ``eK``
    (the eigen projection at k = K: Kronecker layers by the works' covariance eigenvectors, the other
    parameters exact; no seed) or ``meanR-kK`` (R Kronecker projections at k = K, averaged). ``kKx``: Kronecker
    with every parameter outside its layers exact; ``eKp``: eigen with them projected, seeded, at their share
    of k (what the plan does beyond ``EIGEN_REST_EXACT_MAX``)."""
    if name == "identity":
        return Rung(name, "identity", None, 1)
    if name[-1] in "xp" and name[0] in "ke":
        return replace(parse_rung(name[:-1]), name=name, rest="exact" if name[-1] == "x" else "projected")
    members, _, k = name.rpartition("-k") if name.startswith("mean") else ("mean1", "", name[1:])
    if not (k.isdigit() and name[0] in "kgem" and members[4:].isdigit() and int(members[4:]) >= 1):
        raise SystemExit(f"rung {name!r}: use identity, kK (such as k{K_DEFAULT}), gK, eK or meanR-kK (mean4-k1024)")
    projection: Projection = {"g": "gaussian", "e": "eigen"}.get(name[0], "kronecker")  # type: ignore[assignment]
    return Rung(name, projection, int(k), int(members[4:]))


def random_credits(works: int, payees: int, seed: int) -> CreditMatrix:
    """Each work credited to 1..3 distinct payees drawn at random, with random shares summing to 1."""
    rng = np.random.default_rng(seed)
    work_index, payee_index, share = [], [], []
    for w in range(works):
        count = int(rng.integers(1, 4))
        chosen = rng.choice(payees, size=count, replace=False)
        parts = rng.random(count) + 0.1
        work_index += [w] * count
        payee_index += chosen.tolist()
        share += (parts / parts.sum()).tolist()
    return CreditMatrix.from_triplets(work_index, payee_index, share, works=works, payees=payees)


class FeatureCache:
    """Works' and outputs' features per (projection, k, seed), computed once, with the works' seconds."""

    def __init__(self, setup: Setup, chunk: int) -> None:
        self.setup = setup
        self.chunk = chunk
        self.entries: dict[tuple[str, int | None, str, int], tuple[np.ndarray, np.ndarray, float]] = {}

    def get(self, rung: Rung, seed: int, outputs: Batch) -> tuple[np.ndarray, np.ndarray, float]:
        key = (rung.projection, rung.k, rung.rest, seed if not rung.seedless else 0)
        if key not in self.entries:
            featurizer = Featurizer(
                self.setup.task, k=rung.k, seed=seed, projection=rung.projection, chunk_size=self.chunk
            )
            if rung.rest != "plan":
                featurizer.plan = _with_rest(featurizer.plan, rung, self.setup.parameters)
            started = time.perf_counter()
            works = featurizer.compute(self.setup.works, role="train")
            works_s = time.perf_counter() - started
            self.entries[key] = (works, featurizer.compute(outputs, role="target"), works_s)
        return self.entries[key]


def _with_rest(plan: Plan, rung: Rung, parameters: int) -> Plan:
    """``plan`` with its other parameters exact, or projected at their share of k as ``plan_projection``
    shares it (``rung.rest``)."""
    numel = sum(plan.rest_sizes)
    share = min(numel, max(1, int(rung.k or parameters) * numel // parameters))
    return replace(plan, rest_dim=numel if rung.rest == "exact" else share)


def payee_shares(
    cache: FeatureCache, rung: Rung, seeds: list[int], outputs: Batch, credits: CreditMatrix, method: str
) -> tuple[np.ndarray, np.ndarray, float]:
    """Payee scores and shares ``[outputs, payees]`` of one replicate (its seeds averaged) by ``method``
    (TRAK at ``AttributionSettings().lambda_``, or TracIn), and the works' featurizing seconds."""
    got = [cache.get(rung, seed, outputs) for seed in seeds]
    scorer = TRAKScorer(lambda_=AttributionSettings().lambda_) if method == "trak" else TracInScorer()
    scores = PayeeIndex(scorer.fit([works for works, _, _ in got]), credits).score([targets for _, targets, _ in got])
    positive = np.clip(scores, 0.0, None)  # royalties.shares.attribution_weights: negative influence earns nothing
    total = positive.sum(axis=1, keepdims=True)
    return scores, positive / np.where(total > 0.0, total, 1.0), sum(s for _, _, s in got)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _top(a: np.ndarray, n: int) -> set[int]:
    return set(np.argsort(-a, kind="stable")[:n].tolist())


def agreement(replicates: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Per output and pair of replicates: Spearman of the payee shares (and of the raw payee scores) and the
    payees two top-10s share; mean and min over every (output, pair)."""
    rho, rho_scores, top10 = [], [], []
    for (scores_a, shares_a), (scores_b, shares_b) in itertools.combinations(replicates, 2):
        for row in range(shares_a.shape[0]):
            rho.append(_spearman(shares_a[row], shares_b[row]))
            rho_scores.append(_spearman(scores_a[row], scores_b[row]))
            top10.append(len(_top(shares_a[row], 10) & _top(shares_b[row], 10)))
    return {
        "spearman_shares_mean": round(float(np.mean(rho)), 4),
        "spearman_shares_min": round(float(np.min(rho)), 4),
        "spearman_scores_mean": round(float(np.mean(rho_scores)), 4),
        "top10_overlap_mean": round(float(np.mean(top10)), 2),
        "top10_overlap_min": int(np.min(top10)),
    }


def against_exact(replicates: list[tuple[np.ndarray, np.ndarray]], exact: np.ndarray) -> dict[str, float]:
    """Per output and replicate: Spearman of the payee shares against the exact (identity) shares of the same
    output, and the payees their top-10s share; mean and min over every (output, replicate). A method
    without a seed agrees with itself across seeds whatever it computes: this is its honest figure."""
    rho, top10 = [], []
    for _, shares in replicates:
        for row in range(shares.shape[0]):
            rho.append(_spearman(shares[row], exact[row]))
            top10.append(len(_top(shares[row], 10) & _top(exact[row], 10)))
    return {
        "exact_spearman_shares_mean": round(float(np.mean(rho)), 4),
        "exact_spearman_shares_min": round(float(np.min(rho)), 4),
        "exact_top10_overlap_mean": round(float(np.mean(top10)), 2),
        "exact_top10_overlap_min": int(np.min(top10)),
    }


def rung_stability(
    cache: FeatureCache,
    rung: Rung,
    draw: str,
    outputs: Batch,
    credits: CreditMatrix,
    replicates: int,
    method: str,
    exact: np.ndarray,
) -> dict[str, object]:
    """One rung on one draw: ``replicates`` independent replicates, each averaging ``rung.members`` seeds;
    their agreement with each other and with ``exact``, the identity rung's shares of the same outputs."""
    first_seed, _ = DRAWS[draw]
    runs, works_s, dim = [], [], 0
    for r in range(replicates if not rung.seedless else 1):
        seeds = [first_seed + rung.members * r + j for j in range(rung.members)]
        scores, shares, seconds = payee_shares(cache, rung, seeds, outputs, credits, method)
        runs.append((scores, shares))
        works_s.append(seconds)
        dim = sum(cache.get(rung, seed, outputs)[0].shape[1] for seed in seeds)
    if rung.seedless:  # no random projection: every seed gives these same scores
        figures = {"spearman_shares_mean": 1.0, "spearman_shares_min": 1.0, "spearman_scores_mean": 1.0,
                   "top10_overlap_mean": 10.0, "top10_overlap_min": 10, "no_seed": True}  # fmt: skip
    else:
        figures = agreement(runs)
    figures.update(against_exact(runs, exact))
    met = figures["spearman_shares_mean"] >= TARGET_SPEARMAN and figures["top10_overlap_mean"] >= TARGET_TOP10
    met_exact = (
        figures["exact_spearman_shares_mean"] >= TARGET_SPEARMAN and figures["exact_top10_overlap_mean"] >= TARGET_TOP10
    )
    return {
        "dim": dim,
        "feature_bytes_per_work": dim * 4,
        "works_featurize_s": round(float(np.median(works_s)), 2),
        **figures,
        "meets_target": bool(met),
        "meets_target_against_exact": bool(met_exact),
    }


def model_stability(setup: Setup, rungs: list[Rung], args: argparse.Namespace) -> dict[str, object]:
    """The ladder on the choosing draw and on the reporting draw; the rung chosen on the first, reported
    on the second: the fewest feature bytes per work that met the target."""
    credits = random_credits(setup.n_works, args.model_payees, args.seed)
    cache = FeatureCache(setup, args.chunk)
    ladder: dict[str, dict[str, object]] = {}
    for draw, (_, output_seed) in DRAWS.items():
        outputs = setup.encode(setup.generate(args.outputs, output_seed))
        _, exact, _ = payee_shares(cache, parse_rung("identity"), [0], outputs, credits, args.method)
        ladder[draw] = {
            rung.name: rung_stability(cache, rung, draw, outputs, credits, args.replicates, args.method, exact)
            for rung in rungs
        }
        cache.entries.clear()
    chosen = _cheapest(ladder["choose"], rungs, "meets_target")
    chosen_exact = _cheapest(ladder["choose"], rungs, "meets_target_against_exact")
    return {
        "parameters": setup.parameters,
        "works": setup.n_works,
        "payees": args.model_payees,
        "outputs_per_draw": args.outputs,
        "train_s": round(setup.train_s, 1),
        **setup.notes,
        "method": args.method,
        "lambda_relative": AttributionSettings().lambda_ if args.method == "trak" else None,
        "ladder": ladder,
        "chosen_on_choose_draw": chosen.name if chosen else None,
        "chosen_on_report_draw": ladder["report"][chosen.name] if chosen else None,
        "chosen_against_exact_on_choose_draw": chosen_exact.name if chosen_exact else None,
        "chosen_against_exact_on_report_draw": ladder["report"][chosen_exact.name] if chosen_exact else None,
    }


def _cheapest(draw: dict[str, dict[str, object]], rungs: list[Rung], target: str) -> Rung | None:
    """The rung with the fewest feature bytes per work that met ``target`` on this draw, if any did."""
    met = [rung for rung in rungs if draw[rung.name][target]]
    return min(met, key=lambda r: int(draw[r.name]["feature_bytes_per_work"])) if met else None  # type: ignore[call-overload]


# -- 5. attributing one output against generating it ------------------------------------------------------


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def model_cost(setup: Setup, rungs: list[Rung], args: argparse.Namespace) -> dict[str, object]:
    """Per batch size: seconds to generate the batch, and to attribute it (encode, featurize, payee scores
    against every work, the works' features and Psi precomputed), per output and as a ratio."""
    credits = random_credits(setup.n_works, args.model_payees, args.seed)
    out: dict[str, object] = {"parameters": setup.parameters, "works": setup.n_works}
    raw = {batch: setup.generate(batch, 3) for batch in args.batch_sizes}
    generate_s = {b: _median_s(lambda b=b: setup.generate(b, 3), args.repeats) for b in args.batch_sizes}
    for rung in rungs:
        out[rung.name] = _rung_cost(setup, rung, credits, raw, generate_s, args)
    return out


def _rung_cost(
    setup: Setup,
    rung: Rung,
    credits: CreditMatrix,
    raw: dict[int, object],
    generate_s: dict[int, float],
    args: argparse.Namespace,
) -> dict[str, object]:
    featurizers = [
        Featurizer(setup.task, k=rung.k, seed=s, projection=rung.projection, chunk_size=args.chunk)
        for s in range(rung.members)
    ]
    scorer = TRAKScorer(lambda_=AttributionSettings().lambda_)
    index = PayeeIndex(scorer.fit([f.compute(setup.works, role="train") for f in featurizers]), credits)

    def attribute(batch: object) -> np.ndarray:
        encoded = setup.encode(batch)
        return index.score([f.compute(encoded, role="target") for f in featurizers])

    per_batch: dict[str, object] = {}
    for b in args.batch_sizes:
        attribute_s = _median_s(lambda b=b: attribute(raw[b]), args.repeats)
        per_batch[str(b)] = {
            "generate_ms_per_output": round(generate_s[b] / b * 1e3, 2),
            "attribute_ms_per_output": round(attribute_s / b * 1e3, 2),
            "attribute_over_generate": round(attribute_s / generate_s[b], 3),
        }
    return per_batch


# -- 6. the attribution worker: outputs/s through to the ledger -------------------------------------------


def worker_throughput(args: argparse.Namespace) -> dict[str, object]:
    """The demo's store (its character LM, manifest, agreement and recorded run), then per batch size B:
    ``--worker-outputs`` new tunes generated (timed), attributed B at a time against every payee and
    accrued in process by ``attribute_and_accrue`` (one usage batch); outputs/s of the attribution and end to
    end, beside the generation time per output."""
    from endcredits.attribution.charlm import generate, load_lm
    from endcredits.attribution.pipeline import checkpoint_path
    from endcredits.demo import MODEL_ID, priced_outputs, run_demo
    from endcredits.ledger.verify import verify
    from endcredits.ledger.worker import attribute_and_accrue
    from endcredits.store.engine import open_store

    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    try:
        demo = run_demo(tmp, None, outputs_n=4, train_steps=args.worker_train_steps, seed=args.seed)
        store = open_store(tmp, None)
        lm = load_lm(checkpoint_path(store, MODEL_ID))
        out: dict[str, object] = {"works": demo.attribution["works"], "k": demo.attribution["k"], "ray": args.ray}
        for b in args.worker_batches:
            started = time.perf_counter()
            texts = generate(lm, n=args.worker_outputs, seed=100 + b, length_max=256)
            generate_s = time.perf_counter() - started
            outs = [replace(o, output_id=f"w{b}-{o.output_id}") for o in priced_outputs(MODEL_ID, len(texts), b)]
            report = attribute_and_accrue(
                store, str(demo.attribution["run_id"]), outs, [t.encode() for t in texts], agreement_id="abc-demo",
                batch_id=f"bench-b{b}", batch_outputs=b, usage_outputs=len(outs), ray=args.ray,
            )  # fmt: skip
            out[f"B={b}"] = {
                "outputs": report.outputs,
                "outputs_per_s": round(report.outputs_per_s(), 2),
                "outputs_per_s_end_to_end": round(report.outputs / report.total_s, 2),
                "attribute_ms_per_output": round(report.attribute_s / report.outputs * 1e3, 2),
                "generate_ms_per_output": round(generate_s / report.outputs * 1e3, 2),
                "attribute_over_generate": round(report.attribute_s / generate_s, 3),
                "lines": sum(s.lines for s in report.batches),
            }
        out["verify_ok"] = verify(store).ok
        store.dispose()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_models(args: argparse.Namespace) -> dict[str, object]:
    """Parts 4 and 5 over ``--models``, each model trained once for both."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-stability-"))
    result: dict[str, object] = {}
    try:
        for name in args.models.split(","):
            setup = build(name, args.model_works, steps=args.train_steps, tmp=tmp, sample_steps=args.sample_steps)
            part: dict[str, object] = {}
            if args.stability:
                part["stability"] = model_stability(setup, [parse_rung(r) for r in args.rungs.split(",")], args)
            if args.cost:
                part["cost"] = model_cost(setup, [parse_rung(r) for r in args.cost_rungs.split(",")], args)
            result[name] = part
            print(f"{name}: {json.dumps(part)}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2_048, help="examples featurized by each method")
    parser.add_argument("--feature-k", type=int, default=1_024, help="k for the featurizing comparison")
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--works", type=int, default=1_000_000)
    parser.add_argument("--payees", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=1_024, help="k for the payee attribution")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-featurize", action="store_true")
    parser.add_argument(
        "--explain-works",
        type=int,
        default=200_000,
        help="works (rows of the item matrix) the explanations part searches; 0 skips it",
    )
    parser.add_argument("--top-k", type=int, default=10, help="explanations: works per output")
    parser.add_argument("--nprobes", default="1,8,32,128", help="explanations: FAISS IVF cells searched, each value")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    _model_arguments(parser)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result: dict[str, object] = {"torch_threads": torch.get_num_threads()}
    if args.worker:
        args.worker_batches = [int(b) for b in args.worker_batches.split(",")]
        result["worker"] = worker_throughput(args)
        return _write(result, args.json)
    if args.stability or args.cost:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
        result.update(run_models(args))
        return _write(result, args.json)
    if not args.skip_featurize:
        result["featurize"] = featurize_throughput(args.examples, args.feature_k, args.chunk, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-attribution-"))
    try:
        result["payee_attribution"], scorer, targets = payee_latency(
            args.works, args.payees, args.k, args.queries, args.seed, tmp
        )
        if args.explain_works > 0:
            result["explanations"] = explanations(
                scorer,
                targets,
                works=min(args.explain_works, args.works),
                top_k=args.top_k,
                nprobes=[int(v) for v in args.nprobes.split(",") if v],
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _write(result, args.json)


def _write(result: dict[str, object], as_json: bool) -> int:
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        for part, values in result.items():
            print(f"{part}: {values}")
    return 0


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    """Parts 4 and 5 (``--stability``, ``--cost``): either one runs instead of parts 1-3."""
    parser.add_argument("--stability", action="store_true", help="part 4: payee shares across projection seeds")
    parser.add_argument("--cost", action="store_true", help="part 5: attributing an output against generating it")
    parser.add_argument("--worker", action="store_true", help="part 6: the attribution worker's outputs/s (alone)")
    parser.add_argument("--worker-batches", default="1,8,32", help="part 6: outputs featurized together, each value")
    parser.add_argument("--worker-outputs", type=int, default=64, help="part 6: outputs per batch size")
    parser.add_argument("--worker-train-steps", type=int, default=100, help="part 6: the demo model's steps")
    parser.add_argument("--ray", default=None, help="part 6: a Ray cluster address, or auto (a local one)")
    parser.add_argument("--models", default="charlm,gpt2,unet", help="parts 4-5: models, comma-separated")
    parser.add_argument("--model-works", type=int, default=128, help="parts 4-5: training works of each model")
    parser.add_argument("--train-steps", type=int, default=300, help="parts 4-5: training steps of each model")
    parser.add_argument("--model-payees", type=int, default=64, help="parts 4-5: payees the works credit")
    parser.add_argument("--outputs", type=int, default=16, help="part 4: outputs per draw")
    parser.add_argument("--replicates", type=int, default=3, help="part 4: independent seeds (or seed sets) per rung")
    parser.add_argument(
        "--rungs", default=f"k{K_DEFAULT},k4096,mean4-k{K_DEFAULT},k16384,identity", help="part 4: settings compared"
    )
    parser.add_argument("--method", choices=("trak", "tracin"), default="trak", help="part 4: the scorer")
    parser.add_argument("--cost-rungs", default=f"k{K_DEFAULT},k16384,identity", help="part 5: settings timed")
    parser.add_argument("--batch-sizes", default="1,16", help="part 5: outputs generated and attributed at once")
    parser.add_argument("--repeats", type=int, default=3, help="part 5: timed repeats (median) after a warm-up")
    parser.add_argument("--sample-steps", type=int, default=50, help="UNet: DDPM sampling steps per image")


if __name__ == "__main__":
    raise SystemExit(main())
