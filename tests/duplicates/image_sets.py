"""Real images available offline, and re-encodings of them, for measuring the image fingerprint.

No image corpus is installed (Debian openclipart-svg is not; scikit-learn and scikit-image are not), so
the images are the real ones that ship inside packages the project already installs: the scanned score
pages and a drum sample of music21's corpus (``music21/corpus/demos``), networkx's drawing baselines,
sympy's plotting baselines and scipy's ``ndimage/tests/dots.png``. The two full score pages are cut into
tiles of ``TILE_PIXELS`` square (tiles that are nearly blank paper are dropped): different systems of
engraved music, alike in staff lines and noteheads, are the hard negatives; plots of the same library in
the same style are too.
"""

from __future__ import annotations

import importlib.util
import io
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

TILE_PIXELS = 400
INK_FRACTION_MIN = 0.03
"""A tile with less than this share of dark pixels is blank paper, not an image of anything."""

_FILES = {
    "music21": ["corpus/demos/drum_sample.png", "corpus/demos/layoutTest.png", "corpus/demos/layoutTestMore.png"],
    "networkx": [
        f"drawing/tests/baseline/test_{n}.png"
        for n in (
            "display_house_with_colors",
            "display_labels_and_colors",
            "display_shortest_path",
            "display_complex",
            "house_with_colors",
        )
    ],
    "sympy": [f"plotting/tests/test_region_{n}.png" for n in ("not", "xor", "and", "or")],
    "scipy": ["ndimage/tests/dots.png"],
}
_TILED = {"layoutTest.png", "layoutTestMore.png"}


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def real_images() -> dict[str, Image.Image]:
    """Name -> RGB image: every whole image, and the tiles of the two score pages."""
    out: dict[str, Image.Image] = {}
    for package, paths in _FILES.items():
        root = _package_dir(package)
        for rel in paths:
            with Image.open(root / rel) as im:
                img = im.convert("RGB")
            name = f"{package}/{Path(rel).name}"
            if Path(rel).name not in _TILED:
                out[name] = img
                continue
            gray = np.asarray(img.convert("L"))
            for y in range(0, img.height - TILE_PIXELS + 1, TILE_PIXELS):
                for x in range(0, img.width - TILE_PIXELS + 1, TILE_PIXELS):
                    if (gray[y : y + TILE_PIXELS, x : x + TILE_PIXELS] < 128).mean() >= INK_FRACTION_MIN:
                        out[f"{name}@{x},{y}"] = img.crop((x, y, x + TILE_PIXELS, y + TILE_PIXELS))
    return out


def encode(img: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def jpeg_q70(img: Image.Image, rng: random.Random) -> bytes:
    return encode(img, "JPEG", quality=70)


def jpeg_q40(img: Image.Image, rng: random.Random) -> bytes:
    return encode(img, "JPEG", quality=40)


def half_size(img: Image.Image, rng: random.Random) -> bytes:
    return encode(img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.Resampling.LANCZOS))


def upscale_150(img: Image.Image, rng: random.Random) -> bytes:
    return encode(img.resize((img.width * 3 // 2, img.height * 3 // 2), Image.Resampling.BICUBIC), "JPEG", quality=85)


def brighter(img: Image.Image, rng: random.Random) -> bytes:
    return encode(ImageEnhance.Brightness(img).enhance(1.1))


def grayscale(img: Image.Image, rng: random.Random) -> bytes:
    return encode(img.convert("L"))


def trim_2pct(img: Image.Image, rng: random.Random) -> bytes:
    dx, dy = max(1, img.width // 50), max(1, img.height // 50)
    return encode(img.crop((dx, dy, img.width - dx, img.height - dy)))


IMAGE_TRANSFORMS: dict[str, Callable[[Image.Image, random.Random], bytes]] = {
    "jpeg_q70": jpeg_q70,
    "jpeg_q40": jpeg_q40,
    "half_size": half_size,
    "upscale_150_jpeg": upscale_150,
    "brighter_10pct": brighter,
    "grayscale": grayscale,
    "trim_2pct": trim_2pct,
}
