"""Perceptual fingerprints: the same work registered again under other bytes is linked, not paid twice.

A work's id is the SHA-256 of its bytes, so a re-encoded image or a text with its line endings changed is,
byte for byte, a new work. A fingerprint stays (nearly) the same under such changes; when a new work's
fingerprint is close enough to a registered work's, the new work is *linked* to it: the first registered
work of the group is the canonical work, a manifest includes the group's content once, and credits on any
member are resolved through the canonical work (``registry.records.graph_rows``), so nobody is paid twice.

Three methods, by the work's kind; two fingerprints compare only within one method:

- ``minhash-c5-p128`` (text): a MinHash of the normalized 5-character shingles of each line;
- ``gray64-render-v7`` (images, SVGs rendered by ``cairosvg`` included): 64x64 and 256x256 grayscale
  thumbnails of the picture on white, trimmed to its ink, its size, and whether it is an SVG. Candidates
  from ``RENDER_V6_VERIFY_MIN`` at 64 pixels are verified (``registry.image_rerender.same_v7``: an SVG
  rendered again, as is and finer; else the stored thumbnails) and linked only if they agree; the others
  from ``IMAGE_REVIEW_MIN`` up are shown for a person to confirm. Rows of earlier methods (``-v6``,
  ``-v5``, ``-verify256-v4``, ``-verify128-v3``, ``gray64-crop-v2``, ``phash-64``) keep to their own;
- ``chromaprint-raw`` (audio, where ``fpcalc`` is installed): Chromaprint's raw frames, compared at the
  best alignment. Audio without a fingerprint is registered by SHA-256 only, not refused.

Candidates come from band keys (LSH), so finding them is one indexed lookup.

How each method works, its threshold and its measured false and missed matches: docs/concepts/registry.md,
"Duplicates" ("Methods and thresholds", "How the methods work", "Measured rates").
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tempfile
import unicodedata
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Connection

from endcredits.errors import ValidationError
from endcredits.registry.image_verify import COLOUR_PIXELS, FINE_PIXELS, V4_PIXELS, verify, verify_fine
from endcredits.registry.records import (
    WorkIn,
    add_fingerprint,
    add_works,
    existing_work_ids,
    fingerprint_candidates,
    link_works,
    linked_canonical,
)
from endcredits.store.blobs import get_content

if TYPE_CHECKING:
    from PIL import Image

TEXT_METHOD = "minhash-c5-p128"
IMAGE_METHOD = "gray64-render-v7"
"""Version 7 of the image method: version 6's fingerprint (the same bytes) and rule, and where that refuses
a drawing and a raster picture, the drawing rendered at ``image_rerender.SUPERSAMPLE`` times the picture's
resolution and reduced to it, then compared by the same rule (``image_rerender.same_v7``;
docs/concepts/registry.md, "Images and drawings")."""
V6_IMAGE_METHOD = "gray64-render-v6"
"""Version 6: version 5's fingerprint, candidates from ``RENDER_V6_VERIFY_MIN``, and where version 5's
correlation falls short, an affine colour map of the drawing rendered again fitted to the other picture
with its worst window left out (``image_verify.verify_fitted``); its rows hold version 7's bytes and band
keys; migration 0015 relabels them as version 7, so they are met only in a store not yet upgraded, and are
compared only with each other, by that rule."""
V5_IMAGE_METHOD = "gray64-render-v5"
"""Version 5: where either picture of a pair is an SVG drawing whose bytes are at hand, the drawing rendered
again at the other's resolution and compared there by correlation (``registry.image_rerender.same_v5``);
its rows hold version 6's bytes and band keys; migration 0013 relabels them as version 6, so they are met
only in a store not yet upgraded, and are compared only with each other, by that rule."""
V4_IMAGE_METHOD = "gray64-verify256-v4"
"""Version 4: candidates by 64-pixel correlation, aligned to a fraction of a pixel and verified at 256
pixels from ``IMAGE_VERIFY_MIN``; its rows are compared only with each other, by that rule."""
VERIFY128_IMAGE_METHOD = "gray64-verify128-v3"
"""Version 3: verified at 128 pixels from ``VERIFY128_MIN``; its rows are compared only with each other, by
that rule."""
PREVIOUS_IMAGE_METHOD = "gray64-crop-v2"
"""Version 2: the 64-pixel thumbnail alone, linked from IMAGE_THRESHOLD; its rows are compared only with
each other, by that rule."""
LEGACY_IMAGE_METHOD = "phash-64"
"""The image method of fingerprints stored before version 2; such rows are compared only with each other."""
AUDIO_METHOD = "chromaprint-raw"
OPERATOR_METHOD = "operator"
"""The method recorded on a link an operator made by hand."""

TEXT_SHINGLE_CHARS = 5
MINHASH_PERM_COUNT = 128
MINHASH_SEED = 1
TEXT_THRESHOLD = 0.7
"""Estimated Jaccard similarity at or above which two texts are the same work (measured: see the docs)."""
MINHASH_BAND_COUNT = 32
MINHASH_BAND_ROWS = 4
"""32 bands x 4 rows: a pair at Jaccard 0.6 shares a band with probability 1 - (1 - 0.6^4)^32 = 0.988,
at 0.7 0.9998; at 0.3 0.23 (compared, then refused). Recall first: a candidate only costs a comparison."""

IMAGE_THRESHOLD = 0.996
"""``gray64-crop-v2``: thumbnail similarity at or above which two images are the same work."""
IMAGE_VERIFY_MIN = 0.92
"""``gray64-verify256-v4``: 64-pixel similarity from which a candidate is verified at 256 pixels
(``image_verify.verify_fine``); it is linked when that finds them the same (chosen on the tuning half: docs)."""
RENDER_VERIFY_MIN = 0.88
"""``gray64-render-v5``: 64-pixel similarity from which a candidate is verified (chosen on the tuning half)."""
RENDER_V6_VERIFY_MIN = 0.85
"""``gray64-render-v6``: 64-pixel similarity from which a candidate is verified (chosen on the tuning half)."""
VERIFY128_MIN = 0.90
"""``gray64-verify128-v3``: 64-pixel similarity from which a candidate was verified at 128 pixels."""
IMAGE_VERIFY_MAX = 8
"""Most candidates verified for one new image, the most similar first (each takes about 50 ms)."""
IMAGE_REVIEW_MIN = 0.80
"""From here up a registered image that is not linked is a candidate shown for a person to confirm."""
IMAGE_FLAT_STD_MIN = 2.0
IMAGE_HASH_BITS = 64
IMAGE_BAND_COUNT = 8
LEGACY_IMAGE_HASH_BITS = 64
LEGACY_IMAGE_HAMMING_MAX = 10
LEGACY_IMAGE_BAND_COUNT = 8
SVG_RENDER_PIXELS = 256
"""An SVG is rendered into a square of this many pixels (aspect kept) before it is fingerprinted."""
SVG_BYTES_MAX = 64 * 1024 * 1024
"""Largest SVG rendered, after decompressing an .svgz (the largest Open Clip Art drawing is 1.7 MB)."""
SVG_SNIFF_BYTES = 64 * 1024
"""How far into a work's bytes ``<svg`` is looked for when its kind is only ``image``."""
IMAGE_THUMB_PIXELS = 64
IMAGE_CROP_PIXELS = (1, 2, 4)
"""Crops tried when comparing thumbnails: pixels of the 64 cut off every edge (1.6%, 3.1%, 6.3%)."""
IMAGE_PAPER_TOLERANCE = 48
"""A pixel whose every channel is within this of the background colour is paper, trimmed from the border."""
IMAGE_PIXELS_MAX = 64_000_000
"""Largest image decoded (width x height), against decompression bombs (below Pillow's own 89 M warning)."""

TEXT_BYTES_MAX = 64 * 1024 * 1024
"""Largest text fingerprinted; a larger text is registered by SHA-256 only."""

AUDIO_THRESHOLD = 0.82
"""1 - bit error rate at or above which two recordings are the same work (measured: see the docs)."""
AUDIO_LENGTH_S_MAX = 120
"""Seconds of audio fingerprinted (from the start; fpcalc's own default, stated)."""
AUDIO_FRAMES_PER_S_MAX = 9
"""Chromaprint gives 11025 / (4096 / 3) = 8.07 frames per second; a longer answer from fpcalc is refused."""
AUDIO_FRAMES_MAX = AUDIO_LENGTH_S_MAX * AUDIO_FRAMES_PER_S_MAX
AUDIO_FRAMES_MIN = 40
"""About 5 s: shorter audio is registered by SHA-256 only (too little to tell recordings apart)."""
AUDIO_OVERLAP_FRAMES_MIN = 40
"""Fewest overlapping frames an alignment is scored on."""
AUDIO_OFFSET_FRAMES_MAX = 40
"""Largest shift tried when aligning two fingerprints, either way (about 5 s)."""
AUDIO_FRAME_KEY_BITS = 14
"""Top bits of each frame kept for the candidate sketch."""
AUDIO_BAND_COUNT = 32
AUDIO_MINHASH_PRIME = 4_294_967_311
"""The smallest prime above 2**32: the MinHash functions are (a * v + b) mod this prime."""
AUDIO_BYTES_MAX = 1024 * 1024 * 1024
"""Largest audio file written out for fpcalc; a larger one is registered by SHA-256 only."""
FPCALC_TIMEOUT_S = 60
"""Longest fpcalc may run on one work (it decodes at most AUDIO_LENGTH_S_MAX seconds)."""

CANDIDATES_MAX = 10_000
IMAGE_CANDIDATES_MAX = 256
"""Most candidate images scored for one new image, those sharing the most looked-up bands first. The
multi-probe keys find many near-alike drawings (1,375 star polygons share bands); scoring up to
CANDIDATES_MAX of them made importing the Open Clip Art drawings slow down to about 1 a second."""
REVIEW_CANDIDATES_MAX = 5
"""Most works shown for a person to confirm as what a new image may copy."""
"""Most candidate works compared for one new work (bounded lookup)."""

if MINHASH_BAND_COUNT * MINHASH_BAND_ROWS > MINHASH_PERM_COUNT:
    raise RuntimeError("MinHash bands need more hash values than there are permutations")
if IMAGE_HASH_BITS % IMAGE_BAND_COUNT:
    raise RuntimeError("image hash bits must split evenly into bands")
if not AUDIO_OVERLAP_FRAMES_MIN <= AUDIO_FRAMES_MIN <= AUDIO_FRAMES_MAX:
    raise RuntimeError("an audio fingerprint must be long enough to overlap another at offset 0")
if not 0 < AUDIO_FRAME_KEY_BITS <= 32 or AUDIO_BAND_COUNT > 99:
    raise RuntimeError("audio band keys: 1-32 bits per frame value, at most 99 bands (two digits)")

IMAGE_KINDS = ("image",)
THUMBNAIL_METHODS = (
    IMAGE_METHOD,
    V6_IMAGE_METHOD,
    V5_IMAGE_METHOD,
    V4_IMAGE_METHOD,
    VERIFY128_IMAGE_METHOD,
    PREVIOUS_IMAGE_METHOD,
)
RENDER_METHODS = (IMAGE_METHOD, V6_IMAGE_METHOD, V5_IMAGE_METHOD)
"""The methods that store version 5's bytes (the SVG flag among them) and render a drawing again."""
"""Image methods whose value starts with the 64-pixel thumbnail (scored by ``thumbnail_similarities``)."""
AUDIO_KINDS = ("audio",)


@dataclass(frozen=True)
class Fingerprint:
    """``value`` is hex: 128 little-endian uint32 MinHash values, the 64-bit image hash, or Chromaprint's
    little-endian uint32 frames."""

    method: str
    value: str
    band_keys: tuple[str, ...]


def _family(kind: str) -> str:
    head = kind.lower().split("/", 1)[0]
    if head in IMAGE_KINDS:
        return "image"
    if head in AUDIO_KINDS:
        return "audio"
    return "text"


# Text --------------------------------------------------------------------------------------------
def text_shingles(text: str) -> set[bytes]:
    """The normalized shingles of a text (docs/concepts/registry.md, "Duplicates")."""
    normalized = unicodedata.normalize("NFC", text).lower().replace("\r\n", "\n").replace("\r", "\n")
    out: set[bytes] = set()
    k = TEXT_SHINGLE_CHARS
    for raw in normalized.split("\n"):
        line = "".join(raw.split())
        if not line:
            continue
        if len(line) <= k:
            out.add(line.encode())
            continue
        out.update(line[i : i + k].encode() for i in range(len(line) - k + 1))
    return out


def _minhash_values(shingles: set[bytes]) -> np.ndarray:
    from datasketch import MinHash

    m = MinHash(num_perm=MINHASH_PERM_COUNT, seed=MINHASH_SEED, scheme="affine32")
    m.update_batch(sorted(shingles))
    return np.asarray(m.hashvalues, dtype="<u4")


def text_fingerprint(text: str) -> Fingerprint | None:
    """The MinHash fingerprint of a text; None for a text with no visible characters."""
    shingles = text_shingles(text)
    if not shingles:
        return None
    values = _minhash_values(shingles)
    r = MINHASH_BAND_ROWS
    keys = tuple(
        f"{b:02d}{hashlib.blake2b(values[b * r : (b + 1) * r].tobytes(), digest_size=8).hexdigest()}"
        for b in range(MINHASH_BAND_COUNT)
    )
    return Fingerprint(TEXT_METHOD, values.tobytes().hex(), keys)


def _minhash_of(value: str) -> np.ndarray:
    values = np.frombuffer(bytes.fromhex(value), dtype="<u4")
    if values.size != MINHASH_PERM_COUNT:
        raise ValidationError(f"a {TEXT_METHOD} fingerprint holds {MINHASH_PERM_COUNT} values, not {values.size}")
    return values


# Images ------------------------------------------------------------------------------------------
def is_svg(content: bytes, kind: str) -> bool:
    """Whether a work's bytes are an SVG drawing: kind ``image/svg+xml``, or XML whose root is ``<svg``."""
    if kind.lower() == "image/svg+xml":
        return True
    head = content[:SVG_SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith((b"<?xml", b"<svg", b"<!--", b"<!DOCTYPE svg")) and b"<svg" in head


def svg_text(content: bytes) -> bytes:
    """An SVG's XML: the bytes themselves, or an .svgz decompressed with a bound; one-line errors."""
    if not content.startswith(b"\x1f\x8b"):
        if len(content) > SVG_BYTES_MAX:
            raise ValidationError(f"the SVG is {len(content)} bytes; at most SVG_BYTES_MAX={SVG_BYTES_MAX}")
        return content
    with gzip.GzipFile(fileobj=io.BytesIO(content)) as z:  # .svgz, read with a bound
        try:
            out = z.read(SVG_BYTES_MAX + 1)
        except (OSError, EOFError) as exc:
            raise ValidationError(f"the compressed SVG does not decompress ({type(exc).__name__})") from None
    if len(out) > SVG_BYTES_MAX:
        raise ValidationError(f"the SVG decompresses to more than SVG_BYTES_MAX={SVG_BYTES_MAX} bytes")
    return out


def render_svg(content: bytes, size_px: int = SVG_RENDER_PIXELS) -> Image.Image:
    """An SVG drawing rendered by ``cairosvg`` into a ``size_px`` square (aspect kept, transparent around it),
    as RGBA. Entities and external files are refused (cairosvg's safe mode: only ``data:`` URLs are read).
    One that does not render is a ``ValidationError`` of one line saying why."""
    import cairosvg
    from PIL import Image

    text = svg_text(content)
    try:
        png = cairosvg.svg2png(bytestring=text, output_width=size_px, output_height=size_px, unsafe=False)
        with Image.open(io.BytesIO(png)) as img:
            return img.convert("RGBA")
    except Exception as exc:  # noqa: BLE001 - cairosvg raises parser, entity, value and cairo errors alike
        why = " ".join(str(exc).split())[:160] or "no message"
        raise ValidationError(f"the SVG could not be rendered ({type(exc).__name__}: {why})") from None


def _decode_raster(content: bytes) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as img:
                if img.width * img.height > IMAGE_PIXELS_MAX:
                    raise ValidationError(
                        f"image is {img.width}x{img.height}; at most IMAGE_PIXELS_MAX={IMAGE_PIXELS_MAX} pixels"
                    )
                img.load()
                return img.convert("RGBA")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ValidationError(
            f"the image could not be decoded ({type(exc).__name__}): register it with another kind"
        ) from exc


def decode_image(content: bytes, kind: str) -> Image.Image:
    """A work's picture as RGBA: an SVG rendered (``render_svg``), any other image decoded by Pillow."""
    return render_svg(content) if is_svg(content, kind) else _decode_raster(content)


def canonical_picture(img: Image.Image) -> Image.Image:
    """The picture as fingerprinted: on white (transparent pixels are paper, not black), and trimmed to
    the box of the pixels that differ from its background, so a margin, a letterbox or a transparent
    border changes nothing. The background is the median colour of the outermost ring of pixels; a pixel
    is background when every channel is within ``IMAGE_PAPER_TOLERANCE`` of it (scanned paper is not
    white, and JPEG noise on it is not ink). A picture with no background ring (a photograph) is kept
    whole. RGB."""
    from PIL import Image

    rgba = img.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(paper, rgba).convert("RGB")
    px = np.asarray(rgb).astype(np.int16)
    ring = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
    background = np.median(ring, axis=0)
    ink = (np.abs(px - background) > IMAGE_PAPER_TOLERANCE).any(axis=2)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return rgb
    return rgb.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))


def picture_thumbnail(picture: Image.Image, side: int = IMAGE_THUMB_PIXELS) -> np.ndarray:
    """The ``side`` square grayscale thumbnail of a canonical picture (area-averaged), uint8."""
    from PIL import Image

    return np.asarray(picture.convert("L").resize((side, side), Image.Resampling.BOX), dtype=np.uint8)


def _resample_matrix(side: int, cut: int, out_side: int) -> np.ndarray:
    """Linear interpolation (out_side x side) that samples the span [cut, side - cut] of a row of ``side``
    pixels at ``out_side`` evenly spaced pixel centres."""
    span = side - 2 * cut
    centres = cut + (np.arange(out_side) + 0.5) * span / out_side - 0.5
    lo = np.clip(np.floor(centres).astype(np.int64), 0, side - 1)
    hi = np.clip(lo + 1, 0, side - 1)
    w = np.clip(centres - lo, 0.0, 1.0)
    out = np.zeros((out_side, side))
    out[np.arange(out_side), lo] += 1 - w
    out[np.arange(out_side), hi] += w
    return out


_SIDE = IMAGE_THUMB_PIXELS
_ZOOM_IN = {c: _resample_matrix(_SIDE, c, _SIDE) for c in IMAGE_CROP_PIXELS}
"""Cut ``c`` pixels off every edge and stretch the rest back to the full side."""
_SHRINK = {c: _resample_matrix(_SIDE, 0, _SIDE - 2 * c) for c in IMAGE_CROP_PIXELS}
"""Shrink the whole thumbnail to the side less ``2c`` pixels."""


def _centred(x: np.ndarray) -> np.ndarray:
    """Rows of x (n x pixels) minus their mean, scaled to unit length (a flat row stays zero)."""
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt((x * x).sum(axis=1, keepdims=True))
    out: np.ndarray = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return out


def _views(a: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(cut, centred rows) of thumbnails ``a`` (n x side x side) as compared: as they are (cut 0), cropped
    by ``c`` and stretched (against the other's whole thumbnail: the other is a crop of ``a``), and shrunk
    by ``2c`` (against the other's centre: ``a`` is a crop of the other)."""
    n = a.shape[0]
    out = [(0, _centred(a.reshape(n, -1)))]
    for c in IMAGE_CROP_PIXELS:
        out.append((0, _centred((_ZOOM_IN[c] @ a @ _ZOOM_IN[c].T).reshape(n, -1))))
        out.append((c, _centred((_SHRINK[c] @ a @ _SHRINK[c].T).reshape(n, -1))))
    return out


def _best(views: list[tuple[int, np.ndarray]], b: np.ndarray, paired: bool) -> np.ndarray:
    n = b.shape[0]
    best = np.zeros(n)
    centres: dict[int, np.ndarray] = {}
    for cut, va in views:
        if cut not in centres:
            inner = b[:, cut : _SIDE - cut, cut : _SIDE - cut] if cut else b
            centres[cut] = _centred(inner.reshape(n, -1))
        vb = centres[cut]
        best = np.maximum(best, (va * vb).sum(axis=1) if paired else vb @ va[0])
    clipped: np.ndarray = np.clip(best, 0.0, 1.0)
    return clipped


def paired_thumbnail_similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The similarity of each thumbnail of ``a`` with the one at the same index of ``b`` (both n x side x
    side): the Pearson correlation, at best over a small crop of either one (``IMAGE_CROP_PIXELS`` off
    every edge), so a copy cut a little smaller still lines up. In [0, 1]; a negative correlation is 0."""
    x = a.astype(np.float64).reshape(-1, _SIDE, _SIDE)
    return _best(_views(x), b.astype(np.float64).reshape(-1, _SIDE, _SIDE), paired=True)


def thumbnail_similarities(a: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``paired_thumbnail_similarities`` of one thumbnail ``a`` with each of ``others``; ``a``'s crops are
    computed once, the others are only sliced."""
    x = a.astype(np.float64).reshape(1, _SIDE, _SIDE)
    return _best(_views(x), others.astype(np.float64).reshape(-1, _SIDE, _SIDE), paired=False)


def image_band_keys(thumb: np.ndarray) -> tuple[str, ...]:
    """The band keys of a 64-pixel thumbnail: its 64-bit pHash cut into ``IMAGE_BAND_COUNT`` bands."""
    import imagehash
    from PIL import Image

    h = imagehash.phash(Image.fromarray(thumb, mode="L"), hash_size=8)
    bits = np.asarray(h.hash, dtype=bool).reshape(-1)
    hex_key = f"{int(''.join('1' if v else '0' for v in bits), 2):016x}"
    width = IMAGE_HASH_BITS // IMAGE_BAND_COUNT // 4
    return tuple(f"{b:02d}{hex_key[b * width : (b + 1) * width]}" for b in range(IMAGE_BAND_COUNT))


def image_fingerprint(content: bytes, kind: str = "image") -> Fingerprint | None:
    """The ``IMAGE_METHOD`` fingerprint of an image or SVG drawing: the 64x64 grayscale thumbnail of its
    canonical picture (``canonical_picture``), with pHash band keys for candidates, then, zlib-compressed,
    its 256x256 grayscale and 16x16 RGB thumbnails, its width and height in pixels and one byte, 1 for an SVG
    drawing (version 4 values end before it). None for a picture
    with no detail (flat: standard deviation under ``IMAGE_FLAT_STD_MIN`` grey levels), which would look
    like every other blank picture. One that does not decode or render is a ``ValidationError``."""
    from PIL import Image

    picture = canonical_picture(decode_image(content, kind))
    thumb = picture_thumbnail(picture)
    if float(thumb.std()) < IMAGE_FLAT_STD_MIN:
        return None
    fine = picture_thumbnail(picture, V4_PIXELS).tobytes()
    colour = np.asarray(picture.resize((COLOUR_PIXELS, COLOUR_PIXELS), Image.Resampling.BOX), dtype=np.uint8)
    size = np.asarray([min(picture.width, 65535), min(picture.height, 65535)], dtype="<u2").tobytes()
    svg = b"\x01" if is_svg(content, kind) else b"\x00"
    packed = zlib.compress(fine + colour.tobytes() + size + svg, 9).hex()
    return Fingerprint(IMAGE_METHOD, thumb.tobytes().hex() + packed, image_band_keys(thumb))


_THUMB_HEX = 2 * IMAGE_THUMB_PIXELS**2


def _thumbnail_of(value: str) -> np.ndarray:
    """The 64-pixel thumbnail of a ``gray64-crop-v2`` value, or the first part of a version 3 one."""
    raw = bytes.fromhex(value[:_THUMB_HEX])
    if len(raw) != IMAGE_THUMB_PIXELS**2:
        raise ValidationError(f"an image fingerprint holds {IMAGE_THUMB_PIXELS**2} bytes, not {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(IMAGE_THUMB_PIXELS, IMAGE_THUMB_PIXELS)


_FINE_BYTES = FINE_PIXELS**2 + 3 * COLOUR_PIXELS**2


def _packed(value: str, size: int, method: str, side: int) -> bytes:
    """The zlib'd part of a version 3 or 4 value (after the 64-pixel thumbnail), which must be ``size``
    bytes; otherwise a one-line ``ValidationError``."""
    try:
        raw = zlib.decompress(bytes.fromhex(value[_THUMB_HEX:]), bufsize=size)
    except (ValueError, zlib.error):
        raw = b""
    if len(raw) != size:
        raise ValidationError(f"an {method} fingerprint holds no {side}x{side} thumbnail")
    return raw


def _fine_of(value: str) -> tuple[np.ndarray, np.ndarray]:
    """The 128-pixel grayscale and 16-pixel RGB thumbnails of a ``gray64-verify128-v3`` value (zlib'd after
    the 64-pixel one)."""
    px = np.frombuffer(_packed(value, _FINE_BYTES, VERIFY128_IMAGE_METHOD, FINE_PIXELS), dtype=np.uint8)
    cut = FINE_PIXELS**2
    return px[:cut].reshape(FINE_PIXELS, FINE_PIXELS), px[cut:].reshape(COLOUR_PIXELS, COLOUR_PIXELS, 3)


_V4_BYTES = V4_PIXELS**2 + 3 * COLOUR_PIXELS**2 + 4


@dataclass(frozen=True)
class FinePicture:
    """What a ``gray64-render-v5`` or ``gray64-verify256-v4`` value holds besides its 64-pixel thumbnail."""

    gray: np.ndarray
    colour: np.ndarray
    size: tuple[int, int]
    """Width and height in pixels of the trimmed picture."""
    svg: bool = False
    """Whether the work is an SVG drawing (version 5 records it; version 4 values say nothing: False)."""


def fine_picture(value: str, method: str = IMAGE_METHOD) -> FinePicture:
    """The 256-pixel grayscale and 16-pixel RGB thumbnails, the size and (version 5) the SVG flag of a
    ``gray64-render-v5`` or ``gray64-verify256-v4`` value."""
    v5 = method in RENDER_METHODS
    raw = _packed(value, _V4_BYTES + v5, method, V4_PIXELS)
    gray = np.frombuffer(raw, dtype=np.uint8, count=V4_PIXELS**2).reshape(V4_PIXELS, V4_PIXELS)
    colour = np.frombuffer(raw, dtype=np.uint8, count=3 * COLOUR_PIXELS**2, offset=V4_PIXELS**2)
    w, h = np.frombuffer(raw[_V4_BYTES - 4 : _V4_BYTES], dtype="<u2")
    svg = v5 and raw[-1] == 1
    return FinePicture(gray, colour.reshape(COLOUR_PIXELS, COLOUR_PIXELS, 3), (int(w), int(h)), svg)


def same_fine_picture(registered: FinePicture, new: FinePicture) -> bool:
    """Whether ``image_verify.verify_fine`` finds a registered picture and a new one the same."""
    return verify_fine(registered.gray, new.gray, registered.colour, new.colour, registered.size, new.size).same


def images_match(
    a: str, b: str, method: str = IMAGE_METHOD, contents: tuple[bytes | None, bytes | None] = (None, None)
) -> tuple[float, bool]:
    """(64-pixel similarity, same work) of a registered value ``a`` and a new one ``b`` of ``method``
    (version 7, 6, 5, 4 or 3), as ``register_works`` decides: the same only from the method's verification
    threshold up (``RENDER_V6_VERIFY_MIN``, ``RENDER_VERIFY_MIN``, ``IMAGE_VERIFY_MIN``, ``VERIFY128_MIN``)
    and when its verification finds them the same.
    ``contents``: the two works' bytes, where known (versions 5 to 7 render an SVG among them again)."""
    s = float(thumbnail_similarities(_thumbnail_of(a), _thumbnail_of(b)[None])[0])
    if method == VERIFY128_IMAGE_METHOD:
        return s, s >= VERIFY128_MIN and _same_picture(_fine_of(a), _fine_of(b))
    if method == V4_IMAGE_METHOD:
        return s, s >= IMAGE_VERIFY_MIN and same_fine_picture(fine_picture(a, method), fine_picture(b, method))
    from endcredits.registry.image_rerender import Side, same_v5, same_v6, same_v7

    pair = Side(fine_picture(a, method), contents[0]), Side(fine_picture(b, method), contents[1])
    if method == V5_IMAGE_METHOD:
        return s, s >= RENDER_VERIFY_MIN and same_v5(*pair, s)
    if method == V6_IMAGE_METHOD:
        return s, s >= RENDER_V6_VERIFY_MIN and same_v6(*pair, s)
    return s, s >= RENDER_V6_VERIFY_MIN and same_v7(*pair, s)


def _same_picture(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    return verify(a[0], b[0], a[1], b[1]).same


def legacy_image_fingerprint(content: bytes) -> Fingerprint:
    """``phash-64``, the method before version 2: the 64-bit pHash of the decoded pixels as grayscale
    (transparency dropped, no trimming). Kept to compare with and to measure against; new works get
    ``image_fingerprint``."""
    import imagehash

    h = imagehash.phash(_decode_raster(content).convert("L"), hash_size=8)
    bits = np.asarray(h.hash, dtype=bool).reshape(-1)
    value = int("".join("1" if b else "0" for b in bits), 2)
    hex_value = f"{value:016x}"
    width = LEGACY_IMAGE_HASH_BITS // LEGACY_IMAGE_BAND_COUNT // 4
    keys = tuple(f"{b:02d}{hex_value[b * width : (b + 1) * width]}" for b in range(LEGACY_IMAGE_BAND_COUNT))
    return Fingerprint(LEGACY_IMAGE_METHOD, hex_value, keys)


# Audio -------------------------------------------------------------------------------------------
def _audio_minhash_coefficients() -> np.ndarray:
    out = []
    for i in range(AUDIO_BAND_COUNT):
        h = hashlib.blake2b(f"{AUDIO_METHOD}:{i}".encode(), digest_size=16).digest()
        out.append(
            (
                int.from_bytes(h[:8], "little") % (AUDIO_MINHASH_PRIME - 1) + 1,
                int.from_bytes(h[8:], "little") % AUDIO_MINHASH_PRIME,
            )
        )
    coefficients = np.asarray(out, dtype=np.uint64)
    coefficients.setflags(write=False)
    return coefficients


_AUDIO_MINHASH = _audio_minhash_coefficients()
"""(a, b) of each band's hash function, derived from the method name (fixed: stored keys depend on them)."""


def _audio_band_keys(frames: np.ndarray) -> tuple[str, ...]:
    coarse = np.unique(frames >> np.uint32(32 - AUDIO_FRAME_KEY_BITS)).astype(np.uint64)
    # a < 2**33 and coarse < 2**32: the product stays below 2**64.
    hashed = (_AUDIO_MINHASH[:, 0:1] * coarse[None, :] + _AUDIO_MINHASH[:, 1:2]) % np.uint64(AUDIO_MINHASH_PRIME)
    return tuple(f"{b:02d}{int(m):09x}" for b, m in enumerate(hashed.min(axis=1)))


def _run_fpcalc(fpcalc: str, content: bytes) -> list[object]:
    with tempfile.TemporaryDirectory(prefix="endcredits-fpcalc-") as tmp:
        path = Path(tmp) / "work"
        path.write_bytes(content)
        try:
            done = subprocess.run(
                [fpcalc, "-raw", "-json", "-ignore-errors", "-length", str(AUDIO_LENGTH_S_MAX), str(path)],
                capture_output=True,
                timeout=FPCALC_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ValidationError(
                f"fpcalc ran longer than FPCALC_TIMEOUT_S={FPCALC_TIMEOUT_S} s on this audio; "
                "it is registered by SHA-256 only"
            ) from None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1][:200] if lines else "no message"
        raise ValidationError(
            f"fpcalc could not read the audio (exit {done.returncode}: {why}); it is not audio, "
            "or not in a format FFmpeg decodes"
        )
    try:
        frames = json.loads(done.stdout)["fingerprint"]
    except (ValueError, KeyError, TypeError):
        raise ValidationError("fpcalc answered without a fingerprint") from None
    if not isinstance(frames, list):
        raise ValidationError("fpcalc answered without a fingerprint")
    return frames


def audio_fingerprint(content: bytes) -> Fingerprint:
    """Chromaprint's raw fingerprint of an audio file, through ``fpcalc``. A ``ValidationError`` says why
    there is none: fpcalc not installed, bytes it cannot decode, a failure or timeout, audio too short."""
    fpcalc = shutil.which("fpcalc")
    if fpcalc is None:
        raise ValidationError(
            "fpcalc is not installed (Debian: apt-get install libchromaprint-tools); "
            "audio is registered by SHA-256 only"
        )
    if len(content) > AUDIO_BYTES_MAX:
        raise ValidationError(
            f"audio is {len(content)} bytes; at most AUDIO_BYTES_MAX={AUDIO_BYTES_MAX} are fingerprinted"
        )
    frames = _run_fpcalc(fpcalc, content)
    if len(frames) > AUDIO_FRAMES_MAX or not all(type(f) is int and 0 <= f < 2**32 for f in frames):
        raise ValidationError(
            f"fpcalc answered with {len(frames)} frames; expected at most "
            f"AUDIO_FRAMES_MAX={AUDIO_FRAMES_MAX} uint32 values"
        )
    if len(frames) < AUDIO_FRAMES_MIN:
        raise ValidationError(
            f"the audio gives {len(frames)} Chromaprint frames, fewer than "
            f"AUDIO_FRAMES_MIN={AUDIO_FRAMES_MIN} (about 5 s): too short to fingerprint"
        )
    values = np.asarray(frames, dtype="<u4")
    return Fingerprint(AUDIO_METHOD, values.tobytes().hex(), _audio_band_keys(values))


def _chromaprint_of(value: str) -> np.ndarray:
    values = np.frombuffer(bytes.fromhex(value), dtype="<u4")
    if not AUDIO_FRAMES_MIN <= values.size <= AUDIO_FRAMES_MAX:
        raise ValidationError(
            f"a {AUDIO_METHOD} fingerprint holds {AUDIO_FRAMES_MIN} to {AUDIO_FRAMES_MAX} frames, not {values.size}"
        )
    return values


def _audio_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """1 - the bit error rate over the overlapping frames, at the best shift of b against a."""
    best = 0.0
    for offset in range(-AUDIO_OFFSET_FRAMES_MAX, AUDIO_OFFSET_FRAMES_MAX + 1):
        x, y = (a[offset:], b) if offset >= 0 else (a, b[-offset:])
        n = min(x.size, y.size)
        if n < AUDIO_OVERLAP_FRAMES_MIN:
            continue
        errors = int(np.unpackbits((x[:n] ^ y[:n]).view(np.uint8)).sum())
        best = max(best, 1.0 - errors / (32 * n))
    return best


# Either ------------------------------------------------------------------------------------------
def compute_fingerprint(content: bytes, kind: str) -> Fingerprint | None:
    """The fingerprint of a work's content by its kind, or None when no method applies: audio without a
        Chromaprint fingerprint (no fpcalc, undecodable or too short: ``audio_fingerprint`` says which), bytes
        that are not UTF-8 text, an empty or oversized text, a flat picture. An image that does not decode, or an
    SVG that does not render, is a ``ValidationError``. An SVG registered under a non-image kind is text."""
    family = _family(kind)
    if family == "image":
        return image_fingerprint(content, kind)
    if family == "audio":
        try:
            return audio_fingerprint(content)
        except ValidationError:
            return None
    if len(content) > TEXT_BYTES_MAX:
        return None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text_fingerprint(text)


def similarity(method: str, a: str, b: str) -> float:
    """Similarity in [0, 1] of two fingerprints of one method (estimated Jaccard, thumbnail correlation,
    1 - Hamming/64 for the legacy image hash, or 1 - bit error rate at the best alignment)."""
    if method == TEXT_METHOD:
        return float(np.count_nonzero(_minhash_of(a) == _minhash_of(b))) / MINHASH_PERM_COUNT
    if method in THUMBNAIL_METHODS:
        return float(thumbnail_similarities(_thumbnail_of(a), _thumbnail_of(b)[None])[0])
    if method == LEGACY_IMAGE_METHOD:
        return 1.0 - (int(a, 16) ^ int(b, 16)).bit_count() / LEGACY_IMAGE_HASH_BITS
    if method == AUDIO_METHOD:
        return _audio_similarity(_chromaprint_of(a), _chromaprint_of(b))
    raise ValidationError(
        f"unknown fingerprint method {method!r}: one of {TEXT_METHOD}, {IMAGE_METHOD}, {AUDIO_METHOD}"
    )


def is_match(method: str, similarity_value: float) -> bool:
    """Whether two works of ``method`` at ``similarity_value`` are the same work. ``gray64-verify256-v4``
    and ``gray64-verify128-v3`` are not decided by a similarity alone: ``images_match`` decides them."""
    if method == TEXT_METHOD:
        return similarity_value >= TEXT_THRESHOLD
    if method in (*RENDER_METHODS, V4_IMAGE_METHOD, VERIFY128_IMAGE_METHOD):
        raise ValidationError(f"{method} is decided by images_match, not by a similarity")
    if method == PREVIOUS_IMAGE_METHOD:
        return similarity_value >= IMAGE_THRESHOLD
    if method == LEGACY_IMAGE_METHOD:
        return round((1.0 - similarity_value) * LEGACY_IMAGE_HASH_BITS) <= LEGACY_IMAGE_HAMMING_MAX
    if method == AUDIO_METHOD:
        return similarity_value >= AUDIO_THRESHOLD
    raise ValidationError(f"unknown fingerprint method {method!r}")


def _similarities(method: str, value: str, others: dict[str, str]) -> dict[str, float]:
    """``similarity`` of one fingerprint with many of its method (images in one batch)."""
    if method not in THUMBNAIL_METHODS or not others:
        return {w: similarity(method, value, v) for w, v in others.items()}
    ids = sorted(others)
    scores = thumbnail_similarities(_thumbnail_of(value), np.stack([_thumbnail_of(others[w]) for w in ids]))
    return {w: float(x) for w, x in zip(ids, scores)}


def _query_keys(fp: Fingerprint) -> tuple[str, ...]:
    """The band keys looked up for a new work: its own, and for an image each band with one bit flipped
    too (multi-probe), so any two hashes within 15 bits share a looked-up band (pigeonhole over 8 bands);
    for versions 5 and 4 each band with two bits flipped too (within 23 bits)."""
    if fp.method not in THUMBNAIL_METHODS:
        return fp.band_keys
    width_bits = IMAGE_HASH_BITS // IMAGE_BAND_COUNT
    masks = [1 << bit for bit in range(width_bits)]
    if fp.method in (*RENDER_METHODS, V4_IMAGE_METHOD):
        masks += [(1 << i) | (1 << j) for i in range(width_bits) for j in range(i + 1, width_bits)]
    out = list(fp.band_keys)
    for key in fp.band_keys:
        band, value = key[:2], int(key[2:], 16)
        out += [f"{band}{value ^ mask:0{width_bits // 4}x}" for mask in masks]
    return tuple(out)


ContentOf = Callable[[str], "bytes | None"]
"""A registered work's bytes by its id (None where they are not stored): ``store.blobs`` of a data dir."""


def stored_content(data_dir: Path | None) -> ContentOf | None:
    """Reads registered works' bytes from a data directory's content store (None: no store to read)."""
    if data_dir is None:
        return None
    return lambda work_id: get_content(data_dir, "works", work_id)


def review_candidates(
    conn: Connection,
    fp: Fingerprint,
    *,
    exclude: str | None = None,
    content: bytes | None = None,
    data_dir: Path | None = None,
) -> list[tuple[str, float]]:
    """Registered works an image may copy but would not be linked to, at or above ``IMAGE_REVIEW_MIN``:
    (work id, similarity), most similar first, at most ``REVIEW_CANDIDATES_MAX``. A person confirms one
    with ``endcredits works link``; nothing is linked here. Empty for other methods (their thresholds leave
    no band). ``content`` and ``data_dir``: the image's bytes and the store's, as ``register_works`` has them."""
    if fp.method not in THUMBNAIL_METHODS:
        return []
    found = fingerprint_candidates(conn, fp.method, _query_keys(fp), IMAGE_CANDIDATES_MAX)
    found.pop(exclude or "", None)
    scored = _similarities(fp.method, fp.value, found)
    same = {w for _, w in _image_links(fp, scored, found, content, stored_content(data_dir))}
    return _review_band(scored, same)


def _review_band(scored: dict[str, float], linked: set[str]) -> list[tuple[str, float]]:
    band = [(w, s) for w, s in scored.items() if IMAGE_REVIEW_MIN <= s and w not in linked]
    return sorted(band, key=lambda x: (-x[1], x[0]))[:REVIEW_CANDIDATES_MAX]


def _image_links(
    fp: Fingerprint,
    scored: dict[str, float],
    values: dict[str, str],
    content: bytes | None = None,
    content_of: ContentOf | None = None,
) -> list[tuple[float, str]]:
    """The candidates an image would be linked to, (similarity, work id), most similar first: for versions 7
    and 6 those from ``RENDER_V6_VERIFY_MIN`` up that ``image_rerender.same_v7`` (``same_v6``) finds the
    same, for version 5
    those from ``RENDER_VERIFY_MIN`` up that ``image_rerender.same_v5`` finds the same (the new image's
    ``content`` and the registered ones' by ``content_of``, where given), for version 4 from
    ``IMAGE_VERIFY_MIN`` by
    ``image_verify.verify_fine`` (at most ``IMAGE_VERIFY_MAX`` verified), for version 3 from ``VERIFY128_MIN``
    by ``image_verify.verify``, for version 2 those from ``IMAGE_THRESHOLD`` up."""
    ranked = sorted(((s, w) for w, s in scored.items()), key=lambda x: (-x[0], x[1]))
    if fp.method == PREVIOUS_IMAGE_METHOD:
        return [(s, w) for s, w in ranked if s >= IMAGE_THRESHOLD]
    if fp.method == VERIFY128_IMAGE_METHOD:
        tried = [(s, w) for s, w in ranked if s >= VERIFY128_MIN][:IMAGE_VERIFY_MAX]
        mine = _fine_of(fp.value) if tried else None
        return [(s, w) for s, w in tried if mine is not None and _same_picture(mine, _fine_of(values[w]))]
    gates = {V4_IMAGE_METHOD: IMAGE_VERIFY_MIN, V5_IMAGE_METHOD: RENDER_VERIFY_MIN}
    gate = gates.get(fp.method, RENDER_V6_VERIFY_MIN)
    tried = [(s, w) for s, w in ranked if s >= gate][:IMAGE_VERIFY_MAX]
    if not tried:
        return []
    if fp.method == V4_IMAGE_METHOD:
        new = fine_picture(fp.value, V4_IMAGE_METHOD)
        return [(s, w) for s, w in tried if same_fine_picture(fine_picture(values[w], V4_IMAGE_METHOD), new)]
    from endcredits.registry.image_rerender import Side, same_v5, same_v6, same_v7

    same = {V5_IMAGE_METHOD: same_v5, V6_IMAGE_METHOD: same_v6}.get(fp.method, same_v7)
    ours = Side(fine_picture(fp.value, fp.method), content)

    def theirs(w: str) -> Side:
        return Side(fine_picture(values[w], fp.method), content_of(w) if content_of is not None else None)

    return [(s, w) for s, w in tried if same(theirs(w), ours, s)]


def similarity_ppm(value: float) -> int:
    """A similarity as an integer in parts per million (how links store it), rounded half up."""
    return int(value * 1_000_000 + 0.5)


# Registering -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Registered:
    """One registered work: its id, and the canonical work it was linked to (None: it is its own)."""

    work_id: str
    canonical_work_id: str | None
    method: str | None
    similarity: float | None
    candidates: tuple[tuple[str, float], ...] = ()
    """Works it may copy, for a person to confirm (images not linked: ``review_candidates``)."""


def register_works(
    conn: Connection,
    items: Sequence[WorkIn],
    *,
    link: bool = True,
    fingerprints: Sequence[Fingerprint | None] | None = None,
    data_dir: Path | None = None,
) -> list[Registered]:
    """Register works by SHA-256 (``registry.records.add_works``), fingerprint each new one, and link each new
    one whose fingerprint matches a registered work's to that work's canonical work. Items are matched in
    input order, so an item can match one registered earlier in the same call. Every link is audited.

    Only a work registered for the first time is linked by fingerprint: registering the same bytes again
    changes nothing, so an operator's unlink (``registry.records.unlink_work``) stands. ``link=False``
    stores fingerprints without linking. ``fingerprints``, one per item, are what ``compute_fingerprint``
    gave for them (an importer that rendered its drawings already); they are not computed again.
    ``data_dir``: where registered works' bytes are stored (``store.blobs``), so an image candidate that is
    an SVG drawing, or a new one that is, is rendered again at the other's resolution to verify it.

    A work that cannot be fingerprinted (an image that does not decode, an SVG that does not render) stops
    the call with a ``ValidationError`` naming the work's source or title, and nothing is written.
    """
    if fingerprints is not None and len(fingerprints) != len(items):
        raise ValidationError(f"{len(fingerprints)} fingerprints given for {len(items)} works")
    before = existing_work_ids(
        conn, [hashlib.sha256(w.content).hexdigest() for w in items if isinstance(w.content, bytes)]
    )
    ids = add_works(conn, items)
    out: list[Registered] = []
    done: dict[str, Registered] = {}
    for index, (w, wid) in enumerate(zip(items, ids)):
        if wid not in done:
            if wid in before:
                done[wid] = Registered(wid, linked_canonical(conn, [wid]).get(wid), None, None)
            else:
                given = fingerprints[index] if fingerprints is not None else _fingerprint_of(w)
                new = w.content if isinstance(w.content, bytes) else None
                done[wid] = _link(conn, given, wid, link=link, new=new, content_of=stored_content(data_dir))
        out.append(done[wid])
    return out


def _fingerprint_of(w: WorkIn) -> Fingerprint | None:
    try:
        return compute_fingerprint(w.content, w.kind)
    except ValidationError as exc:
        raise ValidationError(f"work {w.source or w.title!r}: {exc}") from None


def _link(
    conn: Connection,
    fp: Fingerprint | None,
    wid: str,
    *,
    link: bool,
    new: bytes | None = None,
    content_of: ContentOf | None = None,
) -> Registered:
    if fp is None:
        return Registered(wid, None, None, None)
    best: tuple[float, str] | None = None
    scored: dict[str, float] = {}
    if link:
        limit = IMAGE_CANDIDATES_MAX if fp.method in THUMBNAIL_METHODS else CANDIDATES_MAX
        found = fingerprint_candidates(conn, fp.method, _query_keys(fp), limit)
        scored = _similarities(fp.method, fp.value, found)
        if fp.method in THUMBNAIL_METHODS:
            best = next(iter(_image_links(fp, scored, found, new, content_of)), None)
        else:
            for other, s in sorted(scored.items()):
                if is_match(fp.method, s) and (best is None or s > best[0]):
                    best = (s, other)
    add_fingerprint(conn, wid, fp.method, fp.value, fp.band_keys)
    if best is None:
        image = fp.method in THUMBNAIL_METHODS
        return Registered(wid, None, fp.method, None, tuple(_review_band(scored, set())) if image else ())
    canonical = link_works(
        conn, wid, best[1], method=fp.method, similarity_ppm=similarity_ppm(best[0]), linked_by="fingerprint"
    )
    return Registered(wid, canonical, fp.method, best[0])


__all__ = [
    "AUDIO_METHOD",
    "AUDIO_THRESHOLD",
    "CANDIDATES_MAX",
    "IMAGE_METHOD",
    "V6_IMAGE_METHOD",
    "V5_IMAGE_METHOD",
    "RENDER_METHODS",
    "V4_IMAGE_METHOD",
    "stored_content",
    "IMAGE_REVIEW_MIN",
    "IMAGE_THRESHOLD",
    "IMAGE_VERIFY_MIN",
    "RENDER_VERIFY_MIN",
    "RENDER_V6_VERIFY_MIN",
    "PREVIOUS_IMAGE_METHOD",
    "THUMBNAIL_METHODS",
    "VERIFY128_IMAGE_METHOD",
    "VERIFY128_MIN",
    "FinePicture",
    "fine_picture",
    "image_band_keys",
    "same_fine_picture",
    "LEGACY_IMAGE_METHOD",
    "MINHASH_PERM_COUNT",
    "OPERATOR_METHOD",
    "TEXT_METHOD",
    "TEXT_SHINGLE_CHARS",
    "TEXT_THRESHOLD",
    "Fingerprint",
    "Registered",
    "audio_fingerprint",
    "compute_fingerprint",
    "canonical_picture",
    "decode_image",
    "image_fingerprint",
    "images_match",
    "is_svg",
    "legacy_image_fingerprint",
    "render_svg",
    "review_candidates",
    "is_match",
    "register_works",
    "similarity",
    "text_fingerprint",
    "text_shingles",
    "paired_thumbnail_similarities",
    "thumbnail_similarities",
]
