"""Every parameter accounted for: a parameter is left out only by name, a layer the projection cannot take
is refused naming it and the setting that includes or excludes it, and importing the engine loads neither
transformers nor diffusers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
import torch.nn.functional as F
from layered_models import (
    class_log_likelihood,
    exact_gradients,
    laid_out,
    task_of,
)
from torch import nn

import endcredits
from endcredits.attribution.featurizer import Featurizer, Plan, map_batch, plan_projection
from endcredits.attribution.task import Batch, ExampleFunction
from endcredits.errors import ValidationError

Rows = npt.NDArray[np.float64]


def _exact(model: nn.Module, fn: ExampleFunction, data: Batch, n: int, plan: Plan) -> Rows:
    """Each example's autograd gradient in the plan's layout, ``[n, parameters]``."""
    singles = [map_batch(data, lambda t, i=i: t[i : i + 1]) for i in range(n)]
    return torch.stack([laid_out(plan, g) for g in exact_gradients(model, fn, singles)]).numpy()


def _relative_error(got: npt.NDArray[np.float32], exact: Rows) -> float:
    """The largest ``|features - gradient| / |gradient|`` over the examples."""
    return float((np.linalg.norm(got - exact, axis=1) / np.linalg.norm(exact, axis=1)).max())


class _Uncalled(nn.Module):
    """A linear layer whose weight is used without calling the layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.used = nn.Linear(4, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out(torch.tanh(F.linear(x, self.used.weight, self.used.bias)))
        return out


@pytest.mark.parametrize(
    ("model", "x", "message"),
    [
        (_Uncalled(), torch.randn(5, 4), "linear layer 'used' was not called in the forward pass"),
    ],
    ids=["uncalled"],
)
def test_a_layer_the_projection_cannot_take_is_refused_naming_it_and_both_ways_out(
    tmp_path: Path, model: nn.Module, x: torch.Tensor, message: str
) -> None:
    data = (x, torch.randint(0, 3, (5,), generator=torch.Generator().manual_seed(0)))
    task = task_of(model.eval(), class_log_likelihood)
    layer = message.split("'")[1]
    with pytest.raises(ValidationError, match=f"^{message}") as caught:
        Featurizer(task, k=16, seed=0).featurize(data, [f"w{i}" for i in range(5)], tmp_path / "features")
    text = str(caught.value)
    out = tmp_path / "features"
    assert "\n" not in text and (not out.exists() or list(out.iterdir()) == [])  # nothing written
    assert "projection 'gaussian' (--projection gaussian)" in text and f"(--exclude '{layer}.*')" in text
    # Either way out works: every parameter through vmap, or the layer left out by name.
    whole = sum(p.numel() for p in model.parameters())
    exact = Featurizer(task, k=whole, seed=0, projection="gaussian").compute(data, role="train")
    assert (
        _relative_error(
            exact, _exact(model, class_log_likelihood, data, 5, plan_projection(model, projection="identity", k=None))
        )
        < 1e-5
    )
    without = Featurizer(task, k=16, seed=0, exclude=(f"{layer}.*",))
    assert without.coverage["excluded_names"] == [f"{layer}.weight", f"{layer}.bias"]
    assert without.compute(data).shape == (5, without.dim)


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # torch's vmap of its attention kernel
def test_importing_the_engine_loads_neither_transformers_nor_diffusers() -> None:
    code = (
        "import sys, endcredits.attribution, endcredits.attribution.featurizer, endcredits.attribution.texts;"
        " print(sorted(m for m in ('transformers', 'diffusers') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(endcredits.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]"
