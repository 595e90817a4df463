"""A second, finer look at two images whose 64-pixel thumbnails nearly agree: same picture, or not?

The 64x64 thumbnail correlation of ``registry.fingerprints`` finds candidates cheaply, but on its own it
cannot tell a re-encoded, resized or cropped copy (which loses correlation through its thin lines) from a
different drawing that differs in one region (another emblem on the same flag, a star with more points).

``verify_fine`` (method ``gray64-verify256-v4``) decides such a pair from 256x256 grayscale and 16x16
colour thumbnails of each trimmed picture and the picture's own size in pixels:

1. **Align.** The crop of one picture that best matches the other is searched per axis, by ink profiles
   and correlation at 64 pixels (up to ``ALIGN_CUT_MAX`` of a side), then refined to a fraction of a
   pixel (a scale and a shift per axis) by Gauss-Newton at 128 pixels, both pictures blurred by a pixel.
2. **Compare at the coarser resolution.** Both are blurred by ``NATIVE_BLUR`` of a pixel of the picture
   with fewer pixels on that axis (at least ``FINE_BLUR_MIN``), so a quarter-size copy is compared at its
   own resolution; aligned, they must correlate at ``FINE_CORRELATION_MIN`` or more.
3. **Compare colours.** Where both colour thumbnails are coloured (chroma over ``CHROMA_MIN``), their hue
   may differ by at most ``HUE_DEGREES_MAX`` on average: a red and a blue button are different works.

``verify`` is version 3's rule (``gray64-verify128-v3``): the same alignment without the refinement, at
128 pixels after one 3x3 blur, from ``CORRELATION_MIN``. Why and how the constants were chosen:
docs/concepts/registry.md, "Images and drawings".
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
COLOUR_PIXELS = 16
"""Side of the colour thumbnail a version 3 fingerprint stores (RGB)."""
CORRELATION_MIN = 0.995
"""Correlation at 128 pixels, aligned and blurred, from which two pictures are the same (tuning half)."""
CHROMA_MIN = 40
"""A colour-thumbnail pixel is coloured when its largest and smallest channel differ by more than this."""
HUE_DEGREES_MAX = 45.0
"""Largest mean hue difference over the pixels coloured in both pictures (tuning half: copies turned by
30 degrees stay under 33 in 99 of 100)."""


@dataclass(frozen=True)
class Verdict:
    """How two pictures compare once aligned: the correlation at 128 pixels, the mean hue difference in
    degrees (0 where they share no coloured pixel), the spans used, and whether they are the same."""

    correlation: float
    hue_degrees: float
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


def hue_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean hue difference in degrees of two ``COLOUR_PIXELS`` square RGB thumbnails (uint8) over the pixels
    coloured in both; 0 where none is (a grayscale copy has no hue to disagree with)."""
    hues, chromas = [], []
    for img in (a, b):
        x = img.reshape(-1, 3).astype(np.float64)
        r, g, bl = x[:, 0], x[:, 1], x[:, 2]
        hues.append(np.arctan2(np.sqrt(3.0) * (g - bl), 2 * r - g - bl))
        chromas.append(x.max(axis=1) - x.min(axis=1))
    both = (chromas[0] > CHROMA_MIN) & (chromas[1] > CHROMA_MIN)
    if not both.any():
        return 0.0
    turn = np.abs(np.angle(np.exp(1j * (hues[0][both] - hues[1][both]))))
    return float(np.degrees(turn).mean())


def verify(a: np.ndarray, b: np.ndarray, colour_a: np.ndarray, colour_b: np.ndarray) -> Verdict:
    """Compare two pictures by their ``FINE_PIXELS`` square grayscale thumbnails and ``COLOUR_PIXELS``
    square RGB thumbnails (uint8, of the trimmed pictures)."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    sy, sx = align(x, y)
    corr = _corr(_box(_view(x, 0, sy, sx), 3), _box(_view(y, 1, sy, sx), 3))
    hue = hue_difference(colour_a, colour_b)
    return Verdict(corr, hue, sy, sx, corr >= CORRELATION_MIN and hue <= HUE_DEGREES_MAX)


# Version 4 ----------------------------------------------------------------------------------------
V4_PIXELS = 256
"""Side of the grayscale thumbnail a ``gray64-verify256-v4`` fingerprint stores besides the 64-pixel one."""
FINE_CORRELATION_MIN = 0.995
"""Correlation at 256 pixels, aligned and blurred to the coarser picture, from which two pictures are the
same (chosen on the tuning half: docs)."""
NATIVE_BLUR = 0.5
"""Gaussian sigma, in pixels of the coarser picture, that both pictures are blurred by before comparing."""
FINE_BLUR_MIN = 1.0
"""Least Gaussian sigma, in 256-pixel thumbnail pixels (half a pixel of a 256-pixel render's grain)."""
REFINE_STEPS = 8
"""Gauss-Newton steps of the sub-pixel alignment at 128 pixels (each moves an end by at most 2 pixels)."""

Quad = tuple[float, float, float, float]
"""The span of the registered picture lined up with the whole new one: (top, bottom, left, right), shares
of its height and width (outside [0, 1] where the new picture shows more than it)."""


@dataclass(frozen=True)
class FineVerdict:
    """``verify_fine``'s answer: the correlation at 256 pixels, the mean hue difference, the span of the
    registered picture that lines up with the new one, and whether they are the same."""

    correlation: float
    hue_degrees: float
    span: Quad
    same: bool


def _gaussian(img: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Gaussian blur along one axis, edges repeated."""
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r, r)
    p = np.pad(img, pad, mode="edge")
    n = img.shape[axis]
    out = np.zeros_like(img)
    for i, w in enumerate(k):
        out += w * (p[i : i + n] if axis == 0 else p[:, i : i + n])
    return out


def _blur(img: np.ndarray, sigma_y: float, sigma_x: float) -> np.ndarray:
    return _gaussian(_gaussian(img, sigma_y, 0), sigma_x, 1)


def _linear_taps(n: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = np.clip((lo + (np.arange(n) + 0.5) / n * (hi - lo)) * n - 0.5, 0.0, n - 1.0)
    left = np.floor(pos).astype(np.int64)
    return left, np.minimum(left + 1, n - 1), pos - left


def warp(img: np.ndarray, span: Quad) -> np.ndarray:
    """The span (top, bottom, left, right) of a square image, resampled linearly to its full side (edges
    repeated beyond it)."""
    n = img.shape[0]
    ly, ry, wy = _linear_taps(n, span[0], span[1])
    lx, rx, wx = _linear_taps(n, span[2], span[3])
    rows = img[ly] * (1 - wy)[:, None] + img[ry] * wy[:, None]
    out: np.ndarray = rows[:, lx] * (1 - wx)[None, :] + rows[:, rx] * wx[None, :]
    return out


def _as_quad(sy: Span, sx: Span) -> Quad:
    """``align``'s spans as the span of picture 0 (the registered one) that lines up with all of picture 1."""

    def axis(s: Span) -> tuple[float, float]:
        which, lo, hi = s
        return (lo, hi) if which == 0 else (-lo / (hi - lo), (1 - lo) / (hi - lo))

    return (*axis(sy), *axis(sx))


def refine(a: np.ndarray, b: np.ndarray, span: Quad, steps: int = REFINE_STEPS) -> Quad:
    """Gauss-Newton on ``span`` so that ``warp(a, span)`` best fits ``g * b + o``-wise (a linear fit of the
    warped picture and its gradients to ``b``); each step moves an end by at most 2 pixels."""
    n = a.shape[0]
    gy, gx = np.gradient(a)
    u = (np.arange(n) + 0.5) / n
    near, far = n * (1 - u), n * u
    p = np.asarray(span, dtype=np.float64)
    for _ in range(steps):
        q: Quad = (float(p[0]), float(p[1]), float(p[2]), float(p[3]))
        w, wy, wx = warp(a, q), warp(gy, q), warp(gx, q)
        cols = np.stack([w, np.ones_like(w), wy * near[:, None], wy * far[:, None], wx * near, wx * far])
        m = cols.reshape(6, -1)
        try:
            coef = np.linalg.solve(m @ m.T + 1e-9 * np.eye(6), m @ b.reshape(-1))
        except np.linalg.LinAlgError:
            break
        if abs(coef[0]) < 1e-6:
            break
        move = np.clip(coef[2:] / coef[0], -2.0 / n, 2.0 / n)
        p = p + move
        if float(np.abs(move).max()) < 0.02 / n:
            break
    return (float(p[0]), float(p[1]), float(p[2]), float(p[3]))


def fit_span(a: np.ndarray, b: np.ndarray) -> Quad:
    """The span of a registered square grayscale thumbnail ``a`` that lines up with all of a new one ``b``
    (sides multiples of ``FINE_PIXELS``): ``align`` at 128 pixels, refined to a fraction of a pixel."""
    x128, y128 = _shrink(a.astype(np.float64), FINE_PIXELS), _shrink(b.astype(np.float64), FINE_PIXELS)
    return refine(_blur(x128, 1.0, 1.0), _blur(y128, 1.0, 1.0), _as_quad(*align(x128, y128)))


def aligned_correlation(
    a: np.ndarray, b: np.ndarray, native_a: tuple[int, int], native_b: tuple[int, int], span: Quad
) -> float:
    """The correlation of ``a``'s ``span`` with all of ``b`` (square grayscale thumbnails of one side),
    both blurred by ``NATIVE_BLUR`` of a pixel of the picture with fewer pixels on each axis (at least
    ``FINE_BLUR_MIN`` thumbnail pixels); ``native_*`` are the pictures' (width, height) in pixels."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    sigma_y, sigma_x = compare_sigmas(x.shape[0], native_a, native_b)
    return _corr(warp(_blur(x, sigma_y, sigma_x), span), _blur(y, sigma_y, sigma_x))


def verify_fine(
    a: np.ndarray,
    b: np.ndarray,
    colour_a: np.ndarray,
    colour_b: np.ndarray,
    native_a: tuple[int, int],
    native_b: tuple[int, int],
) -> FineVerdict:
    """Compare a registered picture ``a`` and a new one ``b`` by their ``V4_PIXELS`` square grayscale and
    ``COLOUR_PIXELS`` square RGB thumbnails (uint8, of the trimmed pictures), knowing the size (width,
    height) in pixels of each trimmed picture."""
    span = fit_span(a, b)
    corr = aligned_correlation(a, b, native_a, native_b, span)
    hue = hue_difference(colour_a, colour_b)
    return FineVerdict(corr, hue, span, corr >= FINE_CORRELATION_MIN and hue <= HUE_DEGREES_MAX)


# Version 5: a drawing rendered again at the copy's resolution ----------------------------------------
RENDERED_CORRELATION_MIN = 0.996
"""Correlation, aligned at the copy's resolution, from which an SVG drawing rendered again and a picture
are the same (the rule linking most tuning copies of the full labelled set with at most 1 in 1,000 of its
distinct pairs linked: docs)."""
RESIDUAL_GREY = 32
"""A pixel differs when, after a gain and offset fit of one aligned picture on the other, it is off by
more than this many grey levels (``residual_share``: reported, not part of the rule; on the tuning half a
limit on it refused copies and no distinct pair)."""


@dataclass(frozen=True)
class RenderedVerdict:
    """How a drawing rendered again compares with a picture at the picture's resolution: the aligned
    correlation, the share of pixels that differ by more than ``RESIDUAL_GREY``, the mean hue difference,
    and whether they are the same."""

    correlation: float
    residual_share: float
    hue_degrees: float
    same: bool


def residual_share(a: np.ndarray, b: np.ndarray, span: Quad, level: float = RESIDUAL_GREY) -> float:
    """The share of pixels of all of ``b`` off by more than ``level`` grey levels from ``a``'s ``span``
    fitted to it by a gain and an offset (both blurred by one thumbnail pixel)."""
    x = warp(_blur(a.astype(np.float64), 1.0, 1.0), span).reshape(-1)
    y = _blur(b.astype(np.float64), 1.0, 1.0).reshape(-1)
    m = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(m, y, rcond=None)
    return float((np.abs(y - m @ coef) > level).mean())


def verify_rendered(
    a: np.ndarray, b: np.ndarray, colours: tuple[np.ndarray, np.ndarray], natives: tuple[tuple[int, int], ...]
) -> RenderedVerdict:
    """Compare a registered picture ``a`` and a new one ``b`` (square grayscale thumbnails of one side, a
    multiple of ``FINE_PIXELS``, of pictures drawn at about one resolution: one of them an SVG rendered
    again for it; their ``COLOUR_PIXELS`` RGB thumbnails and (width, height)) by the aligned correlation,
    the share of differing pixels and the hue."""
    span = fit_span(a, b)
    corr = aligned_correlation(a, b, natives[0], natives[1], span)
    share = residual_share(a, b, span)
    hue = hue_difference(*colours)
    same = corr >= RENDERED_CORRELATION_MIN and hue <= HUE_DEGREES_MAX
    return RenderedVerdict(corr, share, hue, same)


# Version 6: a fitted colour model, with the worst window of the picture left out ------------------------
FITTED_R2_MIN = 0.997
"""Share of the copy's colour variance that an affine RGB map of the aligned drawing explains, with the
worst ``WINDOW_SHARE`` window left out, from which the two are the same (version 6's second test; chosen
on the tuning half: docs)."""
WINDOW_SHARE = 0.15
"""Side of the square window, as a share of the compared side, that the fitted comparison may leave out:
one box-like occlusion or edit (a stamp of 1/7 of the drawing's width and height, blurred, fits)."""
QUADRATIC = False
"""Whether the colour map has quadratic terms (the squares and products of R, G and B) besides the affine
ones: a hue rotation is piecewise linear in RGB, not affine."""
Variant = tuple[float, bool]
"""One fitted comparison: the window share left out, and whether the colour map is quadratic."""


@dataclass(frozen=True)
class FittedVerdict:
    """Version 6's answer on a drawing rendered again and a picture: version 5's aligned correlation, the
    share of the picture's colour variance explained by an affine RGB map of the drawing over all pixels
    (``fitted``) and with the worst window left out (``fitted_window``), the hue difference, and whether
    they are the same."""

    correlation: float
    fitted: float
    fitted_window: float
    windows: tuple[float, ...]
    """``fitted_window`` for each variant tried (the first is ``fitted_window``)."""
    hue_degrees: float
    same: bool


def _terms(x: np.ndarray, quadratic: bool) -> np.ndarray:
    """The colour map's terms of the pixels ``x`` (N x 3, 0-255): R, G, B and 1, and with ``quadratic``
    the six squares and products too."""
    cols = [x, np.ones((len(x), 1))]
    if quadratic:
        u = x / 255.0
        cols.append(np.stack([u[:, i] * u[:, j] * 255.0 for i in range(3) for j in range(i, 3)], axis=1))
    return np.hstack(cols)


class _Sums:
    """The sums a least-squares colour map needs over a set of pixels: the terms' Gram matrix, their
    products with the colours, the colours' sums and squares, and the count."""

    def __init__(self, m: np.ndarray, y: np.ndarray) -> None:
        self.gram, self.cross = m.T @ m, m.T @ y
        self.total, self.squares, self.count = y.sum(axis=0), float((y * y).sum()), len(y)

    def less(self, other: _Sums) -> _Sums:
        out = object.__new__(_Sums)
        out.gram, out.cross = self.gram - other.gram, self.cross - other.cross
        out.total, out.squares = self.total - other.total, self.squares - other.squares
        out.count = self.count - other.count
        return out

    def explained(self) -> tuple[float, np.ndarray]:
        """The share of the colours' variance the least-squares map explains, and the map."""
        coef = np.linalg.lstsq(self.gram, self.cross, rcond=None)[0]  # a flat channel leaves it singular
        residual = self.squares - 2 * float((coef * self.cross).sum()) + float((coef * (self.gram @ coef)).sum())
        variance = self.squares - float((self.total * self.total).sum()) / max(1, self.count)
        return (1.0 - max(0.0, residual) / variance if variance > 0 else 0.0), coef


def _worst_window(err: np.ndarray, side: int, k: int) -> tuple[slice, slice]:
    """The ``k`` square window with the largest residual sum."""
    c = np.pad(err.reshape(side, side).cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    sums = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    i, j = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return slice(int(i), int(i) + k), slice(int(j), int(j) + k)


def fitted_colour(
    a: np.ndarray,
    b: np.ndarray,
    span: Quad,
    sigmas: tuple[float, float],
    variants: tuple[Variant, ...] = ((WINDOW_SHARE, QUADRATIC),),
) -> tuple[float, tuple[float, ...]]:
    """The share of square RGB picture ``b``'s variance explained by a least-squares colour map of ``a``'s
    ``span`` (both blurred by ``sigmas``, y and x, in pixels): over all pixels (the first variant's map),
    and for each variant with the worst window of its share (of the side) left out, the window found on
    the residual of the map fitted to all pixels."""
    side = b.shape[0]
    x = np.stack([warp(_blur(a[..., c].astype(np.float64), *sigmas), span) for c in range(3)], axis=-1)
    y = np.stack([_blur(b[..., c].astype(np.float64), *sigmas) for c in range(3)], axis=-1)
    x, y = x.reshape(-1, 3), y.reshape(-1, 3)
    fits = {}
    for q in {q for _, q in variants}:
        m = _terms(x, q)
        sums = _Sums(m, y)
        share, coef = sums.explained()
        fits[q] = (m, sums, share, ((y - m @ coef) ** 2).sum(axis=1))
    windows = []
    for part, q in variants:
        m, sums, _, err = fits[q]
        rows, cols = _worst_window(err, side, max(2, round(part * side)))
        inside = (np.arange(side)[rows, None] * side + np.arange(side)[None, cols]).reshape(-1)
        windows.append(sums.less(_Sums(m[inside], y[inside])).explained()[0])
    return fits[variants[0][1]][2], tuple(windows)


def compare_sigmas(side: int, native_a: tuple[int, int], native_b: tuple[int, int]) -> tuple[float, float]:
    """The blur (y, x) of ``aligned_correlation`` at ``side`` pixels for pictures of these sizes."""
    sigma_y = max(FINE_BLUR_MIN, NATIVE_BLUR * side / max(1, min(native_a[1], native_b[1])))
    sigma_x = max(FINE_BLUR_MIN, NATIVE_BLUR * side / max(1, min(native_a[0], native_b[0])))
    return sigma_y, sigma_x


def verify_fitted(
    gray: tuple[np.ndarray, np.ndarray],
    rgb: tuple[np.ndarray, np.ndarray],
    colours: tuple[np.ndarray, np.ndarray],
    natives: tuple[tuple[int, int], tuple[int, int]],
    variants: tuple[Variant, ...] = ((WINDOW_SHARE, QUADRATIC),),
) -> FittedVerdict:
    """Version 6: a registered picture and a new one (square grayscale and RGB thumbnails of one side, a
    multiple of ``FINE_PIXELS``, of pictures drawn at about one resolution; their ``COLOUR_PIXELS`` RGB
    thumbnails and (width, height)) are the same when version 5's correlation reaches
    ``RENDERED_CORRELATION_MIN``, or else when an affine colour map of the aligned drawing explains
    ``FITTED_R2_MIN`` of the picture with its worst window left out; in both cases with their hues within
    ``HUE_DEGREES_MAX``. The colour map is fitted only when the correlation falls short (NaN otherwise);
    ``variants``: the fitted comparisons made, the first deciding (more are for measuring)."""
    span = fit_span(*gray)
    corr = aligned_correlation(gray[0], gray[1], natives[0], natives[1], span)
    hue = hue_difference(*colours)
    if corr >= RENDERED_CORRELATION_MIN:
        nan = float("nan")
        return FittedVerdict(corr, nan, nan, tuple(nan for _ in variants), hue, hue <= HUE_DEGREES_MAX)
    sigmas = compare_sigmas(gray[0].shape[0], *natives)
    whole, windows = fitted_colour(rgb[0], rgb[1], span, sigmas, variants)
    same = windows[0] >= FITTED_R2_MIN and hue <= HUE_DEGREES_MAX
    return FittedVerdict(corr, whole, windows[0], windows, hue, same)


__all__ = [
    "COLOUR_PIXELS",
    "FINE_PIXELS",
    "V4_PIXELS",
    "FineVerdict",
    "FittedVerdict",
    "RenderedVerdict",
    "Verdict",
    "aligned_correlation",
    "align",
    "compare_sigmas",
    "fit_span",
    "fitted_colour",
    "hue_difference",
    "refine",
    "verify",
    "verify_fine",
    "verify_fitted",
    "verify_rendered",
    "residual_share",
    "warp",
]
