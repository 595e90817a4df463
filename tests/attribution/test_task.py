"""The task contract: checkpoint hashes, the classification helpers, the language-model helper."""

from __future__ import annotations

import pytest
import torch
from tiny_tasks import blobs, mlp, state, train_logistic

from endcredits.attribution.charlm import CharLM, CharLMConfig, Vocab
from endcredits.attribution.task import (
    AttributionTask,
    checkpoint_sha256,
    classification_curvature,
    classification_margin,
    classification_one_minus_p,
    classification_task,
    encode_texts,
    language_model_task,
)
from endcredits.errors import ManifestError, ValidationError


def test_checkpoint_hash_is_recorded_and_a_changed_checkpoint_is_refused() -> None:
    model = mlp(4, 3, 2, seed=0)
    ckpt = state(model)
    task = classification_task(model, [ckpt])
    assert task.checkpoint_sha256s == (checkpoint_sha256(ckpt),)
    assert classification_task(model, [ckpt], checkpoint_sha256_expected=task.checkpoint_sha256s)
    changed = {k: v.clone() for k, v in ckpt.items()}
    changed["0.bias"][0] += 1e-6
    assert checkpoint_sha256(changed) != checkpoint_sha256(ckpt)
    with pytest.raises(ManifestError, match=r"checkpoint 0 hashes to [0-9a-f]{64}, not the recorded"):
        classification_task(model, [changed], checkpoint_sha256_expected=task.checkpoint_sha256s)
    with pytest.raises(ManifestError, match="one per checkpoint"):
        classification_task(model, [ckpt, ckpt], checkpoint_sha256_expected=task.checkpoint_sha256s)
    with pytest.raises(ValidationError, match="lacks parameters"):
        classification_task(model, [{"0.weight": ckpt["0.weight"]}])
    with pytest.raises(ValidationError, match="1 to"):
        AttributionTask(model, [], classification_margin, classification_margin)


def test_margin_q_and_loss_relations() -> None:
    model = mlp(4, 5, 3, seed=1)
    x, y = blobs(16, d=4, classes=3)
    logits = model(x)
    margin = classification_margin(model, (x, y))
    loss = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(loss, torch.nn.functional.softplus(-margin), atol=1e-6)
    p = torch.softmax(logits, dim=1).gather(1, y[:, None])[:, 0]
    assert torch.allclose(classification_one_minus_p(model, (x, y)), 1 - p)


def test_curvature_outer_products_are_the_exact_hessian_of_logistic_regression() -> None:
    x, y = blobs(24, d=3, classes=3)
    model = train_logistic(x, y, 3, weight_decay=0.1)
    params = {k: v.detach() for k, v in model.named_parameters()}
    names = list(params)

    def total_loss(*flat: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, dict(zip(names, flat, strict=True)), (x,))
        return torch.nn.functional.cross_entropy(out, y, reduction="sum")

    blocks = torch.autograd.functional.hessian(total_loss, tuple(params.values()))
    sizes = [p.numel() for p in params.values()]
    hessian = torch.cat([torch.cat([blocks[i][j].reshape(sizes[i], sizes[j]) for j in range(2)], 1) for i in range(2)])
    gn = torch.zeros_like(hessian)
    for i in range(x.shape[0]):
        for r in range(3):
            model.zero_grad()
            classification_curvature(model, (x[i : i + 1], y[i : i + 1]))[0, r].backward()
            v = torch.cat([p.grad.flatten() for p in model.parameters()])
            gn += torch.outer(v, v)
    assert torch.allclose(gn, hessian, atol=1e-4 * float(hessian.abs().max()))


def test_language_model_task_log_likelihoods() -> None:
    vocab = Vocab("abc")
    model = CharLM(CharLMConfig(vocab_size=vocab.size, window=4, d_model=8, n_layers=1, n_heads=2, d_ff=8)).eval()
    ids, mask = encode_texts(vocab, ["abcab", "ca"], length_max=8)
    assert ids.shape == (2, 5) and mask.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]
    task = language_model_task(model, [state(model)])
    total = task.train_output(model, (ids, mask))
    mean = task.measurement(model, (ids, mask))
    assert torch.allclose(total, mean * torch.tensor([4.0, 1.0]))
    alone = task.train_output(model, encode_texts(vocab, ["ca"], length_max=8))
    assert torch.allclose(total[1:], alone, atol=1e-6)
    with pytest.raises(ValidationError, match="fewer than 2"):
        encode_texts(vocab, ["a"], length_max=8)
