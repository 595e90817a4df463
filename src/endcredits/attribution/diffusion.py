"""Diffusion models (a ``diffusers`` UNet and its DDPM noise schedule) as attribution tasks.

The function differentiated is not the training loss at a random timestep. Following D-TRAK (Zheng et al.,
ICLR 2024), it is a function of the predicted noise at a fixed set of timesteps, with noise drawn from seeds
that every work's features, every output's features and the retraining ground truth share:

- ``"loss"`` (the default): minus the denoising loss ``(eps_theta(x_t, t) - eps)^2``, TRAK's choice;
- ``"squared-norm"``: the mean of ``eps_theta(x_t, t)^2``, D-TRAK's best output function, which at the
  product's ridge ranked worse on the benchmark's tuning draw (docs/benchmarks.md, "Clip art + DDPM").

``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``; the value is averaged over the timesteps. The
noise is part of the batch (``vmap`` draws nothing at random): noise ``k`` comes from ``seed`` and ``k``
alone, the same for every image. Attention runs through diffusers' plain processor (no fused kernel,
which ``vmap`` has no rule for). See docs/concepts/attribution.md, "The models operators run".
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from endcredits.attribution.settings import MEASUREMENTS, Measurement
from endcredits.attribution.task import AttributionTask, Batch, canonical_state, checkpoint_sha256
from endcredits.errors import ManifestError, ValidationError

FORMAT = "endcredits.diffusers-unet/1"
TIMESTEPS_MAX = 1_000
IMAGE_SIDE_MAX = 1_024
SVG_RENDER_SCALE = 4
"""An SVG drawing is rendered at this many times the model's side, then scaled down (antialiased)."""


@dataclass(frozen=True)
class DiffusionUNet:
    """A UNet, the cumulative products of its noise schedule, and the image shape it denoises."""

    model: nn.Module
    alphas_cumprod: torch.Tensor
    channels: int
    side: int

    def state(self) -> dict[str, torch.Tensor]:
        return canonical_state(self.model, self.model.state_dict())

    def checksum(self) -> str:
        """SHA-256 of the UNet's config, its noise schedule and its parameters, whatever the files."""
        model: Any = self.model  # a diffusers model: nn.Module's typing does not know its config
        # Keys starting with "_" say where and by which version it was saved, not what it computes.
        kept = {key: value for key, value in dict(model.config).items() if not key.startswith("_")}
        config = json.dumps(kept, sort_keys=True, default=str)
        digest = hashlib.sha256(FORMAT.encode())
        digest.update(config.encode())
        digest.update(self.alphas_cumprod.numpy().astype(np.float64).tobytes())
        digest.update(checkpoint_sha256(self.state()).encode())
        return digest.hexdigest()

    def encode(self, images: torch.Tensor, *, timesteps: int, seed: int) -> dict[str, torch.Tensor]:
        """A batch for ``images`` ``[B, C, H, W]`` in [-1, 1]: ``timesteps`` evenly spaced steps of the
        schedule, and noise ``k`` drawn from ``(seed, k)`` for each of them, the same for every image."""
        steps = len(self.alphas_cumprod)
        if not 1 <= timesteps <= min(TIMESTEPS_MAX, steps - 2):
            raise ValidationError(f"timesteps {timesteps} must be in [1, {min(TIMESTEPS_MAX, steps - 2)}]")
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.channels, self.side, self.side):
            raise ValidationError(
                f"images must be [B, {self.channels}, {self.side}, {self.side}]; got {tuple(images.shape)}"
            )
        t = torch.linspace(0, steps - 1, timesteps + 2)[1:-1].round().long()  # evenly spaced, the ends left out
        draws = [torch.Generator().manual_seed(seed * TIMESTEPS_MAX + k) for k in range(timesteps)]
        noise = torch.stack([torch.randn(images.shape[1:], generator=g) for g in draws])
        b = images.shape[0]
        return {
            "images": images.float(),
            "noise": noise.expand(b, *noise.shape).contiguous(),
            "timesteps": t.expand(b, len(t)).contiguous(),
        }

    def task(
        self,
        checkpoints: Sequence[Mapping[str, torch.Tensor]] | None = None,
        *,
        measurement: Measurement = "loss",
    ) -> AttributionTask:
        """The attribution task: the same function for training images and generated ones."""
        if measurement not in MEASUREMENTS:
            raise ValidationError(f"measurement {measurement!r} must be one of {', '.join(MEASUREMENTS)}")
        fn = _DenoisingFunction(self.alphas_cumprod, measurement)
        return AttributionTask(
            model=self.model,
            checkpoints=list(checkpoints) if checkpoints is not None else [self.state()],
            train_output=fn,
            measurement=fn,
        )


class _DenoisingFunction:
    """``fn(model, batch) -> Tensor[B]``: the measurement averaged over the batch's timesteps."""

    def __init__(self, alphas_cumprod: torch.Tensor, kind: Measurement) -> None:
        self.alphas_cumprod = alphas_cumprod.float()
        self.kind = kind

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if not isinstance(batch, Mapping) or set(batch) != {"images", "noise", "timesteps"}:
            raise ValidationError("a diffusion batch is {images, noise, timesteps}; build it with DiffusionUNet.encode")
        x0, noise, t = batch["images"], batch["noise"], batch["timesteps"]
        b, k = t.shape
        a = self.alphas_cumprod.to(x0.device)[t].reshape(b, k, 1, 1, 1)
        noisy = a.sqrt() * x0[:, None] + (1 - a).sqrt() * noise
        # One call per timestep, each over the batch's examples: every layer then sees examples along its
        # first dimension, as the Kronecker projection needs, and sums the timesteps over its calls.
        total = torch.zeros(b, dtype=x0.dtype, device=x0.device)
        for step in range(k):
            eps: torch.Tensor = model(noisy[:, step], t[:, step]).sample
            if self.kind == "loss":
                total = total - ((eps - noise[:, step]) ** 2).mean(dim=(1, 2, 3))
            else:
                total = total + (eps**2).mean(dim=(1, 2, 3))
        return total / k


def prepare(model: nn.Module) -> nn.Module:
    """Eval mode, and diffusers' plain attention processor in every attention block (``vmap`` has no
    batching rule for the fused kernel)."""
    from diffusers.models.attention_processor import Attention, AttnProcessor

    for module in model.modules():
        if isinstance(module, Attention):
            module.set_processor(AttnProcessor())
    return model.eval()


def load_unet(folder: Path) -> DiffusionUNet:
    """A UNet and its DDPM scheduler saved by diffusers: a pipeline folder (``unet/`` and ``scheduler/``)
    or a UNet folder with ``scheduler_config.json`` beside its ``config.json``."""
    from diffusers import DDPMScheduler, UNet2DModel

    unet_dir = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    scheduler_dir = folder / "scheduler" if (folder / "scheduler").is_dir() else folder
    if not (unet_dir / "config.json").is_file() or not (scheduler_dir / "scheduler_config.json").is_file():
        raise ManifestError(f"{folder} holds no diffusers UNet with its scheduler (config.json, scheduler_config.json)")
    try:
        model = UNet2DModel.from_pretrained(  # type: ignore[no-untyped-call]
            unet_dir, local_files_only=True, low_cpu_mem_usage=False
        )
        scheduler = DDPMScheduler.from_pretrained(scheduler_dir, local_files_only=True)  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ManifestError(f"{folder} holds no diffusers UNet2DModel with its scheduler: {first}") from None
    config: Any = model.config
    size = config.sample_size
    side = int(size if isinstance(size, int) else size[0])
    return DiffusionUNet(prepare(model), scheduler.alphas_cumprod.clone(), int(config.in_channels), side)


def images_from_bytes(contents: Sequence[bytes], *, channels: int, side: int, what: Sequence[str]) -> torch.Tensor:
    """Decode image files (PNG, JPEG, ...) to ``[B, channels, side, side]`` in [-1, 1], resized to fit; an
    undecodable one is refused naming it (``what[i]``). An SVG drawing is rendered (``render_svg``, at
    ``SVG_RENDER_SCALE`` times the side, aspect kept) on white paper: a transparent background is paper, not
    black ink."""
    from PIL import Image, UnidentifiedImageError

    from endcredits.registry.fingerprints import is_svg, render_svg

    if not 1 <= side <= IMAGE_SIDE_MAX or channels not in (1, 3):
        raise ValidationError(f"images of side 1..{IMAGE_SIDE_MAX} with 1 or 3 channels; got {side} and {channels}")
    out = np.empty((len(contents), channels, side, side), dtype=np.float32)
    for row, data in enumerate(contents):
        mode = "L" if channels == 1 else "RGB"
        if is_svg(data, ""):
            try:
                drawing = render_svg(data, side * SVG_RENDER_SCALE)
            except ValidationError as exc:
                raise ValidationError(f"{what[row]}: {exc}") from None
            paper = Image.new("RGBA", drawing.size, (255, 255, 255, 255))
            image = Image.alpha_composite(paper, drawing).convert(mode)
        else:
            try:
                image = Image.open(io.BytesIO(data)).convert(mode)
            except (UnidentifiedImageError, OSError) as exc:
                raise ValidationError(
                    f"{what[row]} is not an image this model can read ({type(exc).__name__})"
                ) from None
        pixels = np.asarray(image.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32) / 127.5 - 1.0
        out[row] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return torch.from_numpy(out)
