"""``endcredits demo --corpus openclipart``: the whole flow on images, the Open Clip Art drawings.

A seeded sample of the drawings in Debian's ``openclipart-svg`` (``logos/`` left out: trademarks, not clip
art) are the works, registered with the creators their RDF metadata names (``import_svg_drawings``). The
eight most credited creators join as people, most verified by the guild, and one opts out of generative
training, as in the ABC demo. The manifest's drawings, rendered from their stored SVG bytes to 16x16
grayscale (``images_from_bytes``, the same function the attribution encodes them with), train a small DDPM
(a ``diffusers`` UNet2DModel and its 100-step DDPMScheduler) on CPU for a fixed number of steps. The
checkpoint is saved in the data directory and bound to the manifest; the images it generates (PNG bytes,
kept so statements show them) earn revenue and are attributed to the drawings with TRAK under the
diffusion measurement (minus the denoising loss at fixed timesteps and noise). The money half is the ABC demo's:
two accrual batches, escrow, a late verification, a payout file settled by a simulated bank, a statement,
``verify`` and the conservation check. The terms are the ABC demo's too, through the same functions: the
operator trusts the illustrators' guild and its members inherit its terms (``apply_guild_terms``), one
drawing of the most credited creator is also served under an RSL licence and a ``Content-Usage`` header
(``import_demo_licence``: a fee per training use, which recording the training run posts, and a floor per
output), and the model's EU AI Act training summary is written (``eu_report``).

Every drawing in the package is licensed public domain, so no licence leaves the manifest here; the
opt-out does.
"""

from __future__ import annotations

import io
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from endcredits.attribution.diffusion import DiffusionUNet, images_from_bytes
from endcredits.attribution.models import UNetModel, load_model
from endcredits.attribution.pipeline import attribute_manifest, checkpoint_path, manifest_contents
from endcredits.attribution.settings import AttributionSettings
from endcredits.demo import (
    DEMO_AGREEMENT,
    DemoGuild,
    DemoLicence,
    DemoRun,
    DemoSummary,
    Settling,
    StepProgress,
    Trained,
    bind_checkpoint,
    credit_counts,
    demo_key,
    demo_manifest,
    demo_provider,
    import_demo_licence,
    join_and_agree,
    priced_outputs,
    restore_key_env,
    settle,
)
from endcredits.errors import ValidationError
from endcredits.interop.svg import SvgImportReport, import_svg_drawings, read_svg_metadata
from endcredits.manifest.records import ManifestRecord
from endcredits.registry.private import KEY_FILE_ENV
from endcredits.royalties import Agreement
from endcredits.royalties.output_contents import record_output_contents
from endcredits.royalties.usage import OutputIn
from endcredits.store.engine import init_store

OPENCLIPART_DIR = Path("/usr/share/openclipart/svg")
"""Where Debian's ``openclipart-svg`` puts the drawings (``apt-get install openclipart-svg``)."""
LEFT_OUT_FOLDERS = ("logos",)
MODEL_ID = "openclipart-ddpm-v1"
MODEL_KIND = "diffusers-unet"
SIDE = 16
CHANNELS = (16, 32)
SCHEDULE_STEPS = 100
BATCH = 16
LEARNING_RATE = 2e-3
WORKS_DEFAULT = 300
TRAIN_STEPS_DEFAULT = 1_500
WORKS_MAX = 10_000

IMAGE_AGREEMENT = (
    DEMO_AGREEMENT.partition("[role_weights]")[0]
    .replace("# The demo's", "# The image demo's")
    .replace('id = "abc-demo"', 'id = "openclipart-demo"')
    .replace("(none in this corpus: credits take all)", "(dc:rights: often the creator too)")
    + '[role_weights]\n"cawg:creator" = 1              # drew it (dc:creator)\n'
)
"""The ABC demo's terms, with the drawing's one role."""
DRAWING_LICENCE = DemoLicence("https://drawings.example/clipart/", "image/svg+xml", ".svg", "drawing", "creator")
"""Where the licensed drawing is served, as the creator's own site would serve it."""
IMAGE_PROVIDER = demo_provider(
    f"{MODEL_ID} ({SIDE}x{SIDE} grayscale DDPM of Open Clip Art drawings)",
    "the Open Clip Art drawings in Debian's openclipart-svg package",
)


def corpus_files(corpus_dir: Path, works_n: int, seed: int) -> list[Path]:
    """A seeded sample of ``works_n`` SVG files under ``corpus_dir`` (``logos/`` left out), in path order."""
    if not 1 <= works_n <= WORKS_MAX:
        raise ValidationError(f"works {works_n} must be in [1, {WORKS_MAX}]")
    if not corpus_dir.is_dir():
        raise ValidationError(
            f"{corpus_dir} is not a folder of SVG drawings: apt-get install openclipart-svg, or name one"
        )
    files = sorted(
        p for p in corpus_dir.rglob("*.svg") if not set(p.relative_to(corpus_dir).parts) & set(LEFT_OUT_FOLDERS)
    )
    if not files:
        raise ValidationError(f"{corpus_dir} holds no .svg files")
    return sorted(random.Random(seed).sample(files, min(works_n, len(files))))


def _creators(files: list[Path], corpus_dir: Path, refused: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The creators of each registered drawing, as its metadata names them."""
    skipped = {line.split(": ", 1)[0] for line in refused}
    out = []
    for path in files:
        if str(path.relative_to(corpus_dir)) not in skipped:
            out.append(read_svg_metadata(path.read_bytes(), where=str(path)).creators)
    return out


def _register(
    run: DemoRun, files: list[Path], corpus_dir: Path
) -> tuple[SvgImportReport, list[int], DemoGuild, Agreement]:
    report = import_svg_drawings(run.store, files, root=corpus_dir)
    run.progress(
        f"registered {report.works} drawings, {report.credits} credits, {report.names} credited names; "
        f"{report.linked} look like one registered before and are linked to it; "
        f"{len(report.refused)} could not be read or rendered"
    )
    counts = credit_counts(_creators(files, corpus_dir, report.refused))
    joined, guild, agreement = join_and_agree(run, counts, IMAGE_AGREEMENT, "illustrators")
    run.lap("register")
    return report, joined, guild, agreement


def _manifest(run: DemoRun) -> ManifestRecord:
    description = f"{SIDE}x{SIDE} grayscale DDPM of Open Clip Art drawings (demo)"
    manifest = demo_manifest(run, MODEL_ID, description, "one opt-out")
    run.lap("manifest")
    return manifest


def new_unet(seed: int) -> nn.Module:
    """The demo's UNet: two down and two up blocks of 16 and 32 channels, one layer each, no attention."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet: Any = UNet2DModel(  # type: ignore[no-untyped-call]
        sample_size=SIDE,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=CHANNELS,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        add_attention=False,
    )
    module: nn.Module = unet
    return module


def train_ddpm(
    images: torch.Tensor,
    *,
    steps: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    after_step: Callable[[int, nn.Module], None] | None = None,
) -> tuple[nn.Module, Any, float]:
    """Exactly ``steps`` AdamW steps of the denoising loss on ``images`` ``[B, 1, SIDE, SIDE]`` in [-1, 1]
    (batches of ``BATCH``, warmup then cosine decay to a tenth; every draw seeded): the UNet, its
    scheduler, and the mean loss of the last tenth of the steps. ``after_step(step, model)`` is called after
    each step (1-based), e.g. to keep intermediate checkpoints; it must not change the model."""
    from diffusers import DDPMScheduler

    model = new_unet(seed)
    scheduler: Any = DDPMScheduler(num_train_timesteps=SCHEDULE_STEPS)  # type: ignore[no-untyped-call]
    alphas = scheduler.alphas_cumprod.float()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    warmup = max(1, steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.45 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    tail = max(1, steps // 10)
    losses: list[float] = []
    model.train()
    for i in range(steps):
        x0 = images[torch.randint(0, len(images), (BATCH,), generator=generator)]
        t = torch.randint(0, SCHEDULE_STEPS, (BATCH,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        a = alphas[t].reshape(-1, 1, 1, 1)
        loss = nn.functional.mse_loss(model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        lr_schedule.step()
        if after_step is not None:
            after_step(i + 1, model)
        if i >= steps - tail:
            losses.append(loss.item())
        if progress is not None and (i + 1) % 10 == 0:
            progress(i + 1)
    return model.eval(), scheduler, float(np.mean(losses))


def _train(
    run: DemoRun, manifest: ManifestRecord, train_steps: int, seed: int, agreement: Agreement
) -> tuple[UNetModel, Any, Trained]:
    """Train on exactly the manifest's drawings (rendered from their stored SVG bytes), save the pipeline
    folder, load it back as the attribution will, and bind its checksum to the manifest (recording the run
    under ``agreement`` posts its training fees)."""
    images = images_from_bytes(
        manifest_contents(run.store, manifest),
        channels=1,
        side=SIDE,
        what=[f"work {w}" for w in manifest.included],
    )
    run.progress(f"training a {SIDE}x{SIDE} DDPM on {len(images)} drawings for {train_steps} steps on CPU…")
    started = time.monotonic()
    step = run.step
    unet, scheduler, loss = train_ddpm(
        images,
        steps=train_steps,
        seed=seed,
        progress=(lambda i: step("training", i, train_steps)) if step else None,
    )
    folder = checkpoint_path(run.store, MODEL_ID, MODEL_KIND)
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")  # type: ignore[operator]
    scheduler.save_pretrained(folder / "scheduler")
    model = load_model(folder, MODEL_KIND)
    if not isinstance(model, UNetModel):
        raise ValidationError(f"{folder} did not load as a diffusers UNet")
    checksum = model.checksum()
    bind_checkpoint(run, manifest, checksum, seed, started, agreement)
    run.progress(f"trained {train_steps} steps, loss {loss:.3f}; checkpoint sha256 {checksum[:16]}…")
    run.lap("train")
    return model, scheduler, Trained(checksum, train_steps, loss)


@torch.no_grad()
def sample_pngs(unet: DiffusionUNet, scheduler: Any, n: int, seed: int) -> list[bytes]:
    """``n`` images drawn by DDPM ancestral sampling over the whole schedule (seeded), as grayscale PNGs of
    the model's side."""
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((n, unet.channels, unet.side, unet.side), generator=generator)
    scheduler.set_timesteps(len(scheduler.alphas_cumprod))
    for t in scheduler.timesteps:
        eps = unet.model(x, t).sample
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    out = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image[0], mode="L").save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def _outputs(run: DemoRun, model: UNetModel, scheduler: Any, outputs_n: int, seed: int) -> list[tuple[OutputIn, bytes]]:
    """Generated images that earn 0.05 .. 3.00 EUR each, over two months; kept so statements show them."""
    pngs = sample_pngs(model.unet, scheduler, outputs_n, seed + 1)
    outs = priced_outputs(MODEL_ID, outputs_n, seed)
    record_output_contents(run.store, [(o.output_id, png) for o, png in zip(outs, pngs, strict=True)])
    run.lap("generate")
    return list(zip(outs, pngs, strict=True))


def run_image_demo(
    data_dir: Path | None,
    db_url: str | None,
    *,
    corpus_dir: Path = OPENCLIPART_DIR,
    works_n: int = WORKS_DEFAULT,
    outputs_n: int = 60,
    train_steps: int = TRAIN_STEPS_DEFAULT,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _m: None,
    step: StepProgress | None = None,
) -> DemoSummary:
    """Run the image flow into ``data_dir`` (or ``db_url``) and return its summary (the ABC demo's shape).

    The sample, the training draws and the generated images are seeded and the model trains for exactly
    ``train_steps`` steps, so the same inputs give the same checkpoint and split on one machine.
    """
    files = corpus_files(corpus_dir, works_n, seed)
    torch.manual_seed(seed)
    run = DemoRun(init_store(data_dir, db_url), progress, step)
    key_env_before = os.environ.get(KEY_FILE_ENV)
    try:
        progress(f"store: {run.store.backend} in {run.store.data_dir}")
        demo_key(run)
        report, joined, guild, agreement = _register(run, files, corpus_dir)
        manifest = _manifest(run)
        licence = import_demo_licence(run, manifest, joined[0], DRAWING_LICENCE) if joined else {}
        model, scheduler, trained = _train(run, manifest, train_steps, seed, agreement)
        generated = _outputs(run, model, scheduler, outputs_n, seed)
        progress(f"generated {outputs_n} images; attributing each to {len(manifest.included)} training drawings…")
        att = attribute_manifest(
            run.store,
            manifest,
            model,
            [(o.output_id, png) for o, png in generated],
            settings=AttributionSettings(seed=seed),
            progress=(lambda d, t: step("featurizing training drawings", d, t)) if step else None,
        )
        run.lap("attribute")
        settling = Settling(
            manifest,
            agreement,
            [o for o, _ in generated],
            att,
            joined,
            guild,
            report.works,
            report.names,
            trained,
            corpus="openclipart",
            work_noun="drawings",
            licence=licence,
            provider=IMAGE_PROVIDER,
        )
        return settle(run, settling, db_url)
    finally:
        run.store.dispose()
        restore_key_env(run.key_file, key_env_before)
