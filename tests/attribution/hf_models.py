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
