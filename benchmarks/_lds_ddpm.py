"""The ``image-ddpm`` setting of the LDS benchmark: a small DDPM on a folder of small images, attributed the
way an operator's diffusers model is, through ``endcredits.attribution.diffusion``.

Training works: the first ``--ddpm-train`` images of ``--images DIR`` (PNG/JPEG, sorted by path, read with
endcredits' ``images_from_bytes`` as 16x16 grayscale in [-1, 1]); the next ones are held out. Without
``--images``, the default is 16x16 renders of the clip art of Debian's ``openclipart-svg`` (``logos/``
left out), an evenly spaced pick over the sorted paths, rendered once with ``cairosvg`` into
``benchmarks/.cache/openclipart-16-COUNT``.

The model is a diffusers ``UNet2DModel`` (two down and two up blocks of 16 and 32 channels, one layer each, no
attention) with a 100-step ``DDPMScheduler``, trained from scratch on the plain denoising loss for
``--ddpm-steps`` steps of batch 16 (random images, timesteps and noise, all seeded). Every model is saved
with ``save_pretrained`` and loaded back with ``load_unet``; with ``--ddpm-checkpoints S1,S2,...`` so are
each ensemble model's parameters after those steps (the "+checkpoints" recipes).

Model output (the ground truth): minus the denoising loss of a test image, averaged over ``--ddpm-timesteps``
evenly spaced timesteps with the noise of ``DiffusionUNet.encode(seed=NOISE_SEED)``: the same timesteps and
noise for every image and every model, the attribution's and the retrained ones'. Test images: held-out
images and images sampled (100 DDPM steps, seeded) from a model trained on all the works.

Methods, at the same ``--k`` on the same models:
- ``endcredits``: ``DiffusionUNet.task(measurement="squared-norm")`` (D-TRAK's output function) with the
  ``Featurizer`` and ``TRAKScorer``;
- ``endcredits-loss``: the same with ``measurement="loss"`` (TRAK's choice: minus the denoising loss);
- ``traker``: MadryLab's TRAKer with minus the denoising loss at the same timesteps and noise as its model
  output, Q one;
- ``dtrak``: D-TRAK (Zheng et al., ICLR 2024) written here from the paper, calling no endcredits code:
  per-example gradients (``torch.func``) of the squared L2 norm of the predicted noise, averaged over the
  timesteps, projected by a seeded Gaussian matrix to ``k``, scored ``Phi_train (Phi^T Phi + lambda I)^-1
  phi_target`` per model and averaged over the ensemble. It is handed the same images, noise and
  timesteps as the others (the batch tensors), not endcredits' functions.

``endcredits-loss-tsnorm`` and ``-tsnorm-both`` (``ddpm_measurement.py --tsnorm`` only): ``endcredits-loss``
with timestep-normalized features (``timestep_normalized``) of the training images, or of both sides.
``endcredits-loss-unit`` and ``-relatif`` (``ddpm_measurement.py --relatif`` only): ``endcredits-loss`` with
each training image's feature row divided by its norm (``unit_rows``), or each training image's scores
divided by the square root of its self-influence (``SelfRelativeTRAKScorer``; RelatIF, Barshan et al., 2020).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _lds_core as core
import numpy as np
import numpy.typing as npt
import torch
from _lds_core import SEED_HALF_ENSEMBLE, Problem
from _lds_data import DataError
from _lds_methods import MethodRun, PeerJob, _quiet, run_endcredits, run_traker
from _lds_retrain import RunMemo, counterfactual_by_retraining
from torch import nn

from endcredits.attribution.scorers import TRAKScorer
from endcredits.demo_images import BATCH, CHANNELS, LEARNING_RATE, SCHEDULE_STEPS, SIDE
from endcredits.demo_images import train_ddpm as demo_train_ddpm

DDPM_METHODS = (
    "endcredits",
    "endcredits-loss",
    "endcredits-loss-ggn",
    "endcredits-loss-tsnorm",
    "endcredits-loss-tsnorm-both",
    "endcredits-loss-unit",
    "endcredits-loss-relatif",
    "traker",
    "dtrak",
)
TSNORM_ROLES = {"endcredits-loss-tsnorm": ("train",), "endcredits-loss-tsnorm-both": ("train", "target")}
"""Timestep-normalized features (``timestep_normalized``): of the training images, or of both sides."""
NOISE_SEED = 11
"""The seed of the shared noise (``DiffusionUNet.encode``) of every measurement and attribution."""
OPENCLIPART_SVG = Path("/usr/share/openclipart/svg")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImagesUnavailable(DataError):
    """No image folder was given and the default one cannot be made here."""


def render_openclipart(cache_dir: Path, count: int) -> Path:
    """``count`` 16x16 grayscale PNGs of openclipart-svg's clip art (``logos/`` left out), rendered once into
    ``cache_dir/openclipart-16-COUNT``; an evenly spaced pick over the sorted paths (which depends on
    ``count``, hence one folder per count), so every category is in it."""
    folder = Path(cache_dir) / f"openclipart-{SIDE}-{count}"
    if folder.is_dir() and len(list(folder.glob("*.png"))) == count:
        return folder
    try:
        with _quiet():
            import cairosvg
    except (ImportError, OSError):
        cairosvg = None
    svgs = sorted(p for p in OPENCLIPART_SVG.rglob("*.svg") if "logos" not in p.relative_to(OPENCLIPART_SVG).parts)
    if cairosvg is None or not svgs:
        raise ImagesUnavailable(
            "image-ddpm needs --images DIR (a folder of PNG/JPEG images); the default renders Debian's"
            " openclipart-svg with cairosvg (apt-get install openclipart-svg; pip install cairosvg)"
        )
    import io

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):  # an interrupted render: start again
        stale.unlink()
    done = 0
    for index in np.linspace(0, len(svgs) - 1, min(len(svgs), 3 * count)).round().astype(int):
        if done == count:
            break
        try:
            png = cairosvg.svg2png(url=str(svgs[index]), output_width=64, output_height=64, background_color="white")
            image = Image.open(io.BytesIO(png)).convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
        except Exception:  # noqa: BLE001 - a clip art cairosvg cannot draw is skipped, the next one taken
            continue
        if np.asarray(image).std() < 8:  # blank or nearly so at this size
            continue
        image.save(folder / f"{done:05d}-{svgs[index].stem[:40]}.png")
        done += 1
    if done < count:
        raise ImagesUnavailable(f"only {done} of openclipart-svg's clip art rendered; pass --images DIR")
    return folder


def load_image_folder(folder: Path, count: int) -> tuple[torch.Tensor, list[str]]:
    """The first ``count`` images under ``folder`` (sorted paths), ``[count, 1, 16, 16]`` in [-1, 1]."""
    from endcredits.attribution.diffusion import images_from_bytes

    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < count:
        raise ImagesUnavailable(f"--images {folder} holds {len(paths)} PNG/JPEG images; the run needs {count}")
    paths = paths[:count]
    names = [str(p.relative_to(folder)) for p in paths]
    return images_from_bytes([p.read_bytes() for p in paths], channels=1, side=SIDE, what=names), names


def new_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=SCHEDULE_STEPS)  # type: ignore[no-untyped-call]


def train_ddpm(images: torch.Tensor, seed: int, steps: int) -> nn.Module:
    """A UNet from scratch on the denoising loss, by the image demo's recipe (``demo_images.train_ddpm``:
    AdamW, warmup then cosine decay to a tenth; seeded)."""
    return demo_train_ddpm(images, steps=steps, seed=seed)[0]


def train_ddpm_keeping(
    images: torch.Tensor, seed: int, steps: int, checkpoint_steps: Sequence[int]
) -> tuple[nn.Module, list[dict[str, torch.Tensor]]]:
    """``train_ddpm`` (the same model, bit for bit) and copies of its parameters after each of
    ``checkpoint_steps``, in step order."""
    kept: dict[int, dict[str, torch.Tensor]] = {}

    def keep(step: int, model: nn.Module) -> None:
        if step in checkpoint_steps:
            kept[step] = {name: value.detach().clone() for name, value in model.state_dict().items()}

    model = demo_train_ddpm(images, steps=steps, seed=seed, after_step=keep)[0]
    return model, [kept[step] for step in sorted(kept)]


@torch.no_grad()
def sample_images(model: nn.Module, n: int, seed: int) -> torch.Tensor:
    """``n`` images by DDPM ancestral sampling over the whole schedule, seeded, clipped to [-1, 1]."""
    scheduler = new_scheduler()
    scheduler.set_timesteps(SCHEDULE_STEPS)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 1, SIDE, SIDE), generator=generator)
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t).sample, t, x, generator=generator).prev_sample
    return x.clamp(-1.0, 1.0)


def _noisy(batch: dict[str, torch.Tensor], alphas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t for every (image, timestep) of an ``encode`` batch: ``[B, K, C, H, W]``, and the timesteps."""
    x0, noise, t = batch["images"], batch["noise"], batch["timesteps"]
    a = alphas[t].reshape(*t.shape, 1, 1, 1)
    return a.sqrt() * x0[:, None] + (1 - a).sqrt() * noise, t


@torch.no_grad()
def denoising_losses(model: nn.Module, batch: dict[str, torch.Tensor], alphas: torch.Tensor) -> npt.NDArray[np.float64]:
    """Each image's denoising loss (mean squared error of the predicted noise), averaged over its timesteps."""
    out = []
    for s in range(0, len(batch["images"]), 64):
        part = {key: value[s : s + 64] for key, value in batch.items()}
        noisy, t = _noisy(part, alphas)
        b, k = t.shape
        eps = model(noisy.reshape(b * k, *noisy.shape[2:]), t.reshape(b * k)).sample.reshape(part["noise"].shape)
        out.append(((eps - part["noise"]) ** 2).mean(dim=(2, 3, 4)).mean(dim=1))
    return torch.cat(out).numpy().astype(np.float64)


def _minus_loss_one(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    alphas: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: Any,
) -> torch.Tensor:
    """Minus one image's denoising loss at its timesteps ``[K]`` with its noise ``[K, C, H, W]``."""
    a = alphas[t].reshape(-1, 1, 1, 1)
    eps = torch.func.functional_call(model, params, (a.sqrt() * x0[None] + (1 - a).sqrt() * noise, t)).sample
    return -((eps - noise) ** 2).mean()


def traker_output(alphas: torch.Tensor) -> Any:
    """TRAKer's model output for the DDPM: minus the denoising loss at the batch's timesteps and noise; Q one."""
    from trak.modelout_functions import AbstractModelOutput

    class MinusDenoisingLoss(AbstractModelOutput):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()

        @staticmethod
        def get_output(
            model: nn.Module,
            weights: dict[str, torch.Tensor],
            buffers: dict[str, torch.Tensor],
            images: torch.Tensor,
            noise: torch.Tensor,
            timesteps: torch.Tensor,
        ) -> torch.Tensor:
            return _minus_loss_one(model, {**weights, **buffers}, alphas, images, noise, timesteps)

        def get_out_to_loss_grad(
            self, model: nn.Module, weights: Any, buffers: Any, batch: Sequence[torch.Tensor]
        ) -> torch.Tensor:
            return torch.ones(len(batch[0]), 1)

    return MinusDenoisingLoss()


def run_dtrak(
    models: Sequence[nn.Module],
    train: tuple[torch.Tensor, ...],
    targets: tuple[torch.Tensor, ...],
    alphas: torch.Tensor,
    *,
    k: int,
    lambdas: Sequence[float],
    seed: int = 0,
    batch_size: int = 16,
) -> MethodRun:
    """D-TRAK from its definition (Zheng et al., ICLR 2024, Eq. 7 with the output function ``||eps_theta||^2``):
    for each model, phi(x) = P^T grad_theta mean_t ||eps_theta(x_t, t)||_2^2 with P a seeded Gaussian
    [parameters, k] / sqrt(k); tau(x_target)_i = phi(x_i)^T (Phi^T Phi + lambda I)^-1 phi(x_target); averaged
    over the models. ``train``/``targets`` are ``(images [B, C, H, W], noise [B, K, C, H, W], timesteps [B, K])``."""

    started = time.perf_counter()
    kernels, phi_train, phi_target = [], [], []
    for m, model in enumerate(models):
        g_train = _squared_norm_gradients(model, alphas, train, batch_size)
        g_target = _squared_norm_gradients(model, alphas, targets, batch_size)
        generator = torch.Generator().manual_seed(seed * 1_000 + m)
        projected_train = torch.zeros((len(g_train), k), dtype=torch.float64)
        projected_target = torch.zeros((len(g_target), k), dtype=torch.float64)
        for s in range(0, g_train.shape[1], 8192):  # the projection matrix, one block of parameter rows at a time
            block = torch.randn((min(8192, g_train.shape[1] - s), k), generator=generator) / math.sqrt(k)
            projected_train += (g_train[:, s : s + block.shape[0]] @ block).double()
            projected_target += (g_target[:, s : s + block.shape[0]] @ block).double()
        phi_train.append(projected_train)
        phi_target.append(projected_target)
        kernels.append(projected_train.T @ projected_train)
    featurize_s = time.perf_counter() - started
    scores: dict[float, npt.NDArray[np.float64]] = {}
    score_s: dict[float, float] = {}
    for lam in lambdas:
        started = time.perf_counter()
        total = torch.zeros((len(train[0]), len(targets[0])), dtype=torch.float64)
        for kernel, p_train, p_target in zip(kernels, phi_train, phi_target, strict=True):
            ridge = kernel + lam * torch.eye(k, dtype=torch.float64)
            total += p_train @ torch.linalg.solve(ridge, p_target.T)
        scores[lam] = (total / len(models)).numpy()
        score_s[lam] = time.perf_counter() - started
    return MethodRun(scores, featurize_s, score_s, {"projector": "Gaussian, written here", "output": "||eps||^2"})


def _squared_norm_gradients(
    model: nn.Module, alphas: torch.Tensor, data: tuple[torch.Tensor, ...], batch_size: int
) -> torch.Tensor:
    """[B, parameters]: each image's gradient of mean_t ||eps_theta(x_t, t)||_2^2 (``torch.func``: vmap of grad)."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def squared_norm(p: dict[str, torch.Tensor], x0: torch.Tensor, noise: torch.Tensor, t: Any) -> torch.Tensor:
        a = alphas[t].reshape(-1, 1, 1, 1)
        noisy = a.sqrt() * x0[None] + (1 - a).sqrt() * noise
        eps = torch.func.functional_call(model, {**p, **buffers}, (noisy, t)).sample
        return (eps**2).sum(dim=(1, 2, 3)).mean()

    per_example = torch.func.vmap(torch.func.grad(squared_norm), in_dims=(None, 0, 0, 0))
    rows = []
    for s in range(0, len(data[0]), batch_size):
        grads = per_example(params, *(d[s : s + batch_size] for d in data))
        rows.append(torch.cat([g.reshape(len(g), -1) for g in grads.values()], dim=1))
    return torch.cat(rows)


class _DenoisingGaussNewton:
    """``u [B, K * S]`` whose gradients' outer products estimate the Gauss-Newton matrix of the denoising
    loss averaged over the batch's ``K`` timesteps: ``u_ks = sqrt(2 / (K D S)) <eps_theta(x_tk), v_ks>`` with
    ``S`` seeded Gaussian probes ``v`` per timestep (``E[v v^T] = I``), the same for every image."""

    def __init__(self, alphas_cumprod: torch.Tensor, probes: int = 4, seed: int = 5) -> None:
        self.alphas = alphas_cumprod.float()
        self.probes, self.seed = probes, seed

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0 = batch["images"]
        noisy, t = _noisy(batch, self.alphas.to(x0.device))
        k, d = t.shape[1], x0[0].numel()
        # NumPy draws the probes: vmap allows no torch random op inside the function.
        draws = np.random.default_rng(self.seed).standard_normal((k, self.probes, *x0.shape[1:]))
        v = torch.from_numpy(draws.astype(np.float32)).to(x0.device)
        scale = math.sqrt(2.0 / (k * d * self.probes))
        columns = []
        for step in range(k):
            eps: torch.Tensor = model(noisy[:, step], t[:, step]).sample
            columns.append(scale * torch.einsum("bchw,schw->bs", eps, v[step]))
        return torch.cat(columns, dim=1)


def timestep_normalized(
    roles: Sequence[str], norms: dict[str, Any] | None = None
) -> Callable[[Any, dict[str, torch.Tensor], int, str], Any]:
    """Features for ``run_endcredits``: for the ``roles`` given, the mean over the batch's timesteps of each
    timestep's feature row divided by its norm (Diffusion-ReTrac, Xie et al., 2024: the gradient norm varies
    greatly with the timestep, so a few timesteps dominate the sum); the other role's as usual. Each
    timestep's row is the task's on a batch of that one timestep (the same noise and t, sliced). ``norms``,
    when given, gets per role and model the median norm of each timestep's rows and the median share of
    the largest timestep in a row's summed norms."""

    def features(featurizer: Any, batch: dict[str, torch.Tensor], m: int, role: str) -> Any:
        if role not in roles:
            return featurizer.compute(batch, checkpoint_index=m, role=role)
        per_step = []
        for step in range(batch["timesteps"].shape[1]):
            one = {key: v if key == "images" else v[:, step : step + 1] for key, v in batch.items()}
            per_step.append(featurizer.compute(one, checkpoint_index=m, role=role).astype(np.float64))
        lengths = np.stack([np.linalg.norm(rows, axis=1) for rows in per_step])  # [timesteps, n]
        if norms is not None:
            norms[f"{role} {m}"] = {
                "median": np.round(np.median(lengths, axis=1), 4).tolist(),
                "largest_share": round(float(np.median(lengths.max(axis=0) / lengths.sum(axis=0))), 4),
            }
        units = [rows / np.maximum(n, 1e-30)[:, None] for rows, n in zip(per_step, lengths, strict=True)]
        return np.mean(units, axis=0).astype(np.float32)

    return features


def unit_rows(
    roles: Sequence[str], norms: dict[str, Any] | None = None
) -> Callable[[Any, dict[str, torch.Tensor], int, str], Any]:
    """Features for ``run_endcredits``: for the ``roles`` given, each row of ``Featurizer.compute`` divided by
    its norm (RelatIF's motivation, Barshan et al., 2020: examples with very large gradients top every
    output's ranking); the kernel is then built from the unit rows too. ``norms``, when given, gets per role
    and model the quartiles of the row norms."""

    def features(featurizer: Any, batch: dict[str, torch.Tensor], m: int, role: str) -> Any:
        rows = featurizer.compute(batch, checkpoint_index=m, role=role)
        if role not in roles:
            return rows
        lengths = np.linalg.norm(rows.astype(np.float64), axis=1)
        if norms is not None:
            norms[f"{role} {m}"] = np.round(np.quantile(lengths, [0.0, 0.25, 0.5, 0.75, 1.0]), 4).tolist()
        return (rows / np.maximum(lengths, 1e-30)[:, None]).astype(np.float32)

    return features


class SelfRelativeTRAKScorer(TRAKScorer):
    """``TRAKScorer`` with each training row of each model's ``Phi (K + lambda I)^-1`` divided by the square
    root of that example's self-influence ``phi_i^T (K + lambda I)^-1 phi_i`` (the same kernel and absolute
    lambda): RelatIF's self-influence normalization (Barshan et al., 2020), per model before the ensemble
    mean. ``self_influences`` keeps each model's."""

    def __init__(self, lambda_: float = 1.0, **kwargs: Any) -> None:
        super().__init__(lambda_, **kwargs)
        self.self_influences: list[npt.NDArray[np.float64]] = []

    def _precondition(
        self, phi: Any, kernel: npt.NDArray[np.float64] | None, row_scale: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float32]:
        out = super()._precondition(phi, kernel, row_scale)
        rows = np.asarray(phi, dtype=np.float64)
        influence = np.einsum("ij,ij->i", out.astype(np.float64), rows) / row_scale
        self.self_influences.append(influence)
        return (out / np.sqrt(np.maximum(influence, 1e-300))[:, None]).astype(np.float32)


def run_ddpm_method(
    method: str,
    members: Sequence[Any],
    train_images: torch.Tensor,
    target_images: torch.Tensor,
    *,
    timesteps: int,
    k: int,
    lambdas: Sequence[float],
    projection: str = "auto",
    batch_size: int = 100,
    work_timesteps: int | None = None,
) -> MethodRun:
    """``members``: ``DiffusionUNet``s loaded with ``load_unet``; every method sees the batches of
    ``DiffusionUNet.encode(timesteps, NOISE_SEED)``, the training images' with ``work_timesteps`` when given."""
    first = members[0]
    train_batch = first.encode(train_images, timesteps=work_timesteps or timesteps, seed=NOISE_SEED)
    target_batch = first.encode(target_images, timesteps=timesteps, seed=NOISE_SEED)
    relatif = {"endcredits-loss-unit", "endcredits-loss-relatif"}
    if method in ("endcredits", "endcredits-loss", "endcredits-loss-ggn", *TSNORM_ROLES, *relatif):
        measurement = "squared-norm" if method == "endcredits" else "loss"
        task = first.task([m.state() for m in members], measurement=measurement)
        ggn = method == "endcredits-loss-ggn"
        if ggn:
            task = dataclasses.replace(task, curvature=_DenoisingGaussNewton(first.alphas_cumprod))
        norms: dict[str, Any] = {}
        features = timestep_normalized(TSNORM_ROLES[method], norms) if method in TSNORM_ROLES else None
        run = run_endcredits(
            task,
            train_batch,
            target_batch,
            k=None if projection == "identity" else k,
            lambdas=lambdas,
            projection="gaussian" if ggn and projection == "auto" else projection,
            chunk_size=16,
            curvature=ggn,
            features=unit_rows(("train",), norms) if method == "endcredits-loss-unit" else features,
            trak=SelfRelativeTRAKScorer if method == "endcredits-loss-relatif" else TRAKScorer,
        )
        key = "row_norms" if method == "endcredits-loss-unit" else "timestep_norms"
        if method == "endcredits-loss-relatif":
            norms, key = {"train": "scores over sqrt(self-influence)"}, "relative"
        return dataclasses.replace(run, notes={**run.notes, key: norms}) if norms else run
    as_tuple = [tuple(b[key] for key in ("images", "noise", "timesteps")) for b in (train_batch, target_batch)]
    alphas = first.alphas_cumprod.float()
    if method == "dtrak":
        return run_dtrak([m.model for m in members], as_tuple[0], as_tuple[1], alphas, k=k, lambdas=lambdas)
    if method == "traker":
        job = PeerJob(
            [first.model],
            as_tuple[0],
            as_tuple[1],
            k=k,
            batch_size=batch_size,
            states=[m.model.state_dict() for m in members],
        )
        return run_traker(job, lambdas, traker_output(alphas))
    raise ValueError(f"method {method} is not implemented for image-ddpm (it has {', '.join(DDPM_METHODS)})")


def build_problem(args: argparse.Namespace, log: Callable[[str], None]) -> Problem:
    from endcredits.attribution.diffusion import load_unet

    n_train = args.ddpm_train
    n_held_report = max(1, args.tune_tests // 2)
    n_held_tune = max(1, args.tune_tests // 2)
    count = n_train + n_held_report + n_held_tune
    folder = args.images if args.images is not None else render_openclipart(args.cache_dir, count)
    images, names = load_image_folder(folder, count)
    train_images = images[:n_train]
    steps, timesteps = args.ddpm_steps, args.ddpm_timesteps
    models_dir = Path(args.cache_dir) / "lds" / "image-ddpm-models"  # rewritten by every run

    def saved_and_loaded(model: nn.Module, name: str) -> Any:
        """The operator's path: ``save_pretrained`` (UNet and scheduler), then ``load_unet``."""
        model.save_pretrained(models_dir / name / "unet")  # type: ignore[operator]
        new_scheduler().save_pretrained(models_dir / name / "scheduler")
        return load_unet(models_dir / name)

    checkpoint_steps = sorted({int(v) for v in (args.ddpm_checkpoints or "").split(",") if v} - {steps})

    def member(images_in: torch.Tensor, seed: int, name: str) -> tuple[Any, list[Any]]:
        """One trained model, loaded, and its intermediate checkpoints, each saved and loaded as well."""
        model, states = train_ddpm_keeping(images_in, seed, steps, checkpoint_steps)
        earlier = []
        for step, state in zip(checkpoint_steps, states, strict=True):
            at_step = copy.deepcopy(model)
            at_step.load_state_dict(state)
            earlier.append(saved_and_loaded(at_step, f"{name}-step{step}"))
        return saved_and_loaded(model, name), earlier

    started = time.perf_counter()
    full_members = [member(train_images, 10_000 + i, f"full-{i}") for i in range(args.models)]
    full = [final for final, _ in full_members]
    log(
        f"ensemble: {args.models} DDPMs on all {n_train} images, {steps} steps each, in"
        f" {time.perf_counter() - started:.1f} s ({sum(p.numel() for p in full[0].model.parameters())} parameters)"
    )
    halves = core.half_subsets(n_train, args.models, SEED_HALF_ENSEMBLE)
    half_members = [member(train_images[rows], 20_000 + i, f"half-{i}") for i, rows in enumerate(halves)]
    half = [final for final, _ in half_members]
    ensembles = {"full": full, "half": half}
    if checkpoint_steps:  # TRAK's ensemble over training checkpoints as well as over models
        ensembles["full+checkpoints"] = [m for final, earlier in full_members for m in [*earlier, final]]
        ensembles["half+checkpoints"] = [m for final, earlier in half_members for m in [*earlier, final]]
    generated = sample_images(full[0].model, n_held_report + n_held_tune, seed=7)
    held = images[n_train:]
    targets = torch.cat(
        [held[:n_held_report], generated[:n_held_report], held[n_held_report:], generated[n_held_report:]]
    )
    n_report = 2 * n_held_report
    report_cols, tune_cols = np.arange(n_report), np.arange(n_report, len(targets))
    target_batch = full[0].encode(targets, timesteps=timesteps, seed=NOISE_SEED)
    alphas = full[0].alphas_cumprod.float()

    def retrain(subsets: npt.NDArray[np.int64], seeds: Sequence[int]) -> npt.NDArray[np.float64]:
        rows = []
        for i, (subset, seed) in enumerate(zip(subsets, seeds, strict=True)):
            rows.append(-denoising_losses(train_ddpm(train_images[subset], seed, steps), target_batch, alphas))
            if (i + 1) % 8 == 0 or i + 1 == len(seeds):
                log(f"    retrained {i + 1}/{len(seeds)}")
        return np.stack(rows)

    key_parts = {
        "setting": "image-ddpm",
        "images": core.cache_key({"names": names, "pixels": images.numpy().round(4).tolist()}),
        "targets": core.cache_key({"generated": generated.numpy().round(4).tolist()}),
        "steps": steps,
        "timesteps": timesteps,
        "model": [list(CHANNELS), BATCH, LEARNING_RATE, SCHEDULE_STEPS, NOISE_SEED],
    }
    draws = core.ground_truth_draws(args, "image-ddpm", key_parts, n_train, retrain=retrain, log=log)
    reseeded = [draws[core.reseed_draw(r)][1][:, report_cols] for r in range(2, args.seeds_per_subset + 1)]

    def run_method(method: str, members: list[Any], lambdas: Sequence[float]) -> MethodRun:
        return run_ddpm_method(
            method,
            members,
            train_images,
            targets,
            timesteps=timesteps,
            k=args.k,
            lambdas=lambdas,
            projection=args.projection,
            batch_size=args.peer_batch_size,
            work_timesteps=getattr(args, "ddpm_work_timesteps", None),
        )

    def one_loss(kept: npt.NDArray[np.int64], seed: int, column: int) -> float:
        one = {key: value[column : column + 1] for key, value in target_batch.items()}
        return float(denoising_losses(train_ddpm(train_images[kept], seed, steps), one, alphas)[0])

    def counterfactual(
        scores: dict[str, npt.NDArray[np.float64]], tests: list[int], remove: int, seed: int
    ) -> dict[str, Any]:
        return counterfactual_by_retraining(
            n_train=n_train,
            scores=scores,
            tests=tests,
            remove=remove,
            seed=seed,
            loss_after_training=one_loss,
            log=log,
        )

    main_outputs = draws["main"][1]
    info = {
        **({"noise": core.noise_ceiling(main_outputs[:, report_cols], *reseeded)} if reseeded else {}),
        **_split_noise(main_outputs, reseeded, report_cols, n_held_report),
        "report_groups": {"held-out": list(range(n_held_report)), "generated": list(range(n_held_report, n_report))},
        "data": f"{folder}: the first {n_train} of {count} images (sorted paths), {SIDE}x{SIDE} grayscale",
        "train_examples": n_train,
        "targets": f"{n_held_report} held-out + {n_held_report} generated reported; {n_held_tune} + {n_held_tune}"
        " for tuning",
        "model": f"diffusers UNet2DModel, channels {CHANNELS}, no attention, DDPMScheduler {SCHEDULE_STEPS} steps",
        "recipe": {"steps": steps, "batch_size": BATCH, "lr": LEARNING_RATE},
        "output": f"minus the denoising loss over {timesteps} fixed timesteps with shared seeded noise",
        **(
            {"recipes_note": f"+checkpoints: each model's parameters after steps {checkpoint_steps} and at the end"}
            if checkpoint_steps
            else {}
        ),
    }
    return Problem(
        setting="image-ddpm",
        n_train=n_train,
        report_cols=report_cols,
        tune_cols=tune_cols,
        main_masks=draws["main"][0],
        main_outputs=main_outputs[:, report_cols],
        main_outputs_reseeded=reseeded,
        tune_masks=draws["tune"][0],
        tune_outputs=draws["tune"][1][:, tune_cols],
        ensembles=ensembles,
        run_method=RunMemo(run_method),
        counterfactual=counterfactual,
        info=info,
    )


def _split_noise(
    outputs: npt.NDArray[np.float64],
    reseeded: Sequence[npt.NDArray[np.float64]],
    report_cols: npt.NDArray[np.int64],
    n_held: int,
) -> dict[str, Any]:
    """The noise ceiling of the held-out and of the generated test images apart."""
    if not reseeded:
        return {}
    held, generated = report_cols[:n_held], report_cols[n_held:]
    return {
        "noise_held_out": core.noise_ceiling(outputs[:, held], *(r[:, :n_held] for r in reseeded)),
        "noise_generated": core.noise_ceiling(outputs[:, generated], *(r[:, n_held:] for r in reseeded)),
    }
