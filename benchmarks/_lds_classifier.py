"""dattri's MNIST models (logistic regression and the 784-128-64-10 MLP), trained many at a time.

The recipes are dattri 0.3.0's (``dattri.benchmark.datasets.mnist``): cross entropy, batches of 64 in a
fresh random order every epoch (the last batch smaller), ``nn.Linear``'s default initialization;
LR: plain SGD, lr 0.01, 20 epochs; MLP: SGD with momentum 0.9, lr 0.01, 50 epochs, dropout 0.1 after
each hidden ReLU. Here M models are trained at once as one batched computation (``torch.bmm`` over
stacked weights), which is about twice as fast on two cores as one at a time. Every model draws its
initialization, batch order and dropout masks from its own generator seeded by its own seed, so a
model does not depend on which other models it was trained beside.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Recipe:
    hidden: tuple[int, ...]
    epochs: int
    lr: float
    momentum: float
    dropout: float
    batch_size: int = 64


RECIPES = {
    "mnist-lr": Recipe(hidden=(), epochs=20, lr=0.01, momentum=0.0, dropout=0.0),
    "mnist-mlp": Recipe(hidden=(128, 64), epochs=50, lr=0.01, momentum=0.9, dropout=0.1),
}


class Classifier(nn.Module):
    """One trained model as an ordinary ``nn.Module`` (eval mode: dropout off): what attribution methods see."""

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in itertools.pairwise(sizes)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


@dataclass
class Trained:
    """M trained models: ``weights[l]`` is [M, in, out] and ``biases[l]`` [M, out]."""

    sizes: tuple[int, ...]
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]

    def __len__(self) -> int:
        return self.weights[0].shape[0]

    def module(self, i: int) -> Classifier:
        model = Classifier(self.sizes)
        with torch.no_grad():
            for layer, w, b in zip(model.layers, self.weights, self.biases, strict=True):
                assert isinstance(layer, nn.Linear)
                layer.weight.copy_(w[i].T)
                layer.bias.copy_(b[i])
        return model.eval()

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[M, n, classes] in eval mode."""
        h = x.unsqueeze(0).expand(len(self), -1, -1)
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b.unsqueeze(1), h, w)
            if layer < len(self.weights) - 1:
                h = torch.relu(h)
        return h


def margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Correct-class logit minus the log-sum-exp of the other logits (TRAK's model output), [..., n]."""
    correct = logits.gather(-1, labels.expand(*logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[-1]).bool().expand_as(logits), float("-inf"))
    return correct - torch.logsumexp(others, dim=-1)


def train_models(
    setting: str,
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    subsets: npt.NDArray[np.int64],
    seeds: Sequence[int],
    *,
    classes: int,
    chunk: int = 50,
    progress: Callable[[int], None] | None = None,
) -> Trained:
    """Train ``len(seeds)`` models; model i on the training examples ``subsets[i]`` (all rows the same length)."""
    recipe = RECIPES[setting]
    subsets = np.asarray(subsets, dtype=np.int64)
    if subsets.ndim != 2 or len(subsets) != len(seeds):
        raise ValueError(f"subsets must be [models, size]; got {subsets.shape} for {len(seeds)} seeds")
    sizes = (x.shape[1], *recipe.hidden, classes)
    parts: list[Trained] = []
    for start in range(0, len(seeds), chunk):
        parts.append(
            _train_chunk(
                recipe,
                sizes,
                torch.from_numpy(x),
                torch.from_numpy(y),
                subsets[start : start + chunk],
                list(seeds[start : start + chunk]),
            )
        )
        if progress is not None:
            progress(min(len(seeds), start + chunk))
    return Trained(
        sizes=sizes,
        weights=[torch.cat([p.weights[i] for p in parts]) for i in range(len(sizes) - 1)],
        biases=[torch.cat([p.biases[i] for p in parts]) for i in range(len(sizes) - 1)],
    )


def _train_chunk(
    recipe: Recipe,
    sizes: tuple[int, ...],
    x: torch.Tensor,
    y: torch.Tensor,
    subsets: npt.NDArray[np.int64],
    seeds: list[int],
) -> Trained:
    n = subsets.shape[1]
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    weights: list[torch.Tensor] = []
    biases: list[torch.Tensor] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default: kaiming_uniform(a=sqrt(5)) and its bias rule
        w = torch.stack([(torch.rand(fan_out, fan_in, generator=g) * 2 - 1) * bound for g in generators])
        b = torch.stack([(torch.rand(fan_out, generator=g) * 2 - 1) * bound for g in generators])
        weights.append(w.transpose(1, 2).contiguous().requires_grad_(True))
        biases.append(b.requires_grad_(True))
    params = [*weights, *biases]
    buffers = [torch.zeros_like(p) for p in params]
    subsets_t = torch.from_numpy(subsets)
    batch = recipe.batch_size
    for _ in range(recipe.epochs):
        order = torch.stack([subsets_t[i][torch.randperm(n, generator=g)] for i, g in enumerate(generators)])
        for start in range(0, n, batch):
            idx = order[:, start : start + batch]  # [M, B]
            h = x[idx]
            for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
                h = torch.baddbmm(b.unsqueeze(1), h, w)
                if layer < len(weights) - 1:
                    h = torch.relu(h)
                    if recipe.dropout > 0:
                        keep = torch.stack([torch.rand(h.shape[1:], generator=g) for g in generators]) >= recipe.dropout
                        h = h * keep / (1.0 - recipe.dropout)
            # Mean cross entropy per model; summing over models keeps each model's gradient its own.
            loss = F.cross_entropy(h.reshape(-1, h.shape[-1]), y[idx].reshape(-1), reduction="sum") / idx.shape[1]
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g, buf in zip(params, grads, buffers, strict=True):
                    if recipe.momentum:
                        buf.mul_(recipe.momentum).add_(g)
                        p.sub_(recipe.lr * buf)
                    else:
                        p.sub_(recipe.lr * g)
    return Trained(sizes=sizes, weights=[w.detach() for w in weights], biases=[b.detach() for b in biases])
