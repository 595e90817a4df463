"""A second, finer look at two images whose 64-pixel thumbnails nearly agree: same picture, or not?

The 64x64 thumbnail correlation of ``registry.fingerprints`` finds candidates cheaply, but on its own it
cannot tell a re-encoded, resized or cropped copy (which loses correlation through its thin lines) from a
different drawing that differs in one region (another emblem on the same flag, a star with more points).
This module decides such a pair from 128x128 thumbnails of the two trimmed pictures:

1. **Align.** The crop of one picture that best matches the other is searched at 32 and then 64 pixels,
   per axis (a copy cut by up to ``ALIGN_CUT_MAX`` of its width or height on each side lines up).
2. **Explain locally.** At 128 pixels, within every ``WINDOW_PIXELS`` window, each picture is fitted as an
   affine function of the other (least squares: gain and offset of its own, so a recoloured, darker or
   grayscale copy is explained). What is left is the structure one picture has and the other lacks:
   JPEG noise leaves a little everywhere, a different emblem or outline leaves a lot in one region.
3. **Decide.** The share of the picture whose unexplained grey level exceeds ``RESIDUAL_GREY_MIN`` is the
   pair's *difference*; at most ``DIFFERENCE_MAX`` is the same picture.

Why and how the constants were chosen: docs/concepts/registry.md, "Images and drawings".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FINE_PIXELS = 128
"""Side of the finer thumbnail a ``gray64-verify128-v3`` fingerprint stores besides the 64-pixel one."""
ALIGN_CUT_MAX = 0.25
"""Largest share of a picture's width or height, each side, that the alignment cuts off either picture
(a copy cropped by 5% of its drawing can lose more once its new white margin is trimmed)."""
PROFILE_PIXELS = 64
AXIS_CANDIDATES = 3
"""Spans per axis kept from the ink-profile search for the 2-D comparison (3 x 3 pairs scored)."""
WINDOW_PIXELS = 7
"""Side, at 128 pixels, of the windows in which one picture is fitted to the other."""
BLUR_PASSES = 1
"""3x3 box blurs applied at 128 pixels before fitting: half a pixel of misalignment is not a difference."""
RESIDUAL_GREY_MIN = 24.0
"""Grey levels (0-255) of unexplained structure from which a pixel counts as different."""
DIFFERENCE_MAX = 0.01
"""Largest share of differing pixels of a pair that is the same picture."""


@dataclass(frozen=True)
class Verdict:
    """How two pictures compare once aligned: the correlation at 128 pixels, the share of pixels that one
    picture does not explain in the other (``difference``), the cuts used, and whether they are the same."""

    correlation: float
    difference: float
    span_y: tuple[int, float, float]
    span_x: tuple[int, float, float]
    same: bool


def _taps(side_in: int, lo: float, hi: float, side_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation sampling the span [lo, hi] (shares of the row) of a row of ``side_in`` pixels
    at ``side_out`` evenly spaced centres: the left and right source pixels and the right one's weight."""
    centres = lo * side_in + (np.arange(side_out) + 0.5) * (hi - lo) * side_in / side_out - 0.5
    centres = np.clip(centres, 0.0, side_in - 1.0)
    left = np.floor(centres).astype(np.int64)
    return left, np.clip(left + 1, 0, side_in - 1), centres - left


def _resample(side_in: int, lo: float, hi: float, side_out: int) -> np.ndarray:
    """``_taps`` as a (side_out x side_in) matrix."""
    left, right, w = _taps(side_in, lo, hi, side_out)
    out = np.zeros((side_out, side_in))
    np.add.at(out, (np.arange(side_out), left), 1 - w)
    np.add.at(out, (np.arange(side_out), right), w)
    return out


def _shrink(img: np.ndarray, side: int) -> np.ndarray:
    """Area-average a square image to ``side`` (its side must be a multiple of ``side``)."""
    k = img.shape[0] // side
    out: np.ndarray = img.reshape(side, k, side, k).mean(axis=(1, 3))
    return out


def _shrink_row(row: np.ndarray) -> np.ndarray:
    out: np.ndarray = row.reshape(PROFILE_PIXELS, -1).mean(axis=1)
    return out


Span = tuple[int, float, float]
"""One axis of an alignment: which picture (0 or 1) is cut, to the span [lo, hi] of it; the other is whole."""


def _spans() -> list[Span]:
    step = 1.0 / PROFILE_PIXELS
    ends = np.arange(0, round(ALIGN_CUT_MAX / step) + 1) * step
    out: list[Span] = [(0, 0.0, 1.0)]
    for which in (0, 1):
        out += [(which, float(lo), float(1 - hi)) for lo in ends for hi in ends if lo + hi > 0]
    return out


_SPANS = _spans()
_TAPS = [_taps(PROFILE_PIXELS, lo, hi, PROFILE_PIXELS) for _, lo, hi in _SPANS]
_LEFT, _RIGHT, _WEIGHT = (np.stack([t[i] for t in _TAPS]) for i in range(3))
_CUTS_FIRST = np.asarray([s[0] == 0 for s in _SPANS])[:, None]


def _axis_candidates(pa: np.ndarray, pb: np.ndarray) -> list[Span]:
    """The ``AXIS_CANDIDATES`` spans whose resampled ink profiles correlate best along one axis."""
    va = np.where(_CUTS_FIRST, pa[_LEFT] * (1 - _WEIGHT) + pa[_RIGHT] * _WEIGHT, pa[None, :])
    vb = np.where(_CUTS_FIRST, pb[None, :], pb[_LEFT] * (1 - _WEIGHT) + pb[_RIGHT] * _WEIGHT)
    va = va - va.mean(axis=1, keepdims=True)
    vb = vb - vb.mean(axis=1, keepdims=True)
    den = np.sqrt((va * va).sum(axis=1) * (vb * vb).sum(axis=1))
    corr = np.where(den > 0, (va * vb).sum(axis=1) / np.where(den > 0, den, 1.0), 0.0)
    return [_SPANS[i] for i in np.argsort(-corr, kind="stable")[:AXIS_CANDIDATES]]


def _view(img: np.ndarray, which: int, sy: Span, sx: Span) -> np.ndarray:
    n = img.shape[0]
    ry = _resample(n, sy[1], sy[2], n) if sy[0] == which else np.eye(n)
    rx = _resample(n, sx[1], sx[2], n) if sx[0] == which else np.eye(n)
    out: np.ndarray = ry @ img @ rx.T
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a - a.mean(), b - b.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0


def align(a: np.ndarray, b: np.ndarray) -> tuple[Span, Span]:
    """The spans (y, x) that best line up two ``FINE_PIXELS`` thumbnails of trimmed pictures: the best few
    of each axis by ink profile, then the best pair of those by correlation at 64 pixels."""
    ys = _axis_candidates(_shrink_row(255.0 - a.mean(axis=1)), _shrink_row(255.0 - b.mean(axis=1)))
    xs = _axis_candidates(_shrink_row(255.0 - a.mean(axis=0)), _shrink_row(255.0 - b.mean(axis=0)))
    a64, b64 = _shrink(a, 64), _shrink(b, 64)
    scored = [(_corr(_view(a64, 0, sy, sx), _view(b64, 1, sy, sx)), sy, sx) for sy in ys for sx in xs]
    best = max(scored, key=lambda t: t[0])
    return _refine(a64, b64, best)


def _refine(a64: np.ndarray, b64: np.ndarray, best: tuple[float, Span, Span]) -> tuple[Span, Span]:
    """Move each end of each axis's span by a step of 1/128 while the correlation at 64 pixels rises."""
    step = 1.0 / FINE_PIXELS
    corr, sy, sx = best
    for axis in (0, 1):
        span = (sy, sx)[axis]
        tries = [(span[0], span[1] + i * step, span[2] + j * step) for i in (-1, 0, 1) for j in (-1, 0, 1)]
        for t in tries:
            if not 0.0 <= t[1] < t[2] <= 1.0:
                continue
            ty, tx = (t, sx) if axis == 0 else (sy, t)
            c = _corr(_view(a64, 0, ty, tx), _view(b64, 1, ty, tx))
            if c > corr:
                corr, sy, sx = c, ty, tx
    return sy, sx


def _box(img: np.ndarray, k: int) -> np.ndarray:
    """Mean over the k x k window centred at each pixel (edges padded by reflection)."""
    r = k // 2
    p = np.pad(img, r, mode="reflect")
    c = np.pad(p.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    n = img.shape[0]
    total = c[k : k + n, k : k + n] - c[:n, k : k + n] - c[k : k + n, :n] + c[:n, :n]
    out: np.ndarray = total / (k * k)
    return out


def residual_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Grey levels of structure not explained, per pixel: in each window, the root of the variance of one
    picture left after fitting it as an affine function of the other, the larger of the two ways."""
    for _ in range(BLUR_PASSES):
        a, b = _box(a, 3), _box(b, 3)
    k = WINDOW_PIXELS
    ma, mb = _box(a, k), _box(b, k)
    va = np.maximum(_box(a * a, k) - ma * ma, 0.0)
    vb = np.maximum(_box(b * b, k) - mb * mb, 0.0)
    cov = _box(a * b, k) - ma * mb
    eps = 1.0
    left_b = vb - cov * cov / (va + eps)
    left_a = va - cov * cov / (vb + eps)
    out: np.ndarray = np.sqrt(np.maximum(np.maximum(left_a, left_b), 0.0))
    return out


def verify(a: np.ndarray, b: np.ndarray) -> Verdict:
    """Compare two ``FINE_PIXELS`` square grayscale thumbnails (uint8) of trimmed pictures."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    sy, sx = align(x, y)
    xa, yb = _view(x, 0, sy, sx), _view(y, 1, sy, sx)
    diff = float((residual_map(xa, yb) > RESIDUAL_GREY_MIN).mean())
    return Verdict(_corr(xa, yb), diff, sy, sx, diff <= DIFFERENCE_MAX)


__all__ = ["FINE_PIXELS", "Verdict", "align", "residual_map", "verify"]
