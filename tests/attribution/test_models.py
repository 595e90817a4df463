"""One door for every model: ``load_model(path, kind)`` for the built-in kinds and for an operator's own
``module:function``; what cannot be imported, called or used is one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from endcredits.attribution.charlm import save_lm, train_char_lm
from endcredits.attribution.featurizer import Featurizer
from endcredits.attribution.models import AttributionModel, load_model
from endcredits.attribution.settings import AttributionSettings
from endcredits.errors import ValidationError
from hf_models import save_gpt2, save_unet

SETTINGS = AttributionSettings(k=32, projection="gaussian", length_chars=32)


def _features(model: AttributionModel, contents: list[bytes]) -> np.ndarray:
    task = model.task(SETTINGS)
    batch = model.encode_works(contents, [f"w{i}" for i in range(len(contents))], SETTINGS)
    return Featurizer(task, k=32, seed=0, projection="gaussian").compute(batch, role="train")


def test_each_builtin_kind_loads_and_featurizes(tmp_path: Path) -> None:
    import io

    from PIL import Image

    texts = [b"the first tune", b"a second one", b"and a third"]
    lm = train_char_lm([t.decode() for t in texts], seed=0, steps_max=2, time_s_max=30.0, batch_size=2, window=16)
    save_lm(lm, tmp_path / "char.pt")
    png = io.BytesIO()
    Image.fromarray((np.arange(256).reshape(16, 16) % 255).astype(np.uint8)).save(png, format="PNG")
    cases = [
        (tmp_path / "char.pt", "charlm", texts),
        (save_gpt2(tmp_path / "gpt2"), "hf-causal-lm", texts),
        (save_unet(tmp_path / "unet"), "diffusers-unet", [png.getvalue()] * 2),
    ]
    for path, kind, contents in cases:
        model = load_model(path, kind)
        assert model.kind == kind and len(model.checksum()) == 64
        assert load_model(path, kind).checksum() == model.checksum()
        features = _features(model, contents)
        assert features.shape == (len(contents), 32) and np.isfinite(features).all()


def test_an_operators_function_is_a_model_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_gpt2(tmp_path / "gpt2")
    (tmp_path / "operator_models.py").write_text(
        "from endcredits.attribution.models import CausalLMModel\n"
        "from endcredits.attribution.hf import load_causal_lm\n"
        "def gpt2(path):\n    return CausalLMModel(load_causal_lm(path), kind='operator_models:gpt2')\n"
        "def wrong(path):\n    return 42\n"
        "def broken(path):\n    raise RuntimeError('no such file in ' + str(path))\n"
    )
    (tmp_path / "operator_broken.py").write_text("import no_such_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = load_model(tmp_path / "gpt2", "operator_models:gpt2")
    assert model.kind == "operator_models:gpt2"
    assert model.checksum() == load_model(tmp_path / "gpt2", "hf-causal-lm").checksum()
    refusals = {
        "operator_models:wrong": "returned int, not an AttributionModel",
        "operator_models:broken": "could not load .*: RuntimeError: no such file in",
        "operator_models:absent": "operator_models has no function absent",
        "operator_broken:build": "cannot import operator_broken .*ModuleNotFoundError",
        "not-a-kind": "neither one of charlm, hf-causal-lm, diffusers-unet nor module:function",
    }
    for kind, message in refusals.items():
        with pytest.raises(ValidationError, match=message) as err:
            load_model(tmp_path / "gpt2", kind)
        assert "\n" not in str(err.value)
    sys.modules.pop("operator_models", None)


def test_the_wrong_content_for_a_model_names_the_work(tmp_path: Path) -> None:
    model = load_model(save_gpt2(tmp_path / "gpt2"), "hf-causal-lm")
    with pytest.raises(ValidationError, match="work w2 is not UTF-8 text"):
        model.encode_works([b"fine text", b"\xff\xfe"], ["w1", "w2"], SETTINGS)
    unet = load_model(save_unet(tmp_path / "unet"), "diffusers-unet")
    with pytest.raises(ValidationError, match="output o1 is not an image"):
        unet.encode_outputs([b"a text, not a picture"], ["o1"], SETTINGS)
    with pytest.raises(ValidationError, match="use ensemble 'final'"):
        unet.task(AttributionSettings(ensemble="trajectory"))


def test_a_unets_timesteps_and_measurement_are_settings(tmp_path: Path) -> None:
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.fromarray((np.arange(256).reshape(16, 16) % 251).astype(np.uint8)).save(png, format="PNG")
    model = load_model(save_unet(tmp_path / "unet"), "diffusers-unet")
    few = AttributionSettings(timesteps=3)
    assert model.encode_works([png.getvalue()], ["w"], few)["timesteps"].shape == (1, 3)
    assert model.encode_works([png.getvalue()], ["w"], SETTINGS)["timesteps"].shape == (1, 10)  # the default
    batch = model.encode_works([png.getvalue()] * 2, ["a", "b"], few)
    loss = Featurizer(model.task(few), k=32, seed=0, projection="gaussian").compute(batch, role="train")
    norm = AttributionSettings(timesteps=3, measurement="squared-norm")
    other = Featurizer(model.task(norm), k=32, seed=0, projection="gaussian").compute(batch, role="train")
    assert not np.allclose(loss, other)  # another function differentiated, other features
    assert few.measurement == "loss"  # the default
    with pytest.raises(ValidationError, match="measurement must be one of squared-norm, loss"):
        AttributionSettings(measurement="l2")
    assert few.fingerprint() != AttributionSettings().fingerprint()  # features of each live apart
