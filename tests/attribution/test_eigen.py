"""Projection ``eigen``: a deterministic basis from the works' covariances, stored with the features and
required of every query; exact when it keeps every dimension."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_tasks import TokenModel, blobs, brute_force_margin_gradients, mlp, state

from endcredits.attribution import featurizer as featurizer_module
from endcredits.attribution.charlm import train_char_lm
from endcredits.attribution.distributed import LocalRunner, featurize_sharded
from endcredits.attribution.eigen import BASIS_NAME, EigenBasis, check_basis, top_eigenvectors
from endcredits.attribution.featurizer import FeatureSet, Featurizer
from endcredits.attribution.models import CharLMModel
from endcredits.attribution.pipeline import attribute_outputs, featurize_works, featurizer_for
from endcredits.attribution.saver import METADATA_NAME
from endcredits.attribution.settings import AttributionSettings
from endcredits.attribution.task import classification_task
from endcredits.errors import ManifestError, ValidationError
from endcredits.interop.abc import iter_tunes


def _ids(n: int) -> list[str]:
    return [f"work-{i:03d}" for i in range(n)]


def _task_and_data(seed: int = 0) -> tuple[object, tuple[torch.Tensor, torch.Tensor]]:
    model = mlp(6, 8, 3, seed=seed)
    return classification_task(model, [state(model)]), blobs(20, d=6, classes=3, seed=seed)


def test_the_basis_is_deterministic_and_is_the_top_eigenvectors_of_the_works_covariances() -> None:
    task, (x, y) = _task_and_data()
    first = Featurizer(task, k=12, seed=0, projection="eigen", chunk_size=7)  # type: ignore[arg-type]
    second = Featurizer(task, k=12, seed=5, projection="eigen", chunk_size=7)  # type: ignore[arg-type]
    basis = first.fit_basis((x, y))
    assert second.fit_basis((x, y)).sha256() == basis.sha256()
    # The first layer's input covariance, by hand: inputs with a 1 appended for the bias.
    a = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    values, vectors = np.linalg.eigh((a.T @ a).numpy())
    layer = first.plan.kronecker[0]
    p_in = basis.factors[0][layer.module][0].astype(np.float64)
    assert 0 < layer.k_in < layer.d_in and p_in.shape == (layer.k_in, layer.d_in)
    top = vectors[:, ::-1][:, : layer.k_in].T
    assert np.allclose(np.abs(p_in), np.abs(top), atol=1e-5)  # the same directions
    assert np.allclose(p_in @ p_in.T, np.eye(layer.k_in), atol=1e-5)
    assert all(row[np.argmax(np.abs(row))] > 0 for row in p_in)  # the sign convention
    # Features: the explicit Kronecker matrix of the basis times the brute-force gradients, for every seed.
    got = first.compute((x, y), role="train").astype(np.float64)
    assert np.array_equal(got, second.compute((x, y), role="train").astype(np.float64))
    exact = brute_force_margin_gradients(task.model, x, y)  # type: ignore[attr-defined]
    d_out, d_in = layer.d_out, layer.d_in - 1
    weight = exact[:, : d_out * d_in].reshape(-1, d_out, d_in)
    g = torch.cat([weight, exact[:, d_out * d_in : d_out * d_in + d_out, None]], dim=2).reshape(len(x), -1)
    p_out = torch.from_numpy(basis.factors[0][layer.module][1]).double()
    expected = (g @ torch.kron(p_out, torch.from_numpy(p_in)).T).numpy()
    assert np.allclose(got[:, : layer.dim], expected, rtol=1e-4, atol=1e-5)


def test_a_factor_keeping_every_dimension_is_the_identity_and_features_are_exact() -> None:
    assert np.array_equal(top_eigenvectors(torch.randn(4, 4).double() @ torch.randn(4, 4).double().T, 4), np.eye(4))
    model = TokenModel(4, 3, seed=1)
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(7, 3, 4, generator=g), torch.randint(0, 3, (7,), generator=g)
    task = classification_task(model, [state(model)])
    exact = brute_force_margin_gradients(model, x, y).numpy()
    eigen = Featurizer(task, k=10_000, seed=0, projection="eigen", chunk_size=3)
    kron = Featurizer(task, k=10_000, seed=0, projection="kronecker", chunk_size=3)
    features = eigen.compute((x, y), role="train")
    assert eigen.dim == exact.shape[1]
    assert np.allclose(features, kron.compute((x, y), role="train"), atol=1e-6)  # the exact [W | b] layout
    gram = exact @ exact.T
    assert np.allclose(features.astype(np.float64) @ features.T, gram, rtol=1e-4, atol=1e-4 * np.abs(gram).max())


def test_the_basis_is_stored_with_the_features_and_a_query_with_another_is_refused(tmp_path: Path) -> None:
    task, (x, y) = _task_and_data()
    featurizer = Featurizer(task, k=12, seed=0, projection="eigen", chunk_size=7)  # type: ignore[arg-type]
    train = featurizer.featurize((x, y), _ids(len(x)), tmp_path / "works")
    recorded = train.manifest["basis_sha256"]
    assert recorded == featurizer.basis.sha256() and (tmp_path / "works" / BASIS_NAME).exists()  # type: ignore[union-attr]
    loaded = EigenBasis.load(train.directory, sha256=recorded)
    check_basis(recorded, loaded, str(train.directory))  # the works' own basis: accepted
    query = Featurizer(task, k=12, seed=0, projection="eigen", basis=loaded)  # type: ignore[arg-type]
    assert np.allclose(query.compute((x, y), role="target"), featurizer.compute((x, y), role="target"))
    other = Featurizer(task, k=12, seed=0, projection="eigen").fit_basis(blobs(20, d=6, seed=9))  # type: ignore[arg-type]
    with pytest.raises(ManifestError, match="projected with eigen basis") as refused:
        check_basis(recorded, other, str(train.directory))
    assert "\n" not in str(refused.value)
    with pytest.raises(ManifestError, match="projected with eigen basis"):
        EigenBasis.load(train.directory, sha256=other.sha256())
    with pytest.raises(ValidationError, match="basis fitted on the training works"):
        Featurizer(task, k=12, seed=0, projection="eigen").compute((x, y), role="target")  # type: ignore[arg-type]
    with pytest.raises(ManifestError, match="does not fit this model's plan"):
        Featurizer(task, k=20, seed=0, projection="eigen", basis=loaded)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="for projection 'eigen'"):
        Featurizer(task, k=12, seed=0, projection="kronecker", basis=loaded)  # type: ignore[arg-type]


def test_a_resumed_run_reuses_the_saved_basis(tmp_path: Path) -> None:
    task, (x, y) = _task_and_data()
    out = tmp_path / "works"
    first = Featurizer(task, k=12, seed=0, projection="eigen", chunk_size=7)  # type: ignore[arg-type]
    done = first.featurize((x, y), _ids(len(x)), out)
    record = json.loads((out / METADATA_NAME).read_text())
    record["rows_done"] = [[[0, 7]]]  # as if interrupted after the first chunk
    (out / METADATA_NAME).write_text(json.dumps(record))
    again = Featurizer(task, k=12, seed=0, projection="eigen", chunk_size=7)  # type: ignore[arg-type]
    resumed = again.featurize((x, y), _ids(len(x)), out)
    assert again.basis is not None and again.basis.sha256() == record["basis_sha256"]
    assert np.array_equal(FeatureSet.open(out).features_per_model()[0], done.features_per_model()[0])
    assert resumed.manifest["basis_sha256"] == done.manifest["basis_sha256"]


def test_the_pipeline_scores_outputs_with_the_works_basis_and_refuses_another(tmp_path: Path) -> None:
    texts = [t.text for t in iter_tunes(limit=10)]
    ids = [f"w{i:02d}" for i in range(len(texts))]
    lm = train_char_lm(texts, seed=0, steps_max=3, time_s_max=60.0, batch_size=4, window=32)
    model, contents = CharLMModel(lm), [t.encode() for t in texts]
    settings = AttributionSettings(k=64, projection="eigen", seed=3, chunk_size=4, length_chars=64)
    train = featurize_works(model, ids, contents, tmp_path / "one", settings=settings)
    sharded = featurize_sharded(
        featurizer_for(model, settings), model.encode_works(contents, ids, settings), ids, tmp_path / "two",
        runner=LocalRunner(), settings=settings, shard_rows=4,
    )  # fmt: skip
    assert sharded.manifest["basis_sha256"] == train.manifest["basis_sha256"] is not None
    outputs = [("o1", contents[0]), ("o2", b"X:1\nabc")]
    first = attribute_outputs(model, train, outputs, settings=settings)
    assert first.scores.shape == (2, len(ids))
    assert np.allclose(first.scores, attribute_outputs(model, sharded, outputs, settings=settings).scores)
    other = Featurizer(model.task(settings), k=64, seed=3, projection="eigen", chunk_size=4)
    other.fit_basis(model.encode_works(contents[:5], ids[:5], settings)).save(train.directory)
    with pytest.raises(ManifestError, match="projected with eigen basis") as refused:
        attribute_outputs(model, train, outputs, settings=settings)
    assert "\n" not in str(refused.value)


def test_the_other_parameters_are_exact_so_no_seed_moves_the_features(monkeypatch: pytest.MonkeyPatch) -> None:
    model = TokenModel(4, 3, seed=1)
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(7, 3, 4, generator=g), torch.randint(0, 3, (7,), generator=g)
    task = classification_task(model, [state(model)])
    one, two = (Featurizer(task, k=8, seed=s, projection="eigen", chunk_size=3) for s in (0, 1))
    assert one.plan.covered_by()["scale"] == "exact" and one.plan.rest_dim == 4
    assert np.array_equal(one.compute((x, y), role="train"), two.compute((x, y), role="train"))
    monkeypatch.setattr(featurizer_module, "EIGEN_REST_EXACT_MAX", 3)  # over the bound: projected, seeded
    projected = Featurizer(task, k=8, seed=0, projection="eigen", chunk_size=3)
    assert projected.plan.covered_by()["scale"] == "projected" and projected.plan.rest_dim < 4
