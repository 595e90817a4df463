"""Tiny models with every kind of layer, built here from a config (never downloaded), as attribution tasks;
and the exact per-example gradient, laid out as a featurizer's plan lays out its features."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from endcredits.attribution.featurizer import Plan
from endcredits.attribution.task import AttributionTask, Batch, ExampleFunction

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # diffusers' import-time notices, not the code under test
    from diffusers import UNet2DModel
    from diffusers.models.attention_processor import AttnProcessor
    from transformers import GPT2Config, GPT2LMHeadModel


def gpt2(*, seed: int = 0) -> nn.Module:
    """A 2-layer GPT-2: ``Conv1D`` layers, the head tied to the token embedding; eager attention (the
    default attention kernel has no batching rule for ``vmap`` on CPU and says so in a warning)."""
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=32,
        vocab_size=64,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    return GPT2LMHeadModel(config).eval()


def unet(*, seed: int = 0, channels: tuple[int, int] = (16, 32), groups: int = 8) -> nn.Module:
    """A 2-level ``UNet2DModel`` (convolutions, group norms, time embedding, a mid-block attention)."""
    torch.manual_seed(seed)
    model = UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=channels,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=groups,
    )
    for module in model.modules():
        if hasattr(module, "set_processor"):
            module.set_processor(AttnProcessor())  # plain attention: no fused kernel under vmap
    return model.eval()


def lm_log_likelihood(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Each token sequence's summed log-likelihood, ``[B]``."""
    assert isinstance(batch, torch.Tensor)
    logits = model(input_ids=batch, use_cache=False).logits[:, :-1]
    return torch.log_softmax(logits, dim=-1).gather(-1, batch[:, 1:, None]).squeeze(-1).sum(-1)


def minus_denoising_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Minus each example's denoising loss ``|eps(x_t, t) - noise|^2``, ``[B]``."""
    assert isinstance(batch, tuple)
    x, t, noise = batch
    predicted = model(x, t).sample
    return -((predicted - noise) ** 2).flatten(1).sum(1)


def task_of(model: nn.Module, fn: ExampleFunction) -> AttributionTask:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return AttributionTask(model, [state], train_output=fn, measurement=fn)


def token_batch(n: int, length: int = 12, *, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 64, (n, length), generator=torch.Generator().manual_seed(seed))


def noisy_batch(n: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 1, 16, 16, generator=g),
        torch.randint(0, 1000, (n,), generator=g),
        torch.randn(n, 1, 16, 16, generator=g),
    )


class ConvNet(nn.Module):
    """Convolutions of every kind the Kronecker projection takes: strides, dilation, 'same' padding with an
    even kernel, reflect and circular padding, groups, no bias; then a linear head."""

    def __init__(self, *, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.dilated = nn.Conv2d(4, 4, 3, dilation=2, padding="same", padding_mode="reflect")
        self.even = nn.Conv2d(4, 6, (2, 4), padding="same", padding_mode="circular", bias=False)
        self.grouped = nn.Conv2d(6, 4, 3, groups=2, stride=(1, 2), padding=(0, 1))
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.stem, self.dilated, self.even, self.grouped):
            x = torch.tanh(conv(x))
        out: torch.Tensor = self.head(x.mean(dim=(2, 3)))
        return out


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
    ``[groups, d_out, d_in]`` (weight, then the bias as the last input), then the rest, flattened."""
    parts = []
    for layer in plan.kronecker:
        weight = grads[layer.weight].T if layer.kind == "conv1d" else grads[layer.weight]
        blocks = weight.reshape(layer.groups, layer.d_out, -1)
        if layer.bias is not None:
            blocks = torch.cat([blocks, grads[layer.bias].reshape(layer.groups, layer.d_out, 1)], dim=2)
        parts.append(blocks.reshape(-1))
    parts += [grads[name].reshape(-1) for name in plan.rest]
    return torch.cat(parts).double()
