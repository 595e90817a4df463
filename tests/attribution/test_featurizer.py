"""The featurizer: Kronecker projection equals its explicit matrix, exactness, resumption, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_tasks import TokenModel, blobs, brute_force_margin_gradients, mlp, state

from endcredits.attribution import featurizer as featurizer_module
from endcredits.attribution import saver as saver_module
from endcredits.attribution.charlm import CharLM, CharLMConfig, Vocab
from endcredits.attribution.featurizer import FeatureSet, Featurizer, plan_projection
from endcredits.attribution.projection import BlockGaussianProjector, gaussian_factor
from endcredits.attribution.task import AttributionTask, classification_task, encode_texts, language_model_task
from endcredits.errors import LimitExceededError, ManifestError, ValidationError


def _ids(n: int) -> list[str]:
    return [f"work-{i:03d}" for i in range(n)]


def test_kronecker_features_equal_the_explicit_kronecker_matrix_times_brute_force_gradients() -> None:
    model = mlp(5, 4, 3, seed=0)
    x, y = blobs(9, d=5, classes=3)
    task = classification_task(model, [state(model)])
    featurizer = Featurizer(task, k=10, seed=3, projection="kronecker", chunk_size=4)
    got = featurizer.compute((x, y), role="train").astype(np.float64)
    exact = brute_force_margin_gradients(model, x, y)  # [n, W0 b0 W1 b1]
    expected = []
    offset = 0
    for layer in featurizer.plan.kronecker:
        d_out, d_in = layer.d_out, layer.d_in - 1
        weight = exact[:, offset : offset + d_out * d_in].reshape(-1, d_out, d_in)
        bias = exact[:, offset + d_out * d_in : offset + d_out * d_in + d_out]
        offset += d_out * d_in + d_out
        g = torch.cat([weight, bias[:, :, None]], dim=2).reshape(len(x), -1)  # vec of [W | b], row-major
        p_in = gaussian_factor(layer.module, "in", rows=layer.k_in, cols=layer.d_in, seed=3).double()
        p_out = gaussian_factor(layer.module, "out", rows=layer.k_out, cols=layer.d_out, seed=3).double()
        assert layer.k_in < layer.d_in or layer.k_out < layer.d_out  # really projected
        expected.append(g @ torch.kron(p_out, p_in).T)
    expected_all = torch.cat(expected, dim=1).numpy()
    assert np.allclose(got, expected_all, rtol=1e-4, atol=1e-5)
    # <P g1, P g2> through the features is <g1, g2> under the Kronecker matrix.
    assert np.allclose(got @ got.T, expected_all @ expected_all.T, rtol=1e-4, atol=1e-4)


def test_identity_and_gaussian_match_brute_force_and_full_kronecker_is_exact() -> None:
    model = TokenModel(4, 3, seed=1)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(7, 3, 4, generator=g)
    y = torch.randint(0, 3, (7,), generator=g)
    task = classification_task(model, [state(model)])
    exact = brute_force_margin_gradients(model, x, y).numpy()
    identity = Featurizer(task, k=None, seed=0, projection="identity", chunk_size=3).compute((x, y), role="train")
    assert np.allclose(identity, exact, atol=1e-5)
    gaussian = Featurizer(task, k=16, seed=2, projection="gaussian", chunk_size=3).compute((x, y), role="train")
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    splits = np.cumsum(list(sizes.values()))[:-1]
    grads = {n: torch.from_numpy(a) for n, a in zip(sizes, np.split(exact, splits, axis=1), strict=True)}
    assert np.allclose(gaussian, BlockGaussianProjector(sizes, k=16, seed=2).project(grads).numpy(), atol=1e-4)
    full = Featurizer(task, k=10_000, seed=0, projection="kronecker", chunk_size=2)
    assert full.dim == exact.shape[1] and full.plan.rest == ("scale",)
    features = full.compute((x, y), role="train").astype(np.float64)
    assert np.allclose(features @ features.T, exact @ exact.T, rtol=1e-4, atol=1e-4)


def test_kronecker_on_the_char_lm_is_exact_when_k_covers_every_parameter() -> None:
    vocab = Vocab("abcdefg")
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=vocab.size, window=4, d_model=8, n_layers=2, n_heads=2, d_ff=12)).eval()
    data = encode_texts(vocab, ["abcabcabcg", "gfedcba", "aabbccddeeff", "bad"], length_max=16)
    task = language_model_task(model, [state(model)])
    identity = Featurizer(task, k=None, seed=0, projection="identity").compute(data, role="train").astype(np.float64)
    kron = Featurizer(task, k=identity.shape[1], seed=0, chunk_size=3)
    features = kron.compute(data, role="train").astype(np.float64)
    gram = identity @ identity.T
    assert np.allclose(features @ features.T, gram, atol=1e-5 * np.abs(gram).max())
    small = Featurizer(task, k=160, seed=0, chunk_size=3)
    assert small.dim <= 160 and {layer.module for layer in small.plan.kronecker} >= {"head", "blocks.0.qkv"}
    projected = small.compute(data, role="train").astype(np.float64)
    assert np.corrcoef((projected @ projected.T).ravel(), gram.ravel())[0, 1] > 0.9
    linear_only = Featurizer(task, k=160, seed=0, exclude=("embed.weight", "*norm*"))
    assert linear_only.plan.rest == () and linear_only.dim <= 160
    assert linear_only.compute(data, role="train").shape == (4, linear_only.dim)
    assert linear_only.coverage["excluded_names"][:3] == [
        "embed.weight",
        "blocks.0.norm1.weight",
        "blocks.0.norm1.bias",
    ]
    assert small.coverage["share_covered"] == 1.0 and small.coverage["projected"] == linear_only.coverage["excluded"]


def test_features_do_not_depend_on_chunk_size_and_seed_matters() -> None:
    model = mlp(5, 6, 3, seed=2)
    x, y = blobs(11, d=5)
    task = classification_task(model, [state(model)])
    a = Featurizer(task, k=12, seed=1, chunk_size=1).compute((x, y))
    b = Featurizer(task, k=12, seed=1, chunk_size=11).compute((x, y))
    assert np.allclose(a, b, rtol=1e-5, atol=1e-6)
    c = Featurizer(task, k=12, seed=2, chunk_size=11).compute((x, y))
    assert not np.allclose(b, c)


def _ensemble_task() -> tuple[AttributionTask, tuple[torch.Tensor, torch.Tensor]]:
    model = mlp(5, 6, 3, seed=0)
    return classification_task(model, [state(mlp(5, 6, 3, seed=s)) for s in range(2)]), blobs(23, d=5)


def test_featurize_writes_one_file_per_checkpoint_and_resumes_to_identical_bytes(tmp_path: Path) -> None:
    task, data = _ensemble_task()
    ids = _ids(23)
    seen: list[tuple[int, int]] = []
    whole = Featurizer(task, k=16, seed=4, chunk_size=5).featurize(
        data, ids, tmp_path / "whole", curvature=True, progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (46, 46) and len(seen) == 10
    assert whole.models == 2 and whole.ids == tuple(ids) and whole.manifest["dim"] == whole.features(0).shape[1]
    assert whole.manifest["checkpoint_sha256"] == list(task.checkpoint_sha256s)
    in_memory = Featurizer(task, k=16, seed=4, chunk_size=5).compute(data, checkpoint_index=1, role="train")
    assert np.array_equal(whole.features(1), in_memory)
    assert not np.array_equal(whole.features(0), whole.features(1))
    assert whole.curvature(0).shape == (whole.manifest["dim"],) * 2

    class Stop(Exception):
        pass

    def stop_after_three(done: int, total: int) -> None:
        if done >= 15:
            raise Stop

    with pytest.raises(Stop):
        Featurizer(task, k=16, seed=4, chunk_size=5).featurize(
            data, ids, tmp_path / "resumed", curvature=True, progress=stop_after_three
        )
    with pytest.raises(ManifestError, match="incomplete"):
        FeatureSet.open(tmp_path / "resumed")
    calls: list[int] = []
    resumed = Featurizer(task, k=16, seed=4, chunk_size=5).featurize(
        data, ids, tmp_path / "resumed", curvature=True, progress=lambda d, t: calls.append(d)
    )
    assert calls[0] == 20  # continued after the third chunk
    for name in ["features-000.npy", "features-001.npy", "weights-000.npy", "weights-001.npy", "curvature-001.npy"]:
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name
    assert resumed.manifest == whole.manifest


def test_reopening_with_other_ids_task_or_arguments_is_refused(tmp_path: Path) -> None:
    task, data = _ensemble_task()
    ids = _ids(23)
    Featurizer(task, k=16, seed=4).featurize(data, ids, tmp_path)
    other_ids = ids[:-1] + ["someone-else"]
    with pytest.raises(ManifestError, match="other work ids"):
        Featurizer(task, k=16, seed=4).featurize(data, other_ids, tmp_path)
    with pytest.raises(ManifestError, match="other work ids"):
        FeatureSet.open(tmp_path, ids=other_ids)
    with pytest.raises(ManifestError, match="seed: recorded 4, now 5"):
        Featurizer(task, k=16, seed=5).featurize(data, ids, tmp_path)
    other_task = classification_task(task.model, [state(mlp(5, 6, 3, seed=9))])
    with pytest.raises(ManifestError, match="other checkpoints"):
        FeatureSet.open(tmp_path, task=other_task)
    assert FeatureSet.open(tmp_path, ids=ids, task=task).models == 2


def test_non_finite_gradients_name_the_works_and_leave_nothing(tmp_path: Path) -> None:
    model = mlp(5, 6, 3, seed=0)
    x, y = blobs(12, d=5)
    x[3, 0] = float("nan")
    x[10, 2] = float("inf")
    task = classification_task(model, [state(model)])
    out = tmp_path / "features"
    with pytest.raises(ValidationError, match=r"works \['work-003', 'work-010'\] are NaN or infinite"):
        Featurizer(task, k=8, seed=0, chunk_size=4).featurize((x, y), _ids(12), out)
    assert not out.exists() or list(out.iterdir()) == []
    with pytest.raises(ValidationError, match=r"examples \[3, 10\]"):
        Featurizer(task, k=8, seed=0, chunk_size=4).compute((x, y))


def test_limits_say_how_many_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = mlp(5, 6, 3, seed=0)
    task = classification_task(model, [state(model)])
    data = blobs(10, d=5)
    featurizer = Featurizer(task, k=None, seed=0, projection="identity")
    monkeypatch.setattr(saver_module.shutil, "disk_usage", lambda path: type("U", (), {"free": 100})())
    with pytest.raises(LimitExceededError, match=rf"need {10 * featurizer.dim * 4 + 40} bytes"):
        featurizer.featurize(data, _ids(10), tmp_path / "big")
    assert not (tmp_path / "big").exists()
    monkeypatch.setattr(featurizer_module, "IN_MEMORY_FEATURE_BYTES_MAX", 100)
    with pytest.raises(LimitExceededError, match=rf"{10 * featurizer.dim * 4} bytes"):
        featurizer.compute(data)
    with pytest.raises(ValidationError, match="k 0 must be"):
        Featurizer(task, k=0, seed=0)
    with pytest.raises(ValidationError, match="identity' keeps all 57"):
        plan_projection(model, projection="identity", k=10)
    with pytest.raises(ValidationError, match="ids for 10 examples"):
        featurizer.featurize(data, _ids(9), tmp_path / "x")
