"""Tiny Hugging Face models built here from a config (never downloaded), saved as operators save them."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers

ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:|/\n"


def char_tokenizer() -> object:
    """A character-level tokenizer: id 0 pads (and stands for unknown characters)."""
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(["<pad>", *dict.fromkeys(ALPHABET)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<pad>")


def save_gpt2(folder: Path, *, seed: int = 0) -> Path:
    """A 2-layer GPT-2 (Conv1D layers, head tied to the embedding) and its tokenizer, in ``folder``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    vocab = len(ALPHABET) + 1
    config = GPT2Config(
        n_layer=2, n_head=2, n_embd=32, vocab_size=vocab, n_positions=64, bos_token_id=0, eos_token_id=0, pad_token_id=0
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def save_llama(folder: Path, *, seed: int = 0) -> Path:
    """A 2-layer Llama-style model (RMSNorm, rotary positions, gated MLP, tied head) and its tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=len(ALPHABET) + 1,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def save_unet(folder: Path, *, seed: int = 0, side: int = 16, channels: int = 1) -> Path:
    """A small DDPM UNet (convolutions, group norms, a time embedding, attention in its middle block) and
    its 100-step scheduler, saved as a pipeline folder (``unet/``, ``scheduler/``)."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=side,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    unet.save_pretrained(folder / "unet")
    DDPMScheduler(num_train_timesteps=100).save_pretrained(folder / "scheduler")
    return folder


def train_gpt2(folder: Path, texts: list[str], *, steps: int = 20, seed: int = 0) -> Path:
    """A few Adam steps of next-character prediction on ``texts``, saved back into ``folder``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(folder)
    return folder


def train_unet(folder: Path, images: torch.Tensor, *, steps: int = 20, seed: int = 0) -> Path:
    """A few Adam steps of the DDPM denoising loss on ``images`` ``[B, C, H, W]`` in [-1, 1], saved back."""
    from diffusers import DDPMScheduler, UNet2DModel

    generator = torch.Generator().manual_seed(seed)
    unet = UNet2DModel.from_pretrained(folder / "unet", local_files_only=True, low_cpu_mem_usage=False)
    scheduler = DDPMScheduler.from_pretrained(folder / "scheduler", local_files_only=True)
    optimizer = torch.optim.Adam(unet.parameters(), lr=1e-3)
    unet.train()
    for _ in range(steps):
        noise = torch.randn(images.shape, generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(images),), generator=generator)
        loss = ((unet(scheduler.add_noise(images, noise, t), t).sample - noise) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    unet.save_pretrained(folder / "unet")
    return folder
