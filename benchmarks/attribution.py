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
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap
from torch import nn

from endcredits.attribution import (
    CreditMatrix,
    FaissIndex,
    Featurizer,
    PayeeIndex,
    TopK,
    TRAKScorer,
    classification_task,
    recall_at_k,
    top_k_exact,
)

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
    args = parser.parse_args(argv)
    result: dict[str, object] = {"torch_threads": torch.get_num_threads()}
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
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        for part, values in result.items():
            print(f"{part}: {values}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
