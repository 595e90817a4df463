"""Tiny models' attribution tasks and the exact per-example gradient, laid out as a featurizer's plan lays
out its features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from endcredits.attribution.featurizer import Plan
from endcredits.attribution.task import AttributionTask, Batch, ExampleFunction


def task_of(model: nn.Module, fn: ExampleFunction) -> AttributionTask:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return AttributionTask(model, [state], train_output=fn, measurement=fn)


def class_log_likelihood(model: nn.Module, batch: Batch) -> torch.Tensor:
    assert isinstance(batch, tuple)
    x, y = batch
    return F.log_softmax(model(x), dim=-1).gather(1, y[:, None]).squeeze(1)


def exact_gradients(model: nn.Module, fn: ExampleFunction, batches: Sequence[Batch]) -> list[dict[str, torch.Tensor]]:
    """Each example's gradient by plain autograd, one example at a time: a tied parameter's gradient is
    the sum over all its uses."""
    out = []
    for batch in batches:
        model.zero_grad()
        fn(model, batch).sum().backward()
        out.append({name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None})
    return out


def laid_out(plan: Plan, grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """One example's gradient in the order of the plan's unprojected features: each Kronecker layer as
    ``[d_out, d_in]`` (weight, then the bias as the last input), then the rest, flattened."""
    parts = []
    for layer in plan.kronecker:
        blocks = grads[layer.weight].reshape(layer.d_out, -1)
        if layer.bias is not None:
            blocks = torch.cat([blocks, grads[layer.bias].reshape(layer.d_out, 1)], dim=1)
        parts.append(blocks.reshape(-1))
    parts += [grads[name].reshape(-1) for name in plan.rest]
    return torch.cat(parts).double()
