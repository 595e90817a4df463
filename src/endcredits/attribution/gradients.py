"""Per-example gradient features of a ``CharLM`` and a first-cut TracIn-style score.

An example is one whole text (a training tune, or a generated output). Its loss is the mean
next-character cross entropy over its first ``length_max`` characters. Texts are padded to a common
length within a chunk and the padding is masked out; the model is causal, so padding after a text
changes nothing about it, and a text gets the same features whatever it is batched with.

Per-example gradients come from ``torch.func`` (``vmap`` over ``grad`` of a ``functional_call``), a
chunk of texts at a time, and are projected to ``k`` dimensions by a Gaussian random projection
``R`` with entries ``N(0, 1/k)``, so that ``<R g1, R g2>`` estimates ``<g1, g2>``
(Johnson-Lindenstrauss). ``R`` is never built as one (parameters x k) matrix: it is generated in row
blocks of at most ``PROJECTION_BLOCK_ROWS`` rows per parameter tensor, each block from its own
generator seeded by (seed, parameter name, block index). So the same seed gives the same projection
whatever the chunk size, and the blocks are cached only while they fit in ``PROJECTION_CACHE_BYTES_MAX``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from endcredits.attribution.charlm import UNKNOWN_ID, TrainedLM
from endcredits.attribution.projection import PROJECTION_BLOCK_ROWS, BlockGaussianProjector
from endcredits.errors import LimitExceededError, ValidationError

K_MAX = 65_536
"""Largest projection dimension."""

CHUNK_SIZE_MAX = 4_096
LENGTH_CHARS_MAX = 65_536
TEXTS_MAX = 100_000_000
PROJECTION_CACHE_BYTES_MAX = 512 * 1024 * 1024
"""Blocks of the projection are kept between chunks while they fit in this many bytes."""

FULL_GRADIENT_FLOATS_MAX = 1 << 28
"""``per_example_gradients`` refuses to return more floats than this (1 GiB)."""

PAD_MULTIPLE = 64
"""Each chunk is padded to a multiple of this many characters (at most ``length_max``)."""


def featurize(
    lm: TrainedLM,
    texts: Sequence[str],
    *,
    k: int,
    seed: int,
    chunk_size: int = 32,
    length_max: int = 512,
    progress: Callable[[int], None] | None = None,
) -> npt.NDArray[np.float32]:
    """Projected loss gradients, float32 [len(texts), k]; ``progress(texts_done)`` after each chunk."""
    if not 1 <= k <= K_MAX:
        raise ValidationError(f"k {k} must be in [1, {K_MAX}]")
    _check_chunking(texts, chunk_size=chunk_size, length_max=length_max)
    sizes = {name: p.numel() for name, p in lm.model.named_parameters()}
    projector = BlockGaussianProjector(sizes, k=k, seed=seed, cache_bytes_max=PROJECTION_CACHE_BYTES_MAX)
    out = np.empty((len(texts), k), dtype=np.float32)
    # Chunks of similar lengths pad less; a text's features do not depend on its chunk.
    order = sorted(range(len(texts)), key=lambda i: (min(len(texts[i]), length_max), i))
    not_finite: list[int] = []
    for start in range(0, len(texts), chunk_size):
        indices = order[start : start + chunk_size]
        grads, bad = _chunk_gradients(lm, texts, indices, length_max)
        not_finite.extend(bad)
        if not bad:
            out[indices] = projector.project(grads).numpy()
        if progress is not None:
            progress(start + len(indices))
    _raise_if_not_finite(not_finite)
    return out


def per_example_gradients(lm: TrainedLM, texts: Sequence[str], *, length_max: int = 512) -> torch.Tensor:
    """Exact flattened loss gradients, float32 [len(texts), parameters]; for checking small models."""
    parameters_count = sum(p.numel() for p in lm.model.parameters())
    if len(texts) * parameters_count > FULL_GRADIENT_FLOATS_MAX:
        raise LimitExceededError(
            f"{len(texts)} texts x {parameters_count} parameters is over {FULL_GRADIENT_FLOATS_MAX} floats;"
            " use featurize()"
        )
    _check_chunking(texts, chunk_size=1, length_max=length_max)
    if not texts:
        return torch.empty((0, parameters_count))
    grads, bad = _chunk_gradients(lm, texts, list(range(len(texts))), length_max)
    _raise_if_not_finite(bad)
    return torch.cat([g.flatten(1) for g in grads.values()], dim=1)


def tracin_scores(output_features: np.ndarray, work_features: np.ndarray) -> npt.NDArray[np.float64]:
    """TracIn-style influence, float64 [outputs, works]: the dot product of projected loss gradients."""
    outputs = np.asarray(output_features)
    works = np.asarray(work_features)
    if outputs.ndim != 2 or works.ndim != 2:
        raise ValidationError(f"features must be 2-D [examples, k]; got shapes {outputs.shape} and {works.shape}")
    if outputs.shape[1] != works.shape[1]:
        raise ValidationError(
            f"output features have k={outputs.shape[1]} but work features k={works.shape[1]};"
            " featurize both with the same k"
        )
    outputs64 = outputs.astype(np.float64)
    works64 = works.astype(np.float64)
    for label, array in (("output", outputs64), ("work", works64)):
        bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
        if bad.size:
            raise ValidationError(f"{label} features of rows {bad[:10].tolist()} are not finite; featurize them again")
    return outputs64 @ works64.T


def _check_chunking(texts: Sequence[str], *, chunk_size: int, length_max: int) -> None:
    if not 1 <= chunk_size <= CHUNK_SIZE_MAX:
        raise ValidationError(f"chunk_size {chunk_size} must be in [1, {CHUNK_SIZE_MAX}]")
    if not 2 <= length_max <= LENGTH_CHARS_MAX:
        raise ValidationError(f"length_max {length_max} must be in [2, {LENGTH_CHARS_MAX}]")
    if len(texts) > TEXTS_MAX:
        raise LimitExceededError(f"{len(texts)} texts is over {TEXTS_MAX}; featurize them in shards")
    short = [i for i, text in enumerate(texts) if len(text) < 2]
    if short:
        raise ValidationError(f"texts {short[:10]} have fewer than 2 characters; a loss needs at least one prediction")


def _raise_if_not_finite(indices: list[int]) -> None:
    if indices:
        shown = sorted(indices)[:20]
        more = f" and {len(indices) - len(shown)} more" if len(indices) > len(shown) else ""
        raise ValidationError(
            f"loss gradients of texts {shown}{more} are NaN or infinite; check the model's parameters and those texts"
        )


def _chunk_gradients(
    lm: TrainedLM, texts: Sequence[str], indices: Sequence[int], length_max: int
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Per-example gradients of the texts at ``indices`` (one [n, *shape] tensor per parameter) and
    the indices of the texts whose gradients are not finite."""
    encoded = [lm.vocab.encode(texts[i][:length_max]) for i in indices]
    longest = max(len(ids) for ids in encoded)
    padded_length = min(length_max, -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE)
    ids = torch.full((len(encoded), padded_length), UNKNOWN_ID, dtype=torch.long)
    mask = torch.zeros((len(encoded), padded_length - 1), dtype=torch.float32)
    for row, row_ids in enumerate(encoded):
        ids[row, : len(row_ids)] = torch.tensor(row_ids, dtype=torch.long)
        mask[row, : len(row_ids) - 1] = 1.0

    model = lm.model
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def loss(
        p: dict[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (inputs,))
        per_char = F.cross_entropy(logits, targets, reduction="none")
        return (per_char * weights).sum() / weights.sum()

    was_training = model.training
    model.eval()
    try:
        grads: dict[str, torch.Tensor] = vmap(grad(loss), in_dims=(None, 0, 0, 0))(
            params, ids[:, :-1], ids[:, 1:], mask
        )
    finally:
        model.train(was_training)
    finite = torch.ones(len(encoded), dtype=torch.bool)
    for g in grads.values():
        finite &= torch.isfinite(g.flatten(1)).all(dim=1)
    return grads, [indices[int(i)] for i in torch.nonzero(~finite).flatten().tolist()]


__all__ = ["PROJECTION_BLOCK_ROWS", "featurize", "per_example_gradients", "tracin_scores"]
