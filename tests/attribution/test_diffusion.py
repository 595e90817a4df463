"""A diffusers UNet through the engine: a small DDPM built and saved here. The exact features must equal each
image's true gradient of the measurement, with the shared seeded noise; bad images and folders are one line."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from endcredits.attribution.diffusion import DiffusionUNet, images_from_bytes, load_unet
from endcredits.attribution.featurizer import Featurizer
from endcredits.errors import ManifestError, ValidationError
from hf_models import save_unet


@pytest.fixture(scope="module")
def unet(tmp_path_factory: pytest.TempPathFactory) -> DiffusionUNet:
    return load_unet(save_unet(tmp_path_factory.mktemp("ddpm")))


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 1, 16, 16), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _true_gradient(unet: DiffusionUNet, batch: dict[str, torch.Tensor], row: int, kind: str) -> np.ndarray:
    one = {key: value[row : row + 1] for key, value in batch.items()}
    unet.model.zero_grad()
    unet.task(measurement=kind).measurement(unet.model, one).sum().backward()  # type: ignore[arg-type]
    return torch.cat([p.grad.reshape(-1) for _, p in unet.model.named_parameters()]).numpy()  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["squared-norm", "loss"])
def test_exact_features_are_each_images_true_gradient(unet: DiffusionUNet, kind: str) -> None:
    batch = unet.encode(_images(3), timesteps=4, seed=7)
    got = Featurizer(unet.task(measurement=kind), k=None, seed=0, projection="identity", chunk_size=2).compute(batch)
    for row in range(3):
        np.testing.assert_allclose(got[row], _true_gradient(unet, batch, row, kind), rtol=2e-4, atol=1e-6)


def test_the_noise_is_shared_and_seeded(unet: DiffusionUNet) -> None:
    a = unet.encode(_images(2), timesteps=5, seed=3)
    b = unet.encode(_images(4, seed=1), timesteps=5, seed=3)
    c = unet.encode(_images(2), timesteps=5, seed=4)
    assert torch.equal(a["noise"][0], a["noise"][1]) and torch.equal(a["noise"][0], b["noise"][3])
    assert not torch.equal(a["noise"], c["noise"])
    assert a["timesteps"][0].tolist() == sorted(set(a["timesteps"][0].tolist()))  # evenly spaced, inside the schedule
    assert 0 < int(a["timesteps"].min()) and int(a["timesteps"].max()) < 99


def test_the_two_measurements_differ_and_the_checksum_is_the_models(unet: DiffusionUNet, tmp_path: Path) -> None:
    batch = unet.encode(_images(2), timesteps=3, seed=0)
    f = Featurizer(unet.task(measurement="squared-norm"), k=64, seed=0, projection="gaussian").compute(batch)
    g = Featurizer(unet.task(measurement="loss"), k=64, seed=0, projection="gaussian").compute(batch)
    assert f.shape == g.shape == (2, 64) and not np.allclose(f, g)
    assert load_unet(save_unet(tmp_path / "same")).checksum() == unet.checksum()
    assert load_unet(save_unet(tmp_path / "other", seed=1)).checksum() != unet.checksum()


def test_images_decode_resize_and_scale() -> None:
    png = io.BytesIO()
    Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8)).save(png, format="PNG")
    out = images_from_bytes([png.getvalue()], channels=1, side=4, what=["work w1"])
    assert out.shape == (1, 1, 4, 4) and float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    with pytest.raises(
        ValidationError, match=r"^work w2 is not an image this model can read \(UnidentifiedImageError\)$"
    ):
        images_from_bytes([png.getvalue(), b"GIF89 cut short"], channels=1, side=4, what=["work w1", "work w2"])


def test_svg_drawings_render_on_white_paper() -> None:
    # A black square in the middle of a transparent page: the page reads as white (1.0), the ink as black.
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8" viewBox="0 0 8 8">'
        b'<rect x="2" y="2" width="4" height="4" fill="black"/></svg>'
    )
    out = images_from_bytes([svg], channels=1, side=8, what=["work w1"])
    assert out.shape == (1, 1, 8, 8)
    assert float(out[0, 0, 0, 0]) == 1.0 and float(out[0, 0, 4, 4]) == -1.0
    with pytest.raises(ValidationError, match=r"^work w2: the SVG could not be rendered"):
        images_from_bytes([b"<svg><g></svg>"], channels=1, side=8, what=["work w2"])


def test_bad_batches_folders_and_settings_are_one_line(unet: DiffusionUNet, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"images must be \[B, 1, 16, 16\]"):
        unet.encode(torch.zeros(2, 3, 16, 16), timesteps=2, seed=0)
    with pytest.raises(ValidationError, match="timesteps 0 must be in"):
        unet.encode(_images(1), timesteps=0, seed=0)
    with pytest.raises(ValidationError, match="measurement 'l1' must be one of"):
        unet.task(measurement="l1")  # type: ignore[arg-type]
    with pytest.raises(ManifestError, match="holds no diffusers UNet with its scheduler") as err:
        load_unet(tmp_path)
    assert "\n" not in str(err.value)
