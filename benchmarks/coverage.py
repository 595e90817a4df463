"""Coverage of the Kronecker projection: what linear-only features left out, what it costs to take it all.

    python benchmarks/coverage.py --json

On a tiny GPT-2 (2 layers, 32 wide: Conv1D layers, head tied to the embedding) trained on ABC tunes, and
a tiny UNet2DModel (2 levels, 16/32 channels) trained to denoise seeded 16x16 shapes, built from a config
here (never downloaded), seeded:

1. Share of parameters (scalars) covered: linear-only (the ``nn.Linear`` weights: the demo's former
   ``parameters = "linear"``; GPT-2's tied head counted although only its head use was projected) and now.
2. Time per chunk of ``--chunk`` examples for the same layers (the GPT-2's Conv1D layers, the UNet's
   Conv2d layers, everything else excluded by name), at the same k: the Kronecker path against
   ``vmap(grad)`` + the blockwise Gaussian projection; median of ``--repeats`` after a warm-up.
3. Rank agreement of scores: TRAK scores (lambda 1, relative) of ``--outputs`` held-out examples against
   ``--works`` training examples with linear-only features, with full coverage (both at ``--k``) and with
   the exact gradient (no projection): Spearman's rho per output between each pair, mean and range.
   Linear-only for the GPT-2 is what the former code computed: its head's use of the tied weight alone
   (an untied copy whose every other parameter is excluded), Kronecker-projected.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy.stats import spearmanr
from torch import nn

from endcredits.attribution import Featurizer, TRAKScorer
from endcredits.attribution.task import AttributionTask, Batch, ExampleFunction
from endcredits.interop.abc import iter_tunes

Rows = npt.NDArray[np.float32]


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64, n_positions=64, bos_token_id=0, eos_token_id=0)
    config._attn_implementation = "eager"  # no fused kernel under vmap
    return GPT2LMHeadModel(config)


def _unet() -> nn.Module:
    from diffusers import UNet2DModel
    from diffusers.models.attention_processor import AttnProcessor

    model = UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    for module in model.modules():
        if hasattr(module, "set_processor"):
            module.set_processor(AttnProcessor())
    return model


def lm_log_likelihood(model: nn.Module, batch: Batch) -> torch.Tensor:
    assert isinstance(batch, torch.Tensor)
    logits = model(input_ids=batch, use_cache=False).logits[:, :-1]
    return torch.log_softmax(logits, dim=-1).gather(-1, batch[:, 1:, None]).squeeze(-1).sum(-1)


def minus_denoising_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    assert isinstance(batch, tuple)
    x, t, noise = batch
    alpha = torch.cos(t.float() / 1000 * torch.pi / 2)[:, None, None, None]
    noisy = alpha * x + (1 - alpha**2).sqrt() * noise
    return -((model(noisy, t).sample - noise) ** 2).flatten(1).sum(1)


def tune_tokens(n: int, length: int, seed: int) -> torch.Tensor:
    """``n`` windows of ``length`` characters of the ABC tunes as ids below 64 (rare characters share 63)."""
    text = "\n\n".join(t.text for t in iter_tunes(limit=400))
    common = [c for c, _ in sorted(((c, text.count(c)) for c in set(text)), key=lambda p: (-p[1], p[0]))][:63]
    ids = torch.tensor([common.index(c) if c in common else 63 for c in text])
    starts = torch.randint(0, len(ids) - length, (n,), generator=torch.Generator().manual_seed(seed))
    return torch.stack([ids[s : s + length] for s in starts.tolist()])


def shapes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` 16x16 images of a seeded square, disc or bar, with a timestep and noise for each."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    images = torch.zeros(n, 1, 16, 16)
    for i in range(n):
        cy, cx, r = torch.rand(3, generator=g) * torch.tensor([10.0, 10.0, 3.0]) + torch.tensor([3.0, 3.0, 2.0])
        kind = int(torch.randint(0, 3, (1,), generator=g))
        if kind == 0:
            mask = ((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)
        elif kind == 1:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        else:
            mask = (yy - cy).abs() <= r / 2
        images[i, 0] = mask.float() * 2 - 1
    return images, torch.randint(0, 1000, (n,), generator=g), torch.randn(n, 1, 16, 16, generator=g)


def train(model: nn.Module, fn: ExampleFunction, data: Batch, steps: int, seed: int) -> None:
    """Adam on minus ``fn`` over seeded minibatches of 16; the model is left in eval mode."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    n = (data if isinstance(data, torch.Tensor) else data[0]).shape[0]
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, n, (16,), generator=g)
        batch = data[rows] if isinstance(data, torch.Tensor) else tuple(t[rows] for t in data)
        opt.zero_grad()
        (-fn(model, batch).mean()).backward()
        opt.step()
    model.eval()


def task_of(model: nn.Module, fn: ExampleFunction) -> AttributionTask:
    return AttributionTask(model, [{k: v.detach().clone() for k, v in model.state_dict().items()}], fn, fn)


def linear_share(model: nn.Module) -> float:
    """The share of parameters in ``nn.Linear`` layers: what linear-only features covered."""
    names = {id(p): n for n, p in model.named_parameters()}
    linear = {names[id(p)] for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for n, p in model.named_parameters() if n in linear) / total


def only(model: nn.Module, kept: Callable[[nn.Module], bool]) -> tuple[str, ...]:
    """``exclude`` patterns leaving only the parameters of the modules ``kept`` accepts."""
    keep = {f"{n}.{p}" for n, m in model.named_modules() if kept(m) for p, _ in m.named_parameters(recurse=False)}
    return tuple(n for n, _ in model.named_parameters() if n not in keep)


def chunk_seconds(featurizer: Featurizer, chunk: Batch, repeats: int) -> float:
    featurizer.compute(chunk)  # warm-up: factors and projection blocks generated once
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        featurizer.compute(chunk)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing(task: AttributionTask, kept: Callable[[nn.Module], bool], chunk: Batch, args: Any) -> dict[str, Any]:
    exclude = only(task.model, kept)
    kron = Featurizer(task, k=args.k, seed=0, chunk_size=args.chunk, exclude=exclude)
    gauss = Featurizer(task, k=args.k, seed=0, chunk_size=args.chunk, exclude=exclude, projection="gaussian")
    assert not kron.plan.rest, kron.plan.rest
    kron_s, gauss_s = chunk_seconds(kron, chunk, args.repeats), chunk_seconds(gauss, chunk, args.repeats)
    return {
        "parameters": kron.coverage["covered"],
        "kronecker_s": round(kron_s, 4),
        "vmap_gaussian_s": round(gauss_s, 4),
        "ratio": round(gauss_s / kron_s, 1),
    }


def scores(task: AttributionTask, works: Batch, outputs: Batch, **kwargs: Any) -> npt.NDArray[np.float64]:
    featurizer = Featurizer(task, seed=0, chunk_size=16, **kwargs)
    train_rows = featurizer.compute(works, role="train")
    scorer = TRAKScorer(lambda_=1.0).fit([train_rows])
    return scorer.score([featurizer.compute(outputs)])


def rho(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> dict[str, float]:
    values = [float(spearmanr(x, y).statistic) for x, y in zip(a, b, strict=True)]
    return {"mean": round(float(np.mean(values)), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def agreement(task: AttributionTask, linear: AttributionTask, data: tuple[Batch, Batch], k: int) -> dict[str, Any]:
    works, outputs = data
    linear_only = scores(linear, works, outputs, k=k, exclude=only(linear.model, lambda m: isinstance(m, nn.Linear)))
    full = scores(task, works, outputs, k=k)
    exact = scores(task, works, outputs, k=None, projection="identity")
    return {
        "linear_vs_full": rho(linear_only, full),
        "linear_vs_exact": rho(linear_only, exact),
        "full_vs_exact": rho(full, exact),
    }


def gpt2_report(args: Any) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    model = _gpt2()
    data = tune_tokens(args.works + args.outputs + 512, 32, args.seed)
    train(model, lm_log_likelihood, data[: args.works + 512], args.steps, args.seed)
    task = task_of(model, lm_log_likelihood)
    untied = _gpt2()
    untied.load_state_dict(model.state_dict())
    untied.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone())  # the head's use alone
    works, outputs = data[: args.works], data[-args.outputs :]
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "share_linear_only": round(linear_share(model), 4),
        "share_now": task_coverage(task, args.k),
        "time_per_chunk": timing(task, lambda m: type(m).__name__ == "Conv1D", data[: args.chunk], args),
        "rank_agreement": agreement(task, task_of(untied.eval(), lm_log_likelihood), (works, outputs), args.k),
    }


def unet_report(args: Any) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    model = _unet()
    data = shapes(args.works + args.outputs + 512, args.seed)
    train(model, minus_denoising_loss, tuple(t[: args.works + 512] for t in data), args.steps, args.seed)
    task = task_of(model, minus_denoising_loss)
    works = tuple(t[: args.works] for t in data)
    outputs = tuple(t[-args.outputs :] for t in data)
    chunk = tuple(t[: args.chunk] for t in data)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "share_linear_only": round(linear_share(model), 4),
        "share_now": task_coverage(task, args.k),
        "time_per_chunk": timing(task, lambda m: isinstance(m, nn.Conv2d), chunk, args),
        "rank_agreement": agreement(task, task, (works, outputs), args.k),
    }


def task_coverage(task: AttributionTask, k: int) -> float:
    return round(float(Featurizer(task, k=k, seed=0).coverage["share_covered"]), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--works", type=int, default=256)
    parser.add_argument("--outputs", type=int, default=8)
    parser.add_argument("--k", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)
    report = {"settings": vars(args), "gpt2": gpt2_report(args), "unet": unet_report(args)}
    print(json.dumps(report, indent=1) if args.json else report)


if __name__ == "__main__":
    main()
