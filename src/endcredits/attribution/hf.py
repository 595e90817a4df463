"""Hugging Face causal language models (GPT-2, Llama-style: whatever ``AutoModelForCausalLM`` loads) as
attribution tasks, from a local ``save_pretrained`` folder (never the hub).

A plain forward call does not give the engine what it needs, so the task does three things for it:
- it differentiates the logits (the model returns an output object);
- it sees each parameter once: a tied head and embedding are one parameter (``task.canonical_state``);
- nothing reads tensor values under ``vmap``: the model runs with eager attention, no cache and an
  all-ones attention mask. A causal model never attends to the padding at the end of a text, and the
  loss masks the padded targets, so transformers' padding checks have nothing to look at.

Training texts are differentiated through their summed log-likelihood (minus their loss), outputs
through their mean log-likelihood per token, as for the demo's character model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from endcredits.attribution.task import AttributionTask, Batch, canonical_state, checkpoint_sha256
from endcredits.errors import LimitExceededError, ManifestError, ValidationError

FORMAT = "endcredits.hf-causal-lm/1"
TOKENS_MAX = 65_536
"""Longest text, in tokens, a batch may hold."""


@dataclass(frozen=True)
class CausalLM:
    """A causal LM and its tokenizer, ready to attribute."""

    model: nn.Module
    tokenizer: Any

    def state(self) -> dict[str, torch.Tensor]:
        """The model's parameters (each tied one once) and buffers: the checkpoint the task differentiates."""
        return canonical_state(self.model, self.model.state_dict())

    def checksum(self) -> str:
        """SHA-256 of the model: its config and its parameters (``checkpoint_sha256``), whatever the files."""
        model: Any = self.model  # a transformers model: nn.Module's typing does not know its config
        config = json.dumps(model.config.to_diff_dict(), sort_keys=True, default=str)
        digest = hashlib.sha256(FORMAT.encode())
        digest.update(config.encode())
        digest.update(checkpoint_sha256(self.state()).encode())
        return digest.hexdigest()

    def encode(self, texts: Sequence[str], *, length_max: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch ``(ids [B, T], mask [B, T - 1])`` of each text's first ``length_max`` tokens, padded at the
        end; ``mask`` is 1 where a next token is predicted."""
        if not 2 <= length_max <= TOKENS_MAX:
            raise ValidationError(f"length_max {length_max} must be in [2, {TOKENS_MAX}] tokens")
        encoded = [list(self.tokenizer(text, add_special_tokens=False)["input_ids"])[:length_max] for text in texts]
        short = [i for i, ids in enumerate(encoded) if len(ids) < 2]
        if short:
            raise ValidationError(f"texts {short[:10]} have fewer than 2 tokens; a loss needs one prediction")
        if len(texts) * length_max > 1 << 31:
            raise LimitExceededError(f"{len(texts)} texts x {length_max} tokens is too many; encode them in shards")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        length = max(len(ids) for ids in encoded)
        batch = torch.full((len(texts), length), int(pad), dtype=torch.long)
        mask = torch.zeros((len(texts), length - 1), dtype=torch.float32)
        for row, ids in enumerate(encoded):
            batch[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids) - 1] = 1.0
        return batch, mask

    def task(self, checkpoints: Sequence[Mapping[str, torch.Tensor]] | None = None) -> AttributionTask:
        """The attribution task over ``checkpoints`` (default: the loaded parameters)."""
        return AttributionTask(
            model=self.model,
            checkpoints=list(checkpoints) if checkpoints is not None else [self.state()],
            train_output=causal_lm_log_likelihood_sum,
            measurement=causal_lm_log_likelihood_mean,
        )


def prepare(model: nn.Module) -> nn.Module:
    """Put a transformers model in the state the engine differentiates: eval mode, eager attention, no cache."""
    config = getattr(model, "config", None)
    if config is None:
        raise ValidationError(f"{type(model).__name__} has no config: it is not a transformers model")
    config.use_cache = False
    set_attention = getattr(model, "set_attn_implementation", None)
    if set_attention is not None:
        set_attention("eager")
    else:
        config._attn_implementation = "eager"
    return model.eval()


def load_causal_lm(folder: Path) -> CausalLM:
    """The causal LM and tokenizer an operator saved with ``save_pretrained`` into ``folder``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call] # its bars would interleave with the CLI's
    if not (folder / "config.json").is_file():
        raise ManifestError(f"{folder} is not a save_pretrained folder (no config.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ManifestError(f"{folder} holds no causal LM with its tokenizer: {first}") from None
    return CausalLM(prepare(model), tokenizer)


def _log_likelihood(model: nn.Module, batch: Batch, *, mean: bool) -> torch.Tensor:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValidationError("a causal-LM batch is (ids [B, T], mask [B, T - 1]); build it with CausalLM.encode")
    ids, mask = batch
    inputs = ids[:, :-1]
    logits: torch.Tensor = model(input_ids=inputs, attention_mask=torch.ones_like(inputs)).logits
    per_token = -F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    total = (per_token * mask).sum(dim=1)
    return total / mask.sum(dim=1).clamp_min(1.0) if mean else total


def causal_lm_log_likelihood_sum(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Log-likelihood of each text (sum over its predicted tokens): minus its training loss."""
    return _log_likelihood(model, batch, mean=False)


def causal_lm_log_likelihood_mean(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean log-likelihood per predicted token of each text."""
    return _log_likelihood(model, batch, mean=True)
