"""The LDS benchmark's generative settings, tiny: a Hugging Face GPT-2 on ABC tunes (``hf-gpt2``) and a
DDPM on a folder of images written here (``image-ddpm``); D-TRAK written from the paper against endcredits'
squared-norm measurement; the default image folder's one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import _lds_core as core
import numpy as np
import pytest
import torch
from PIL import Image


def _write_images(folder: Path, n: int) -> Path:
    """``n`` 16x16 PNGs of white discs of different sizes and places on black."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    for i in range(n):
        radius, (cy, cx) = rng.integers(2, 7), rng.integers(4, 12, 2)
        pixels = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2, 255, 0).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


def _tiny_ddpm_argv(tmp_path: Path) -> list[str]:
    """lds.py's flags for a tiny image-ddpm run on 16 images written here (8 trained on, 3 steps)."""
    images = _write_images(tmp_path / "images", 16)
    return [
        "--setting", "image-ddpm", "--json", "--images", str(images), "--ddpm-train", "8", "--ddpm-steps", "3",
        "--ddpm-timesteps", "2", "--subsets", "4", "--tune-subsets", "3", "--k", "32", "--tune-tests", "4",
        "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip


@pytest.mark.slow
def test_tiny_hf_gpt2_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import lds

    argv = [
        "--setting", "hf-gpt2", "--json", "--tunes", "12", "--lm-steps", "4", "--subsets", "4", "--tune-subsets", "3",
        "--models", "1", "--k", "64", "--tune-tests", "4", "--methods", "endcredits,traker,dattri-if",
        "--seeds-per-subset", "2", "--cf-tests", "1", "--cf-remove", "2", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    assert lds.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test_examples"] == 4 and report["tune_test_examples"] == 4
    ours = report["methods"]["endcredits"]
    assert np.isfinite(ours["lds"]) and ours["seeds_per_subset"] == 2
    assert set(ours["groups"]) == {"held-out", "generated"}
    assert "lds_ceiling_two_seeds" in report["noise"]
    assert "hf-gpt2 runs" in report["methods"]["dattri-if"]["skipped"]
    traker = report["methods"]["traker"]  # runs where the [bench] extra is installed
    assert ("not importable" in traker["skipped"]) if "skipped" in traker else -1.0 <= traker["lds"] <= 1.0
    assert report["counterfactual"]["removed"] == 2
    assert lds.main(argv) == 0  # the rerun reads every draw from the cache
    assert "(0 retrained now" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_image_ddpm_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import lds

    argv = [
        *_tiny_ddpm_argv(tmp_path), "--models", "1", "--methods", "endcredits,endcredits-loss,dtrak,traker,dattri",
        "--seeds-per-subset", "2", "--cf-tests", "1", "--cf-remove", "2",
    ]  # fmt: skip
    assert lds.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["endcredits_projection"] == "auto" and report["train_examples"] == 8
    # auto as the product resolves it: 8 images' exact gradients fit, so no projection at all.
    assert report["methods"]["endcredits"]["notes"]["projection"] == "identity"
    for method in ("endcredits", "endcredits-loss", "dtrak"):
        result = report["methods"][method]
        assert -1.0 <= result["lds"] <= 1.0 and set(result["groups"]) == {"held-out", "generated"}
    assert "image-ddpm runs" in report["methods"]["dattri"]["skipped"]
    assert {"noise", "noise_held_out", "noise_generated"} <= set(report)
    assert set(report["counterfactual"]["methods"]) >= {"endcredits", "endcredits-loss", "dtrak"}


@pytest.mark.slow
def test_tiny_ddpm_measurement_reads_the_lds_draws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``ddpm_measurement.py`` scores both measurements on lds.py's tuning draw, read from lds.py's cache."""
    import ddpm_measurement
    import lds

    images = _write_images(tmp_path / "images", 16)
    draw = [
        "--images", str(images), "--ddpm-train", "8", "--ddpm-steps", "3", "--ddpm-timesteps", "2", "--subsets", "4",
        "--tune-subsets", "3", "--tune-tests", "4", "--cache-dir", str(tmp_path / "cache"), "--json",
    ]  # fmt: skip
    assert lds.main(["--setting", "image-ddpm", "--methods", "endcredits", "--cf-tests", "0", *draw]) == 0
    capsys.readouterr()
    assert ddpm_measurement.main([*draw, "--lambdas", "1,1000", "--tsnorm", "--relatif"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("(0 retrained now") == 2  # the main and the tuning draw
    report = json.loads(captured.out)
    assert report["tune_outputs"] == 4 and report["projection"]["loss"]["projection"] == "identity"
    measurements = ("loss", "squared-norm", "loss-tsnorm", "loss-tsnorm-both", "loss-unit", "loss-relatif")
    assert set(report["tuning"]) == {
        f"{r} {m} {lam}" for r in ("full", "half") for m in measurements for lam in ("1", "1000")
    }
    assert "half: loss-tsnorm-both 1000 - loss 1" in report["gaps"]
    assert "full: loss-relatif 1 - loss 1" in report["gaps"] and "half: loss-unit 1000 - loss 1" in report["gaps"]
    assert len(report["projection"]["loss-unit"]["row_norms"]["train 0"]) == 5
    assert report["projection"]["loss-relatif"]["relative"] == {"train": "scores over sqrt(self-influence)"}
    assert len(report["projection"]["loss-tsnorm-both"]["timestep_norms"]["target 0"]["median"]) == 2
    for row in report["tuning"].values():
        assert -1.0 <= row["all"] <= 1.0
    gap = report["gaps"]["full: squared-norm 1 - loss 1"]
    one = report["tuning"]
    assert gap["all"] == pytest.approx(one["full squared-norm 1"]["all"] - one["full loss 1"]["all"])

    # More timesteps for the training images' features, and the Gauss-Newton kernel: the same draws.
    assert ddpm_measurement.main([*draw, "--lambdas", "1", "--work-timesteps", "2,4", "--ggn", "--k", "64"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("(0 retrained now") == 4
    report = json.loads(captured.out)
    methods = ("loss", "squared-norm", "loss-ggn")
    assert set(report["tuning"]) == {f"{r} {m}@{w} 1" for r in ("full", "half") for m in methods for w in (2, 4)}
    assert report["projection"]["loss-ggn@4"]["kernel"] == "gauss-newton"
    assert report["projection"]["loss-ggn@4"]["projection"] == "gaussian"
    at_two = report["tuning"]["full loss@2 1"]["all"]
    assert at_two == pytest.approx(one["full loss 1"]["all"])  # the work timesteps of the run before
    assert report["tuning"]["full loss@4 1"]["all"] != pytest.approx(at_two)


def test_the_peers_rank_the_gpt2_tunes_as_endcredits_does(tmp_path: Path) -> None:
    """traker and dattri on the saved-and-loaded GPT-2, with the model outputs the wrappers give them, against
    endcredits' ``CausalLM.task``: with a ridge far above the kernel's eigenvalues every TRAK scores the inner
    products of the projected gradients, so at k far above the 10 training tunes each target ranks them alike
    (and the models are left alone)."""
    pytest.importorskip("trak")
    pytest.importorskip("dattri")
    from _lds_data import abc_tunes
    from _lds_hf import LENGTH_MAX, char_tokenizer, run_hf_method, train_gpt2

    from endcredits.attribution.hf import load_causal_lm

    tunes = abc_tunes(14, length_max=LENGTH_MAX)
    train, targets = tunes[:10], tunes[10:]
    tokenizer = char_tokenizer(tunes)
    ids = torch.tensor(tokenizer("\n".join(train), add_special_tokens=False)["input_ids"])
    train_gpt2(ids, len(tokenizer.get_vocab()), seed=1, steps=10).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lm = load_causal_lm(tmp_path)
    before = {name: v.clone() for name, v in lm.model.state_dict().items()}
    ours = run_hf_method("endcredits", [lm], train, targets, k=1024, lambdas=[1e6], projection="gaussian")
    for method in ("traker", "dattri"):
        theirs = run_hf_method(method, [lm], train, targets, k=1024, lambdas=[1e12]).scores[1e12]
        assert theirs.shape == ours.scores[1e6].shape == (10, 4)
        agreement = core.spearman_columns(theirs, ours.scores[1e6])
        assert agreement.min() > 0.8, (method, agreement)
    assert all(torch.equal(lm.model.state_dict()[name], v) for name, v in before.items())


def test_dtrak_written_here_ranks_like_endcredits_squared_norm() -> None:
    """Two implementations of one definition: D-TRAK's per-example gradients of the predicted noise's squared
    norm, projected far above the 10 training images, rank them for each target as endcredits'
    ``measurement="squared-norm"`` does on the same images, noise and timesteps. With a ridge far above the
    kernel's eigenvalues both scores are the inner products of the projected gradients (their lambdas differ
    in kind: endcredits' is relative to the mean eigenvalue, D-TRAK's absolute)."""
    from _lds_ddpm import NOISE_SEED, new_scheduler, run_dtrak, train_ddpm
    from _lds_methods import run_endcredits

    from endcredits.attribution.diffusion import DiffusionUNet

    images = torch.rand((14, 1, 16, 16), generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = train_ddpm(images[:10], seed=1, steps=3)
    unet = DiffusionUNet(model, new_scheduler().alphas_cumprod.clone(), 1, 16)
    train, targets = (unet.encode(x, timesteps=2, seed=NOISE_SEED) for x in (images[:10], images[10:]))
    ours = run_endcredits(
        unet.task(measurement="squared-norm"), train, targets, k=2048, lambdas=[1e6], projection="gaussian"
    ).scores[1e6]
    keys = ("images", "noise", "timesteps")
    theirs = run_dtrak(
        [model], tuple(train[k] for k in keys), tuple(targets[k] for k in keys), unet.alphas_cumprod.float(),
        k=2048, lambdas=[1e12],
    ).scores[1e12]  # fmt: skip
    assert theirs.shape == ours.shape == (10, 4)
    agreement = core.spearman_columns(theirs, ours)
    assert agreement.min() > 0.8, agreement


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # forward mode's first use
def test_the_denoising_gauss_newton_probes_estimate_the_exact_curvature() -> None:
    """Along any direction ``w`` of the parameters, the probes' curvature ``sum_r (grad u_r . w)^2`` is an
    unbiased estimate of ``w^T G w``, ``G`` the Gauss-Newton matrix of the denoising loss averaged over the
    timesteps: ``2 / (K D) sum_k |J_k w|^2``. With many probes the two agree closely; with one they do not."""
    from _lds_ddpm import NOISE_SEED, _DenoisingGaussNewton, new_scheduler, train_ddpm
    from torch.func import functional_call, jvp

    from endcredits.attribution.diffusion import DiffusionUNet

    images = torch.rand((2, 1, 16, 16), generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = train_ddpm(images, seed=1, steps=2).eval()
    unet = DiffusionUNet(model, new_scheduler().alphas_cumprod.clone(), 1, 16)
    batch = unet.encode(images[:1], timesteps=3, seed=NOISE_SEED)
    params = {name: p.detach() for name, p in model.named_parameters()}
    g = torch.Generator().manual_seed(2)
    w = {name: torch.randn(p.shape, generator=g) for name, p in params.items()}

    def along(fn: object) -> torch.Tensor:
        _, tangent = jvp(lambda p: fn(lambda *a: functional_call(model, p, a), batch), (params,), (w,))  # type: ignore[operator]
        return tangent

    def predicted_noise(call: object, b: dict[str, torch.Tensor]) -> torch.Tensor:
        a = unet.alphas_cumprod[b["timesteps"]].reshape(1, -1, 1, 1, 1).float()
        noisy = a.sqrt() * b["images"][:, None] + (1 - a).sqrt() * b["noise"]
        return torch.stack([call(noisy[:, k], b["timesteps"][:, k]).sample for k in range(3)])  # type: ignore[operator]

    def probes(n: int) -> object:
        curvature = _DenoisingGaussNewton(unet.alphas_cumprod, probes=n)

        class Wrapped(torch.nn.Module):  # the model called through the functional parameters
            def __init__(self, call: object) -> None:
                super().__init__()
                self.call = call

            def forward(self, x: torch.Tensor, t: torch.Tensor) -> object:
                return self.call(x, t)  # type: ignore[operator]

        return lambda call, b: curvature(Wrapped(call), b)

    exact = float((along(predicted_noise) ** 2).sum()) * 2 / (3 * 256)
    many = float((along(probes(3000)) ** 2).sum())
    one = float((along(probes(1)) ** 2).sum())
    assert many == pytest.approx(exact, rel=0.05)
    assert one != pytest.approx(exact, rel=0.05)


def test_timestep_normalized_features_average_each_timesteps_unit_gradient() -> None:
    """A normalized role's feature row is the mean over the timesteps of each timestep's gradient of minus
    its denoising loss, divided by its norm (autograd here); the other role keeps ``Featurizer.compute``."""
    from _lds_ddpm import NOISE_SEED, new_scheduler, timestep_normalized, train_ddpm

    from endcredits.attribution.diffusion import DiffusionUNet
    from endcredits.attribution.featurizer import Featurizer

    images = torch.rand((3, 1, 16, 16), generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = train_ddpm(images, seed=1, steps=2).eval()
    unet = DiffusionUNet(model, new_scheduler().alphas_cumprod.clone(), 1, 16)
    batch = unet.encode(images, timesteps=3, seed=NOISE_SEED)
    featurizer = Featurizer(unet.task(), k=None, seed=0, projection="identity")
    features = timestep_normalized(("train",))
    normalized, plain = features(featurizer, batch, 0, "train"), features(featurizer, batch, 0, "target")
    assert np.array_equal(plain, featurizer.compute(batch, role="target"))
    params = [p for p in model.parameters() if p.requires_grad]

    def gradient(i: int, steps: list[int]) -> torch.Tensor:
        t = batch["timesteps"][i, steps]
        a = unet.alphas_cumprod.float()[t].reshape(-1, 1, 1, 1)
        noise = batch["noise"][i, steps]
        eps = model(a.sqrt() * images[i][None] + (1 - a).sqrt() * noise, t).sample
        loss = -((eps - noise) ** 2).mean()
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    for i in range(3):
        assert np.allclose(plain[i], gradient(i, [0, 1, 2]).numpy(), rtol=1e-4, atol=1e-7)  # the same parameter order
        units = [gradient(i, [k]) / gradient(i, [k]).norm() for k in range(3)]
        expected = torch.stack(units).mean(dim=0).numpy()
        assert np.allclose(normalized[i], expected, rtol=1e-4, atol=1e-7)
        assert not np.allclose(normalized[i] / np.linalg.norm(normalized[i]), plain[i] / np.linalg.norm(plain[i]))


def test_unit_rows_divide_only_the_training_rows_by_their_norms() -> None:
    """``unit_rows(("train",))``: each training row over its norm, the test rows as ``Featurizer.compute``."""
    from _lds_ddpm import unit_rows

    rows = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32) * np.arange(1, 6)[:, None]

    class Rows:
        def compute(self, batch: object, *, checkpoint_index: int, role: str) -> np.ndarray:
            return rows * (checkpoint_index + 1)

    norms: dict[str, object] = {}
    features = unit_rows(("train",), norms)
    train, target = features(Rows(), {}, 1, "train"), features(Rows(), {}, 1, "target")
    assert np.array_equal(target, rows * 2)
    assert np.allclose(train * np.linalg.norm(rows * 2, axis=1)[:, None], rows * 2, rtol=1e-6)
    assert np.allclose(np.linalg.norm(train, axis=1), 1.0, rtol=1e-6)
    assert norms["train 1"][-1] == pytest.approx(np.linalg.norm(rows * 2, axis=1).max(), rel=1e-4)
    assert "target 1" not in norms


@pytest.mark.parametrize(("n", "dim"), [(6, 10), (12, 5)])  # the dual form and the primal one
def test_the_self_relative_trak_scorer_divides_by_the_root_self_influence(n: int, dim: int) -> None:
    """Per model, ``q_i phi_i^T (K + lambda I)^-1 phi_t / sqrt(phi_i^T (K + lambda I)^-1 phi_i)`` with
    ``K = Phi^T Phi`` and the relative lambda (times the kernel's mean nonzero eigenvalue), averaged over
    the models; written out here in numpy. It ranks differently from the plain TRAK scores."""
    from _lds_ddpm import SelfRelativeTRAKScorer

    from endcredits.attribution.scorers import TRAKScorer

    rng = np.random.default_rng(1)
    phis = [rng.normal(size=(n, dim)) * rng.uniform(0.2, 5.0, size=(n, 1)) for _ in range(2)]
    targets = [rng.normal(size=(3, dim)) for _ in range(2)]
    weights = [rng.uniform(0.5, 1.5, size=n) for _ in range(2)]
    lam = 0.7
    expected = np.zeros((3, n))
    for phi, target in zip(phis, targets, strict=True):
        system = phi.T @ phi + lam * np.trace(phi @ phi.T) / min(n, dim) * np.eye(dim)
        solved = np.linalg.solve(system, phi.T)  # [dim, n]
        self_influence = np.einsum("ij,ji->i", phi, solved)
        expected += (target @ solved) * np.mean(weights, axis=0) / 2 / np.sqrt(self_influence)
    as32 = [p.astype(np.float32) for p in phis]
    scorer = SelfRelativeTRAKScorer(lam).fit(as32, weights)
    scores = scorer.score([t.astype(np.float32) for t in targets])
    assert np.allclose(scores, expected, rtol=1e-4, atol=1e-6)
    assert len(scorer.self_influences) == 2 and (scorer.self_influences[0] > 0).all()
    plain = TRAKScorer(lam).fit(as32, weights).score([t.astype(np.float32) for t in targets])
    assert not np.array_equal(np.argsort(plain, axis=1), np.argsort(scores, axis=1))


def test_keeping_checkpoints_trains_the_same_ddpm() -> None:
    """The hook that keeps intermediate parameters changes nothing of the training: the final model is the
    plain one bit for bit, and each kept state is the parameters after its step, not a later one."""
    from _lds_ddpm import train_ddpm, train_ddpm_keeping

    images = torch.rand((6, 1, 16, 16), generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain = train_ddpm(images, seed=3, steps=3)
    kept_model, states = train_ddpm_keeping(images, seed=3, steps=3, checkpoint_steps=[1, 2])
    assert all(torch.equal(v, kept_model.state_dict()[k]) for k, v in plain.state_dict().items())
    assert len(states) == 2
    name = next(k for k, v in plain.state_dict().items() if v.is_floating_point() and v.numel() > 1)
    first, second, final = states[0][name], states[1][name], plain.state_dict()[name]
    assert not torch.equal(first, second) and not torch.equal(second, final)


@pytest.mark.slow
def test_tiny_image_ddpm_checkpoint_recipes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--ddpm-checkpoints`` adds the "+checkpoints" recipes: each model at the named steps and at the end."""
    import lds

    argv = [
        *_tiny_ddpm_argv(tmp_path), "--models", "2", "--methods", "endcredits-loss,dtrak", "--cf-tests", "0",
        "--ddpm-checkpoints", "1,2", "--lambda-with", "ensemble",
    ]  # fmt: skip
    assert lds.main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "steps [1, 2]" in report["recipes_note"]
    for method in ("endcredits-loss", "dtrak"):
        assert set(report["methods"][method]["tuning"]["recipes"]) == {
            "full", "half", "full+checkpoints", "half+checkpoints"
        }  # fmt: skip
    assert "with 6 models (half+checkpoints)" in captured.err  # 2 models x (steps 1, 2 and the end)
    for bad in ("0", "4", "two"):
        with pytest.raises(SystemExit) as exited:
            lds.main([*argv, "--ddpm-checkpoints", bad])  # the last one counts
        assert exited.value.code == 2
        assert "--ddpm-checkpoints" in capsys.readouterr().err


def test_the_default_images_need_openclipart_and_say_which_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import _lds_ddpm
    import lds

    monkeypatch.setattr(_lds_ddpm, "OPENCLIPART_SVG", tmp_path / "no-such-folder")
    with pytest.raises(SystemExit) as exited:
        lds.main(["--setting", "image-ddpm", "--cache-dir", str(tmp_path / "cache")])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--images DIR" in err[0] and "openclipart-svg" in err[0]
