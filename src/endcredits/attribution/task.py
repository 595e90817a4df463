"""The attribution task: what a model owner fills in so their model can be attributed.

Nothing in the owner's training loop changes. They hand over the model, its checkpoints (state dicts
of the members of an ensemble, or of one run at several points), and a few per-example functions, each
``fn(model, batch) -> Tensor[B]``:

- ``train_output``: the quantity differentiated for a training example. Its gradient, times
  ``train_weight``, must point where a training step on that example moves the parameters (up to a
  positive factor): the margin for a classifier (with weight 1 - p, since -dLoss/dθ = (1 - p) dMargin/dθ),
  the log-likelihood (minus the loss) for a language model (weight 1).
- ``measurement``: what "this output" means: the log-likelihood of a generated sequence, a classifier's
  margin on its prediction, a diffusion model's negative denoising loss. A positive score means that
  training on the work raised the measurement.
- ``train_weight`` (optional, default ones): TRAK's Q, computed without gradients.
- ``curvature`` (optional): outputs ``u [B, R]`` with the property that the sum over examples and r of
  ``grad(u_r) grad(u_r)^T`` is the Gauss-Newton matrix of the training loss. When given, the TRAK kernel
  can use it instead of ``Phi^T Phi`` (exact for logistic regression; see ``scorers``).

A ``batch`` is a tensor, a tuple/list of tensors or a dict of tensors, all with the examples along
dimension 0. The functions are called through ``torch.func.functional_call`` with a checkpoint's
tensors, on a batch of one example inside ``vmap(grad(...))`` or on a chunk of examples; so each
example's value must depend on that example alone (use the model in eval mode: no batch norm
statistics, no dropout).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from endcredits.attribution.charlm import UNKNOWN_ID, Vocab
from endcredits.errors import LimitExceededError, ManifestError, ValidationError

Batch = torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor] | Mapping[str, torch.Tensor]
"""Examples along dimension 0 of every tensor."""

ExampleFunction = Callable[[nn.Module, Batch], torch.Tensor]
"""``fn(model, batch) -> Tensor[B]`` (``Tensor[B, R]`` for ``curvature``)."""

CHECKPOINTS_MAX = 1_000
LM_LENGTH_CHARS_MAX = 65_536


def checkpoint_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over a checkpoint's tensors: names (sorted), dtypes, shapes and bytes."""
    digest = hashlib.sha256(b"endcredits.checkpoint/1")
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def canonical_state(model: nn.Module, state: Mapping[str, torch.Tensor], index: int = 0) -> dict[str, torch.Tensor]:
    """``state`` keyed by the model's own parameter and buffer names, each tied parameter once.

    A tied parameter (GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``) is listed once by
    ``named_parameters()``; a saved state dict may hold it under every name. An alias must equal the
    tensor it ties to and is dropped, so ``functional_call`` receives each parameter once and a model
    saved with or without its tied keys hashes the same. A name the model does not have, a missing
    parameter and a shape that differs are refused, naming the first.
    """
    params = dict(model.named_parameters())
    owned = {**params, **dict(model.named_buffers())}
    aliases = {name: p for name, p in model.named_parameters(remove_duplicate=False) if name not in params}
    out: dict[str, torch.Tensor] = {}
    for name in sorted(state):
        tensor = state[name]
        if name in aliases:
            target = next(n for n, p in params.items() if p is aliases[name])
            if target in state and not torch.equal(state[target], tensor):
                raise ValidationError(
                    f"checkpoint {index}: {name} is tied to {target} in the model but differs from it"
                )
            continue
        if name not in owned:
            raise ValidationError(f"checkpoint {index} has {name}, which the model does not: is it the right model?")
        if tuple(tensor.shape) != tuple(owned[name].shape):
            raise ValidationError(
                f"checkpoint {index}: {name} has shape {tuple(tensor.shape)}, the model's {tuple(owned[name].shape)}"
            )
        out[name] = tensor
    missing = sorted(set(params) - set(out))
    if missing:
        raise ValidationError(
            f"checkpoint {index} lacks parameters {missing[:5]} of the model; pass model.state_dict() copies"
        )
    return out


@dataclass(frozen=True)
class AttributionTask:
    """A model, its checkpoints and the per-example functions; see the module docstring.

    ``checkpoint_sha256_expected``, when given, holds the hash recorded for each checkpoint (for example
    in the manifest); a checkpoint that hashes differently is refused with ``ManifestError``.
    """

    model: nn.Module
    checkpoints: Sequence[Mapping[str, torch.Tensor]]
    train_output: ExampleFunction
    measurement: ExampleFunction
    train_weight: ExampleFunction | None = None
    curvature: ExampleFunction | None = None
    checkpoint_sha256_expected: Sequence[str] | None = None
    _hashes: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.checkpoints) <= CHECKPOINTS_MAX:
            raise ValidationError(f"a task needs 1 to {CHECKPOINTS_MAX} checkpoints; got {len(self.checkpoints)}")
        states = tuple(canonical_state(self.model, state, index) for index, state in enumerate(self.checkpoints))
        object.__setattr__(self, "checkpoints", states)
        hashes = [checkpoint_sha256(state) for state in states]
        object.__setattr__(self, "_hashes", tuple(hashes))
        expected = self.checkpoint_sha256_expected
        if expected is not None:
            if len(expected) != len(hashes):
                raise ManifestError(
                    f"{len(expected)} recorded checkpoint hashes for {len(hashes)} checkpoints; pass one per checkpoint"
                )
            for index, (got, want) in enumerate(zip(hashes, expected, strict=True)):
                if got != want:
                    raise ManifestError(
                        f"checkpoint {index} hashes to {got}, not the recorded {want}; it is not the model the"
                        " manifest names (load the recorded checkpoint)"
                    )

    @property
    def checkpoint_sha256s(self) -> tuple[str, ...]:
        """SHA-256 of each checkpoint (``checkpoint_sha256``), in order."""
        return self._hashes

    def fingerprint(self) -> str:
        """One SHA-256 over the checkpoint hashes; features computed for another fingerprint are refused."""
        return hashlib.sha256("|".join(self.checkpoint_sha256s).encode()).hexdigest()


# Classifiers ------------------------------------------------------------------------------------


def _classifier_logits_and_labels(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValidationError("a classification batch is (inputs, labels)")
    inputs, labels = batch
    logits: torch.Tensor = model(inputs)
    if logits.dim() != 2:
        raise ValidationError(f"the classifier must return logits [B, classes]; got shape {tuple(logits.shape)}")
    return logits, labels.long()


def classification_margin(model: nn.Module, batch: Batch) -> torch.Tensor:
    """``logit_y - logsumexp(other logits)`` per example; the loss is ``softplus(-margin)``."""
    logits, labels = _classifier_logits_and_labels(model, batch)
    correct = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return correct - torch.logsumexp(others, dim=1)


def classification_one_minus_p(model: nn.Module, batch: Batch) -> torch.Tensor:
    """TRAK's Q: ``1 - p_y``, the factor between the margin's gradient and minus the loss's."""
    logits, labels = _classifier_logits_and_labels(model, batch)
    p = torch.softmax(logits, dim=1).gather(1, labels[:, None])[:, 0]
    return (1.0 - p).detach()


def classification_curvature(model: nn.Module, batch: Batch) -> torch.Tensor:
    """``u [B, classes]`` with ``u_c = sqrt(p_c) (z_c - p . z)``, ``p`` held constant.

    Since ``diag(p) - p p^T = sum_c p_c (e_c - p)(e_c - p)^T``, the outer products of the gradients of
    ``u`` sum to ``J^T (diag(p) - p p^T) J``: the Gauss-Newton matrix of the cross entropy, which is the
    exact Hessian when the logits are linear in the parameters (logistic regression).
    """
    logits, _ = _classifier_logits_and_labels(model, batch)
    p = torch.softmax(logits, dim=1).detach()
    centred = logits - (p * logits).sum(dim=1, keepdim=True)
    return p.sqrt() * centred


def classification_task(
    model: nn.Module,
    checkpoints: Sequence[Mapping[str, torch.Tensor]],
    *,
    checkpoint_sha256_expected: Sequence[str] | None = None,
) -> AttributionTask:
    """A classifier whose batches are ``(inputs, labels)``: margins for training examples and outputs,
    Q = 1 - p_y as TRAK does, and the softmax Gauss-Newton curvature."""
    return AttributionTask(
        model=model,
        checkpoints=checkpoints,
        train_output=classification_margin,
        measurement=classification_margin,
        train_weight=classification_one_minus_p,
        curvature=classification_curvature,
        checkpoint_sha256_expected=checkpoint_sha256_expected,
    )


# Language models --------------------------------------------------------------------------------


def encode_texts(vocab: Vocab, texts: Sequence[str], *, length_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A language-model batch ``(ids [B, T], mask [B, T - 1])``: each text's first ``length_max``
    characters, padded with ``UNKNOWN_ID``; ``mask`` is 1 where a next character is predicted."""
    if not 2 <= length_max <= LM_LENGTH_CHARS_MAX:
        raise ValidationError(f"length_max {length_max} must be in [2, {LM_LENGTH_CHARS_MAX}]")
    short = [i for i, text in enumerate(texts) if len(text) < 2]
    if short:
        raise ValidationError(f"texts {short[:10]} have fewer than 2 characters; a loss needs one prediction")
    if len(texts) * length_max > 1 << 31:
        raise LimitExceededError(f"{len(texts)} texts x {length_max} characters is too many; encode them in shards")
    encoded = [vocab.encode(text[:length_max]) for text in texts]
    length = max((len(ids) for ids in encoded), default=2)
    ids = torch.full((len(texts), length), UNKNOWN_ID, dtype=torch.long)
    mask = torch.zeros((len(texts), length - 1), dtype=torch.float32)
    for row, row_ids in enumerate(encoded):
        ids[row, : len(row_ids)] = torch.tensor(row_ids, dtype=torch.long)
        mask[row, : len(row_ids) - 1] = 1.0
    return ids, mask


def _lm_log_likelihood(model: nn.Module, batch: Batch, *, mean: bool) -> torch.Tensor:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValidationError("a language-model batch is (ids [B, T], mask [B, T - 1]); build it with encode_texts")
    ids, mask = batch
    logits: torch.Tensor = model(ids[:, :-1])
    per_char = -F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    total = (per_char * mask).sum(dim=1)
    return total / mask.sum(dim=1).clamp_min(1.0) if mean else total


def lm_log_likelihood_sum(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Log-likelihood of each text (sum over its predicted characters): minus its training loss."""
    return _lm_log_likelihood(model, batch, mean=False)


def lm_log_likelihood_mean(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean log-likelihood per predicted character of each text."""
    return _lm_log_likelihood(model, batch, mean=True)


def language_model_task(
    model: nn.Module,
    checkpoints: Sequence[Mapping[str, torch.Tensor]],
    *,
    checkpoint_sha256_expected: Sequence[str] | None = None,
) -> AttributionTask:
    """A next-token model (such as ``CharLM``) on batches from ``encode_texts``.

    Training examples are differentiated through their summed log-likelihood (minus their loss: a text
    twice as long weighs twice as much in training); outputs through their mean log-likelihood per
    character. Q is one. No curvature: the TRAK kernel is ``Phi^T Phi``.
    """
    return AttributionTask(
        model=model,
        checkpoints=checkpoints,
        train_output=lm_log_likelihood_sum,
        measurement=lm_log_likelihood_mean,
        checkpoint_sha256_expected=checkpoint_sha256_expected,
    )


__all__ = [
    "AttributionTask",
    "Batch",
    "ExampleFunction",
    "canonical_state",
    "checkpoint_sha256",
    "classification_curvature",
    "classification_margin",
    "classification_one_minus_p",
    "classification_task",
    "encode_texts",
    "language_model_task",
    "lm_log_likelihood_mean",
    "lm_log_likelihood_sum",
]
