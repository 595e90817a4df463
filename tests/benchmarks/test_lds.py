"""The LDS benchmark's parts, and one tiny end-to-end run on a synthetic idx dataset (no download)."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path
from typing import Any

import _lds_core as core
import numpy as np
import pytest
import torch
from _lds_classifier import margins, train_models
from _lds_data import DataError, load_images, read_idx, write_idx


def test_idx_round_trip_plain_and_gzipped(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([3, 7], dtype=np.uint8)
    write_idx(tmp_path / "images", images)
    write_idx(tmp_path / "labels", labels)
    assert np.array_equal(read_idx(tmp_path / "images"), images)
    assert np.array_equal(read_idx(tmp_path / "labels"), labels)
    (tmp_path / "images.gz").write_bytes(gzip.compress((tmp_path / "images").read_bytes()))
    assert np.array_equal(read_idx(tmp_path / "images.gz"), images)
    floats = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    write_idx(tmp_path / "floats", floats)
    assert np.array_equal(read_idx(tmp_path / "floats"), floats)


def test_idx_refuses_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(DataError, match="not an idx file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(DataError, match="data bytes"):
        read_idx(tmp_path / "short")


def test_the_benchmark_measures_with_the_lds_functions_of_endcredits_attribution_validate() -> None:
    from endcredits.attribution import validity

    for name in ("half_subsets", "masks_of", "rankdata", "spearman_columns", "lds", "noise_ceiling"):
        assert getattr(core, name) is getattr(validity, name)


def test_rankdata_averages_ties_and_spearman_matches_pearson_of_ranks() -> None:
    assert core.rankdata(np.array([10.0, 20.0, 10.0, 5.0])).tolist() == [2.5, 4.0, 2.5, 1.0]
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    b[:, 0] = a[:, 0] ** 3  # monotone: rho = 1
    b[:, 1] = -a[:, 1]  # rho = -1
    rho = core.spearman_columns(a, b)
    assert rho[0] == pytest.approx(1.0) and rho[1] == pytest.approx(-1.0)
    ra, rb = core.rankdata(a[:, 2]), core.rankdata(b[:, 2])
    assert rho[2] == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    assert np.isnan(core.spearman_columns(np.ones((5, 1)), rng.normal(size=(5, 1))))[0]


def test_lds_is_one_for_a_true_linear_datamodel_and_near_zero_for_noise() -> None:
    rng = np.random.default_rng(1)
    n, m, t = 200, 60, 8
    true_scores = rng.normal(size=(n, t))
    masks = core.masks_of(core.half_subsets(n, m, seed=5), n)
    outputs = masks @ true_scores + 1e-6 * rng.normal(size=(m, t))
    value, per_example = core.lds(true_scores, masks, outputs)
    assert value == pytest.approx(1.0, abs=1e-6) and per_example.shape == (t,)
    noise, _ = core.lds(rng.normal(size=(n, t)), masks, outputs)
    assert abs(noise) < 0.2


def test_half_subsets_depend_only_on_seed_and_index() -> None:
    a, b = core.half_subsets(50, 3, seed=9), core.half_subsets(50, 5, seed=9)
    assert np.array_equal(a, b[:3]) and a.shape == (3, 25)
    assert all(len(set(row)) == 25 for row in a)
    assert not np.array_equal(core.half_subsets(50, 1, seed=10), a[:1])


def test_ground_truth_cache_computes_only_missing_rows(tmp_path: Path) -> None:
    calls: list[list[int]] = []

    def compute(subsets: np.ndarray, rows: list[int]) -> np.ndarray:
        calls.append(rows)
        return subsets.sum(axis=1, keepdims=True).astype(np.float64)

    path = tmp_path / "gt.npz"
    first, computed = core.cached_outputs(path, core.half_subsets(20, 3, 1), compute)
    assert computed == 3 and calls == [[0, 1, 2]]
    again, computed = core.cached_outputs(path, core.half_subsets(20, 2, 1), compute)
    assert computed == 0 and np.array_equal(again, first[:2])
    more, computed = core.cached_outputs(path, core.half_subsets(20, 5, 1), compute)
    assert computed == 2 and calls[-1] == [3, 4] and np.array_equal(more[:3], first)
    _, computed = core.cached_outputs(path, core.half_subsets(20, 2, 2), compute)
    assert computed == 2  # another draw is never served from this cache


def _blobs(n: int, seed: int, side: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Tiny 'images': each class lights up its own pixels, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    images = rng.integers(0, 60, size=(n, side, side))
    for c in range(3):
        images[labels == c, c * 2 : c * 2 + 2, :] += 150
    return images.astype(np.uint8), labels.astype(np.uint8)


def _write_dataset(tmp_path: Path) -> dict[str, Path]:
    x_train, y_train = _blobs(120, seed=0)
    x_test, y_test = _blobs(30, seed=1)
    paths = {name: tmp_path / name for name in ("train-images", "train-labels", "test-images", "test-labels")}
    for name, array in zip(paths, (x_train, y_train, x_test, y_test), strict=True):
        write_idx(paths[name], array)
    return paths


def test_batched_training_matches_the_module_and_does_not_depend_on_its_neighbours(tmp_path: Path) -> None:
    data = load_images(_write_dataset(tmp_path), n_train=120, n_test=30)
    subsets = core.half_subsets(120, 3, seed=0)
    together = train_models("mnist-mlp", data.x_train, data.y_train, subsets, [5, 6, 7], classes=data.classes)
    alone = train_models("mnist-mlp", data.x_train, data.y_train, subsets[1:2], [6], classes=data.classes)
    x = torch.from_numpy(data.x_test)
    batched = together.logits(x)
    assert torch.allclose(batched[1], alone.logits(x)[0], atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(together.module(2)(x), batched[2], atol=1e-5)
    accuracy = (batched.argmax(-1) == torch.from_numpy(data.y_test)).float().mean()
    assert accuracy > 0.9
    y = torch.from_numpy(data.y_test)
    p = torch.softmax(batched, -1).gather(-1, y.expand(3, -1)[..., None])[..., 0]
    assert torch.allclose(margins(batched, y), torch.log(p / (1 - p)), atol=1e-4)


def test_tiny_end_to_end_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import lds

    paths = _write_dataset(tmp_path)
    argv = [
        "--setting", "mnist-lr", "--json", "--subsets", "12", "--tune-subsets", "6", "--models", "2", "--k", "64",
        "--n-train", "120", "--n-test", "20", "--tune-tests", "10", "--methods", "endcredits",
        "--cf-tests", "3", "--cf-remove", "10", "--cache-dir", str(tmp_path / "cache"), "--seeds-per-subset", "3",
        "--train-images", str(paths["train-images"]), "--train-labels", str(paths["train-labels"]),
        "--test-images", str(paths["test-images"]), "--test-labels", str(paths["test-labels"]),
    ]  # fmt: skip
    assert lds.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    ours = report["methods"]["endcredits"]
    assert -1.0 <= ours["lds"] <= 1.0 and ours["recipe"] in ("full", "half") and ours["models"] == 2
    assert ours["seeds_per_subset"] == 3 and -1.0 <= ours["lds_seed_mean"] <= 1.0
    assert set(report["noise"]) >= {"seed_to_seed_spearman", "lds_ceiling_one_seed", "lds_ceiling_3_seeds"}
    assert set(ours["tuning"]["recipes"]) == {"full", "half"}
    assert report["subsets"] == 12 and report["test_examples"] == 20 and report["tune_test_examples"] == 10
    cf = report["counterfactual"]
    assert cf["tests"] == 3 and cf["removed"] == 10 and "endcredits" in cf["methods"]
    assert ours["lambda_chosen_with"] == "one"
    # The rerun reads the ground truth from the cache; here lambda is chosen with each recipe's ensemble.
    assert lds.main([*argv, "--lambda-with", "ensemble"]) == 0
    out = capsys.readouterr()
    assert "0 retrained now" in out.err and "lambda by tuning LDS with 2 models" in out.err
    again = json.loads(out.out)["methods"]["endcredits"]
    grid = again["tuning"]["lambda_grid"]
    assert again["lambda_chosen_with"] == "ensemble" and max(grid.values()) == pytest.approx(
        again["tuning"]["recipes"][again["recipe"]]["tune_lds"]
    )


def test_tiny_abc_lm_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import lds

    argv = [
        "--setting", "abc-lm", "--json", "--tunes", "12", "--lm-steps", "3", "--subsets", "5", "--tune-subsets", "3",
        "--models", "1", "--k", "64", "--tune-tests", "4", "--methods", "endcredits,traker,dattri-if",
        "--cf-tests", "1", "--cf-remove", "2", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    assert lds.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test_examples"] == 4 and report["tune_test_examples"] == 4
    ours = report["methods"]["endcredits"]
    assert ours["recipe"] == "full" and np.isfinite(ours["lds"])
    assert "classifier" in report["methods"]["dattri-if"]["skipped"]
    traker = report["methods"]["traker"]  # runs where the [bench] extra is installed
    assert ("not importable" in traker["skipped"]) if "skipped" in traker else -1.0 <= traker["lds"] <= 1.0
    assert report["counterfactual"]["removed"] == 2


def test_method_lambdas_replace_one_methods_grid() -> None:
    from lds import method_grids

    known = {"endcredits": (1.0,), "traker": (0.0, 1.0), "dattri": (0.0,)}
    assert method_grids(["traker=1e2,1e4", "dattri=1"], known) == {"traker": (100.0, 10_000.0), "dattri": (1.0,)}
    assert method_grids([], known) == {}
    for bad in ("traker", "nobody=1", "traker=", "traker=a,1"):
        with pytest.raises(ValueError, match="--method-lambdas"):
            method_grids([bad], known)


def test_method_lambdas_is_the_grid_stage_a_searches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import _lds_methods
    import lds

    monkeypatch.setattr(_lds_methods, "LAMBDA_GRIDS", dict(_lds_methods.LAMBDA_GRIDS))
    paths = _write_dataset(tmp_path)
    argv = [
        "--setting", "mnist-lr", "--json", "--subsets", "8", "--tune-subsets", "6", "--models", "2", "--k", "64",
        "--n-train", "120", "--n-test", "20", "--tune-tests", "10", "--methods", "endcredits", "--recipes", "half",
        "--cf-tests", "0", "--cache-dir", str(tmp_path / "cache"), "--method-lambdas", "endcredits=0.5,20",
        "--train-images", str(paths["train-images"]), "--train-labels", str(paths["train-labels"]),
        "--test-images", str(paths["test-images"]), "--test-labels", str(paths["test-labels"]),
    ]  # fmt: skip
    assert lds.main(argv) == 0
    ours = json.loads(capsys.readouterr().out)["methods"]["endcredits"]
    assert set(ours["tuning"]["lambda_grid"]) == {"0.5", "20"} and ours["lambda"] in (0.5, 20.0)
    assert ours["recipe"] == "half" and set(ours["tuning"]["recipes"]) == {"half"}
    with pytest.raises(SystemExit):
        lds.main([*argv, "--method-lambdas", "nobody=1"])


def _peer_job(tmp_path: Path, setting: str, k: int) -> tuple[Any, list[dict[str, torch.Tensor]]]:
    """Two tiny models of ``setting`` as a peer's job, and a copy of their weights to check them against."""
    from _lds_methods import PeerJob

    data = load_images(_write_dataset(tmp_path), n_train=120, n_test=30)
    trained = train_models(
        setting, data.x_train, data.y_train, core.half_subsets(120, 2, seed=0), [5, 6], classes=data.classes
    )
    job = PeerJob(
        [trained.module(0), trained.module(1)],
        (torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)),
        (torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)),
        k=k,
    )
    return job, [{name: v.clone() for name, v in m.state_dict().items()} for m in job.models]


def _assert_unchanged(models: Any, before: list[dict[str, torch.Tensor]]) -> None:
    """traker and dattri load every checkpoint into the module they are given: never the ensemble's model 0."""
    for model, state in zip(models, before, strict=True):
        assert all(torch.equal(model.state_dict()[name], v) for name, v in state.items())


def test_traker_reuses_its_projected_features_across_lambdas_and_leaves_the_models_alone(tmp_path: Path) -> None:
    pytest.importorskip("trak")
    from _lds_methods import run_traker_classifier

    job, before = _peer_job(tmp_path, "mnist-mlp", k=256)  # more columns than TRAKer's block of 100
    grid = run_traker_classifier(job, [0.1, 1.0, 10.0])
    _assert_unchanged(job.models, before)
    alone = run_traker_classifier(job, [10.0])
    assert grid.scores[10.0].shape == (120, 30)
    # A fresh TRAKer with that lambda gives the same scores as re-finalizing the grid's features.
    np.testing.assert_allclose(grid.scores[10.0], alone.scores[10.0], rtol=1e-4, atol=1e-6)
    assert not np.allclose(grid.scores[0.1], grid.scores[10.0])
    assert grid.featurize_s > 0 and set(grid.score_s) == {0.1, 1.0, 10.0}
    wide = run_traker_classifier(dataclasses.replace(job, batch_size=60), [10.0]).scores[10.0]
    np.testing.assert_allclose(wide, grid.scores[10.0], rtol=1e-3, atol=1e-6)


def test_dattri_solves_every_lambda_from_one_cache_and_leaves_the_models_alone(tmp_path: Path) -> None:
    pytest.importorskip("dattri")
    from _lds_methods import run_dattri_classifier

    job, before = _peer_job(tmp_path, "mnist-lr", k=32)
    grid = run_dattri_classifier(job, [0.1, 10.0])
    _assert_unchanged(job.models, before)
    # One cache solved for every lambda gives what one TRAKAttributor(regularization=lambda) per value gives.
    for lam in (0.1, 10.0):
        alone = run_dattri_classifier(job, [lam]).scores[lam]
        np.testing.assert_allclose(grid.scores[lam], alone, rtol=1e-5, atol=1e-7)
    assert not np.allclose(grid.scores[0.1], grid.scores[10.0])
    # The batch size only changes how many examples share one regeneration of the projection matrix.
    wide = run_dattri_classifier(dataclasses.replace(job, batch_size=60), [10.0]).scores[10.0]
    np.testing.assert_allclose(wide, grid.scores[10.0], rtol=1e-3, atol=1e-6)


def test_the_lm_peers_score_the_char_lm_as_endcredits_does() -> None:
    """traker and dattri on the character LM, with the model output the wrappers give them, against
    endcredits' exact-gradient TRAK on the same model: at k far above the 10 training tunes the projections
    keep the geometry, so each target's ranking of the tunes agrees (and the models are left alone)."""
    pytest.importorskip("trak")
    pytest.importorskip("dattri")
    from _lds_data import abc_tunes
    from _lds_lm import LENGTH_MAX, Member, _train, example_log_likelihood, run_endcredits_lm, run_peer_lm

    from endcredits.attribution.task import encode_texts, lm_log_likelihood_sum

    tunes = abc_tunes(14, length_max=LENGTH_MAX)
    train, targets = tunes[:10], tunes[10:]
    lm = _train(train, seed=1, steps=10)
    before = {name: v.clone() for name, v in lm.model.state_dict().items()}
    ids, mask = encode_texts(lm.vocab, targets[:2], length_max=LENGTH_MAX)
    params = dict(lm.model.named_parameters())
    one = torch.stack([example_log_likelihood(lm.model, params, (ids[i], mask[i])) for i in range(2)])
    torch.testing.assert_close(one, lm_log_likelihood_sum(lm.model, (ids, mask)))
    members = [Member(lm, (lm.model.state_dict(),))]
    ours = run_endcredits_lm(members, train, targets, k=0, lambdas=[1e-6], projection="identity").scores[1e-6]
    for method in ("traker", "dattri"):
        theirs = run_peer_lm(method, members, train, targets, k=1024, lambdas=[1e-2]).scores[1e-2]
        assert theirs.shape == ours.shape == (10, 4)
        agreement = core.spearman_columns(theirs, ours)
        assert agreement.min() > 0.8, (method, agreement)
    assert all(torch.equal(lm.model.state_dict()[name], v) for name, v in before.items())


def test_the_noise_ceiling_rises_with_the_seeds_averaged() -> None:
    """Outputs = signal + independent noise of equal variance: two retrainings correlate at about 1/2, so
    one retraining caps the LDS near sqrt(1/2) and the mean of R near sqrt(R/(R+1))."""
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(400, 30))
    runs = [signal + rng.normal(size=signal.shape) for _ in range(4)]
    ceiling = core.noise_ceiling(*runs)
    assert abs(ceiling["seed_to_seed_spearman"] - 0.5) < 0.06
    assert abs(ceiling["lds_ceiling_one_seed"] - 0.5**0.5) < 0.05
    assert abs(ceiling["lds_ceiling_4_seeds"] - 0.8**0.5) < 0.05
    # The truth itself scores what the ceiling says against the mean of the four.
    mean = np.mean(runs, axis=0)
    assert abs(np.nanmean(core.spearman_columns(signal, mean)) - ceiling["lds_ceiling_4_seeds"]) < 0.05


def test_each_retraining_of_the_main_draw_has_its_own_seeds() -> None:
    assert [core.reseed_draw(r) for r in (2, 3, 4)] == ["reseed", "reseed-3", "reseed-4"]
    offsets = [core.seed_offset(d) for d in ("main", "tune", "reseed", "reseed-3", "reseed-4")]
    assert offsets == [1_000_000, 2_000_000, 5_000_000, 6_000_000, 7_000_000]
    with pytest.raises(ValueError, match="seed 1"):
        core.reseed_draw(1)
