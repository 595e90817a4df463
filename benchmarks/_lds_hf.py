"""The ``hf-gpt2`` setting of the LDS benchmark: a tiny Hugging Face GPT-2 on ABC tunes, attributed the way
an operator's model is, through ``endcredits.attribution.hf``.

Training works: the first ``--tunes`` tunes of O'Neill's Music of Ireland in the music21 corpus (as in
``abc-lm``), each cut to ``LENGTH_MAX`` characters. The model is ``GPT2LMHeadModel`` from a small
``GPT2Config`` built here (2 layers, 2 heads, width 32, head tied to the embedding; nothing downloaded), with
a character-level tokenizer built here from the characters of every tune (``tokenizers`` WordLevel, id 0
pads), trained from scratch for ``--lm-steps`` steps on random 64-token windows, batch 32. Every model is
saved with ``save_pretrained`` and attributed from that folder: ``load_causal_lm``, ``CausalLM.encode``,
``CausalLM.task`` over the ensemble's ``CausalLM.state()``s, then the ``Featurizer`` and ``TRAKScorer``
(``_lds_methods.run_endcredits``) as ``abc-lm`` does for the demo's model.

Outputs: held-out tunes (the next ones in the collection) and tunes sampled from a model trained on all the
works; the measurement is the mean log-likelihood per token (minus the loss), with the one tokenizer every
model shares. Ensembles: "full" (E seeds on all the tunes) and "half" (E models each on a random half).

The peers ``traker`` and ``dattri`` attribute the same models at ``--k`` with the same model outputs as for
``abc-lm`` (each training tune's summed log-likelihood; the targets' mean per token for dattri, their sum for
traker: a positive factor per target, which leaves the LDS unchanged), on the models' full state dicts.
"""

from __future__ import annotations

import argparse
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
from _lds_data import abc_tunes
from _lds_methods import MethodRun, PeerJob, run_endcredits, run_peer_log_likelihood
from _lds_retrain import RunMemo, counterfactual_by_retraining
from torch import nn

HF_METHODS = ("endcredits", "traker", "dattri")
LENGTH_MAX = 256
WINDOW = 64
BATCH = 32
WIDTH = 32
LAYERS = 2
HEADS = 2
LEARNING_RATE = 3e-3
PAD = "<pad>"


def char_tokenizer(texts: Sequence[str]) -> Any:
    """A character-level fast tokenizer over the characters of ``texts``; id 0 pads (and stands for any
    other character)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("".join(texts)))
    vocab = {c: i for i, c in enumerate([PAD, *chars])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character, newlines too
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=PAD)


def new_gpt2(vocab_size: int, seed: int) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=LAYERS,
        n_head=HEADS,
        n_embd=WIDTH,
        vocab_size=vocab_size,
        n_positions=LENGTH_MAX,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return GPT2LMHeadModel(config)


def train_gpt2(corpus_ids: torch.Tensor, vocab_size: int, seed: int, steps: int) -> nn.Module:
    """GPT-2 from scratch on random ``WINDOW``-token slices of ``corpus_ids`` (the tunes joined by newlines):
    AdamW, warmup then cosine decay to a tenth, gradients clipped at 1; seeded, so a retrain repeats."""
    model = new_gpt2(vocab_size, seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = max(1, steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.45 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    offsets = torch.arange(WINDOW + 1)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(corpus_ids) - WINDOW, (BATCH,), generator=generator)
        batch = corpus_ids[starts[:, None] + offsets]
        logits = model(input_ids=batch[:, :-1]).logits
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    return model.eval()


@torch.no_grad()
def sample_tunes(model: nn.Module, tokenizer: Any, *, n: int, seed: int, prompt: str, length_max: int) -> list[str]:
    """``n`` tunes sampled at temperature 1 after ``prompt``, each ending before its first blank line."""
    vocab = tokenizer.get_vocab()
    chars = {i: c for c, i in vocab.items()}
    newline = vocab.get("\n")
    generator = torch.Generator().manual_seed(seed)
    ids = torch.tensor([[vocab[c] for c in prompt]] * n, dtype=torch.long)
    for _ in range(length_max - len(prompt)):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1]
        logits[:, 0] = -math.inf  # never the padding id
        ids = torch.cat([ids, torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)], dim=1)
    out = []
    for row in ids.tolist():
        text = "".join(chars[i] for i in row)
        end = text.find("\n\n", len(prompt)) if newline is not None else -1
        text = text[:end] if end >= 0 else text
        out.append(text if len(text) >= 8 else text + "\n" * (8 - len(text)))
    return out


def example_log_likelihood(
    model: nn.Module, params: dict[str, torch.Tensor], example: tuple[torch.Tensor, ...], *, mean: bool = False
) -> torch.Tensor:
    """One ``CausalLM.encode`` row ``(ids [T], mask [T - 1])`` under ``params``: its summed log-likelihood, or
    the mean per predicted token; for the peers' per-example ``vmap``."""
    ids, mask = example
    inputs = ids[None, :-1]
    out = torch.func.functional_call(
        model, params, (), {"input_ids": inputs, "attention_mask": torch.ones_like(inputs)}
    )
    per_token = -nn.functional.cross_entropy(out.logits[0], ids[1:], reduction="none")
    total = (per_token * mask).sum()
    return total / mask.sum().clamp_min(1.0) if mean else total


def run_hf_method(
    method: str,
    members: Sequence[Any],
    train_texts: Sequence[str],
    target_texts: Sequence[str],
    *,
    k: int,
    lambdas: Sequence[float],
    projection: str = "auto",
    batch_size: int = 100,
) -> MethodRun:
    """``members``: ``CausalLM``s loaded with ``load_causal_lm``. endcredits: ``CausalLM.task`` over their
    states; the peers: TRAK over the same models' state dicts at projection dimension ``k``."""
    first = members[0]
    train_batch = first.encode(train_texts, length_max=LENGTH_MAX)
    target_batch = first.encode(target_texts, length_max=LENGTH_MAX)
    if method == "endcredits":
        task = first.task([m.state() for m in members])
        return run_endcredits(
            task,
            train_batch,
            target_batch,
            k=None if projection == "identity" else k,
            lambdas=lambdas,
            projection=projection,
            chunk_size=16,
        )
    job = PeerJob(
        [first.model],
        train_batch,
        target_batch,
        k=k,
        batch_size=batch_size,
        states=[m.model.state_dict() for m in members],
    )
    run = run_peer_log_likelihood(method, job, lambdas, example_log_likelihood)
    if run is not None:
        return run
    raise ValueError(f"method {method} is not implemented for hf-gpt2 (it has {', '.join(HF_METHODS)})")


def build_problem(args: argparse.Namespace, log: Callable[[str], None]) -> Problem:  # noqa: C901 - one setting
    from transformers.utils import logging as hf_logging

    from endcredits.attribution.hf import causal_lm_log_likelihood_mean, load_causal_lm

    hf_logging.set_verbosity_error()  # its notes on the small config and its progress bars would bury the log
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    n_train = args.tunes
    n_held_report = max(1, args.tune_tests // 2)
    n_held_tune = max(1, args.tune_tests // 2)
    tunes = abc_tunes(n_train + n_held_report + n_held_tune, length_max=LENGTH_MAX)
    train_texts = tunes[:n_train]
    held_report = tunes[n_train : n_train + n_held_report]
    held_tune = tunes[n_train + n_held_report :]
    tokenizer = char_tokenizer(tunes)
    vocab_size = len(tokenizer.get_vocab())
    steps = args.lm_steps

    def corpus(indices: Sequence[int]) -> torch.Tensor:
        text = "\n".join(train_texts[j] for j in indices)
        return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)

    def train(indices: Sequence[int], seed: int) -> nn.Module:
        return train_gpt2(corpus(indices), vocab_size, seed, steps)

    folder = Path(args.cache_dir) / "lds" / "hf-gpt2-models"  # rewritten by every run

    def saved_and_loaded(model: nn.Module, name: str) -> Any:
        """The operator's path: ``save_pretrained`` (model and tokenizer), then ``load_causal_lm``."""
        model.save_pretrained(folder / name)  # type: ignore[operator]
        tokenizer.save_pretrained(folder / name)
        return load_causal_lm(folder / name)

    started = time.perf_counter()
    everything = list(range(n_train))
    full = [saved_and_loaded(train(everything, 10_000 + i), f"full-{i}") for i in range(args.models)]
    log(
        f"ensemble: {args.models} GPT-2s on all {n_train} tunes, {steps} steps each, in"
        f" {time.perf_counter() - started:.1f} s ({sum(p.numel() for p in full[0].model.parameters())} parameters)"
    )
    started = time.perf_counter()
    halves = core.half_subsets(n_train, args.models, SEED_HALF_ENSEMBLE)
    half = [saved_and_loaded(train(rows.tolist(), 20_000 + i), f"half-{i}") for i, rows in enumerate(halves)]
    log(f"ensemble: {args.models} GPT-2s on random halves in {time.perf_counter() - started:.1f} s")
    generated = sample_tunes(
        full[0].model, tokenizer, n=n_held_report + n_held_tune, seed=7, prompt="X:1\n", length_max=200
    )
    targets = held_report + generated[:n_held_report] + held_tune + generated[n_held_report:]
    n_report = 2 * n_held_report
    report_cols = np.arange(n_report)
    tune_cols = np.arange(n_report, len(targets))
    encoder = full[0]

    @torch.no_grad()
    def log_likelihoods(model: nn.Module, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        out = [
            causal_lm_log_likelihood_mean(model, encoder.encode(texts[s : s + 32], length_max=LENGTH_MAX))
            for s in range(0, len(texts), 32)
        ]
        return torch.cat(out).numpy().astype(np.float64)

    def retrain(subsets: npt.NDArray[np.int64], seeds: Sequence[int]) -> npt.NDArray[np.float64]:
        rows = []
        for i, (subset, seed) in enumerate(zip(subsets, seeds, strict=True)):
            rows.append(log_likelihoods(train(subset.tolist(), seed), targets))
            if (i + 1) % 8 == 0 or i + 1 == len(seeds):
                log(f"    retrained {i + 1}/{len(seeds)}")
        return np.stack(rows)

    key_parts = {
        "setting": "hf-gpt2",
        "texts": core.cache_key({"train": train_texts, "targets": targets}),
        "steps": steps,
        "window": WINDOW,
        "batch": BATCH,
        "model": [LAYERS, HEADS, WIDTH, LEARNING_RATE, LENGTH_MAX],
    }
    draws = core.ground_truth_draws(args, "hf-gpt2", key_parts, n_train, retrain=retrain, log=log)
    reseeded = [draws[core.reseed_draw(r)][1][:, report_cols] for r in range(2, args.seeds_per_subset + 1)]

    def run_method(method: str, members: list[Any], lambdas: Sequence[float]) -> MethodRun:
        return run_hf_method(
            method,
            members,
            train_texts,
            targets,
            k=args.k,
            lambdas=lambdas,
            projection=args.projection,
            batch_size=args.peer_batch_size,
        )

    def counterfactual(
        scores: dict[str, npt.NDArray[np.float64]], tests: list[int], remove: int, seed: int
    ) -> dict[str, Any]:
        return counterfactual_by_retraining(
            n_train=n_train,
            scores=scores,
            tests=tests,
            remove=remove,
            seed=seed,
            loss_after_training=lambda kept, s, t: -float(log_likelihoods(train(kept.tolist(), s), [targets[t]])[0]),
            log=log,
        )

    info = {
        **({"noise": core.noise_ceiling(draws["main"][1][:, report_cols], *reseeded)} if reseeded else {}),
        "data": f"music21 ABC corpus, oneills1850, first {n_train} tunes (cut to {LENGTH_MAX} characters)",
        "train_examples": n_train,
        "targets": f"{n_held_report} held-out + {n_held_report} generated reported; {n_held_tune} + {n_held_tune}"
        " for tuning",
        "report_groups": {"held-out": list(range(n_held_report)), "generated": list(range(n_held_report, n_report))},
        "model": f"transformers GPT2LMHeadModel, {LAYERS} layers, {HEADS} heads, width {WIDTH}, character"
        f" tokenizer of {vocab_size} ids, tied head",
        "recipe": {"steps": steps, "window": WINDOW, "batch_size": BATCH, "lr": LEARNING_RATE},
        "output": "mean log-likelihood per token (minus the loss)",
    }
    return Problem(
        setting="hf-gpt2",
        n_train=n_train,
        report_cols=report_cols,
        tune_cols=tune_cols,
        main_masks=draws["main"][0],
        main_outputs=draws["main"][1][:, report_cols],
        main_outputs_reseeded=reseeded,
        tune_masks=draws["tune"][0],
        tune_outputs=draws["tune"][1][:, tune_cols],
        ensembles={"full": full, "half": half},
        run_method=RunMemo(run_method),
        counterfactual=counterfactual,
        info=info,
    )
