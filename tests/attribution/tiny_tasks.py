"""Tiny seeded models and data for the attribution tests (CPU, milliseconds)."""

from __future__ import annotations

import torch
from torch import nn

from endcredits.attribution.task import classification_margin


def blobs(
    n: int, *, d: int = 6, classes: int = 3, seed: int = 0, spread: float = 1.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points around ``classes`` seeded Gaussian centres."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=torch.Generator().manual_seed(1000))
    y = torch.randint(0, classes, (n,), generator=g)
    x = centres[y] + spread * torch.randn(n, d, generator=g)
    return x, y


def mlp(d_in: int, hidden: int, classes: int, *, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, classes)).eval()


class TokenModel(nn.Module):
    """A linear layer applied at every position of a [B, T, d] input, reused twice, then pooled:
    exercises the sum over positions and over calls of the Kronecker projection."""

    def __init__(self, d: int, classes: int, *, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inner = nn.Linear(d, d)
        self.scale = nn.Parameter(torch.randn(d))
        self.out = nn.Linear(d, classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inner(x)) * self.scale
        h = torch.tanh(self.inner(h))
        out: torch.Tensor = self.out(h.mean(dim=1))
        return out


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def brute_force_margin_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example margin gradients by plain autograd, one example at a time: [n, parameters]."""
    rows = []
    for i in range(x.shape[0]):
        model.zero_grad()
        classification_margin(model, (x[i : i + 1], y[i : i + 1])).sum().backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    return torch.stack(rows).double()


def train_logistic(x: torch.Tensor, y: torch.Tensor, classes: int, *, weight_decay: float) -> nn.Linear:
    """Logistic regression to convergence (full batch L-BFGS from zero): deterministic."""
    model = nn.Linear(x.shape[1], classes)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1,
        max_iter=200,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        penalty = sum((p**2).sum() for p in model.parameters())
        loss = nn.functional.cross_entropy(model(x), y) + weight_decay / 2 * penalty
        loss.backward()
        return loss

    opt.step(closure)
    return model.eval()
