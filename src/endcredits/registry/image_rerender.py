"""Versions 5 to 7: an SVG drawing rendered again at the resolution of the picture it is compared with.

A drawing's fine lines (the points of a star polygon) are finer than a pixel of the 256-pixel render the
fingerprint keeps, so that render is mostly aliasing: a 400-pixel export of a star correlates less with it
than two different stars of the series correlate with each other, and no comparison of stored thumbnails
tells them apart. The drawing's bytes are stored (``store.blobs``) and a new work's are in hand, so when
either picture of a candidate pair is an SVG, ``same_v5`` renders it again at the scale at which it lines
up with the other picture (from ``image_verify.fit_span`` on the stored thumbnails) and compares the two at
that resolution (``image_verify.verify_rendered``); two SVGs are both rendered at ``SVG_PAIR_PIXELS``.
Where neither is an SVG, or bytes are missing, version 4's rule on the stored thumbnails decides.

Version 6 (``same_v6``, ``verify_pair_v6``) compares the same two pictures, and where version 5's
correlation falls short fits a colour map of the drawing to the other picture and leaves out its worst
window (``image_verify.verify_fitted``): a recoloured copy or one with a stamp on it links, while a
drawing that differs all over (another star of a series) or in colour (the hue test) does not.

Version 7 (``same_v7``, ``verify_pair_v7``) is version 6 with one more try where a drawing and a raster
picture do not match: the drawing rendered at ``SUPERSAMPLE`` times the picture's resolution and reduced to
it (Lanczos). A copy resized from a larger export has its edges smoothed by the resampling, not by the
renderer, and a drawing rendered straight at the copy's small size does not reproduce them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from endcredits.errors import ValidationError
from endcredits.registry.fingerprints import (
    IMAGE_VERIFY_MIN,
    SVG_RENDER_PIXELS,
    FinePicture,
    canonical_picture,
    decode_image,
    picture_thumbnail,
    render_svg,
    same_fine_picture,
)
from endcredits.registry.image_verify import (
    COLOUR_PIXELS,
    FINE_PIXELS,
    HUE_DEGREES_MAX,
    QUADRATIC,
    WINDOW_SHARE,
    FittedVerdict,
    RenderedVerdict,
    Variant,
    fit_span,
    verify_fitted,
    verify_rendered,
)

if TYPE_CHECKING:
    from PIL import Image

Verdict = RenderedVerdict | FittedVerdict

SVG_PAIR_PIXELS = 512
"""Two SVG drawings are each rendered into a square of this many pixels and compared at this side."""
COMPARE_PIXELS_MAX = 512
"""Largest side at which a picture and a drawing rendered for it are compared (its own size, rounded up to
a multiple of 128, from 256)."""
RENDER_PIXELS_MAX = 2048
"""Largest square a drawing is rendered into again (a larger picture is compared with this render)."""
SUPERSAMPLE = 2
"""Version 7's second try: the drawing rendered at this many times the picture's resolution (at most
``RENDER_PIXELS_MAX``) and reduced to it."""
SUPERSAMPLE_GATE = 0.85
"""64-pixel similarity from which the second try is made (chosen on the tuning half)."""
SUPERSAMPLE_CORRELATION_MIN = 0.9995
"""Correlation of the second try from which it links (chosen on the tuning half)."""
SUPERSAMPLE_FITTED_MIN = 0.999
"""Fitted share (worst window left out) of the second try from which it links (chosen on the tuning half)."""


@dataclass(frozen=True)
class Side:
    """One picture of a pair: what its fingerprint stores, and its bytes where known."""

    fine: FinePicture
    content: bytes | None


def _compare_side(size: tuple[int, ...]) -> int:
    side = -(-max(size) // FINE_PIXELS) * FINE_PIXELS
    return int(min(COMPARE_PIXELS_MAX, max(2 * FINE_PIXELS, side)))


def _render_scale(registered: FinePicture, new: FinePicture) -> float:
    """Render pixels of the SVG's 256-pixel square per pixel of the raster picture, from the stored
    thumbnails' alignment: the span of the registered picture that lines up with all of the new one."""
    span = fit_span(registered.gray, new.gray)
    wide, high = max(1e-3, span[3] - span[2]), max(1e-3, span[1] - span[0])
    (rw, rh), (nw, nh) = registered.size, new.size
    if registered.svg:
        return float(np.mean([nw / (rw * wide), nh / (rh * high)]))
    return float(np.mean([rw * wide / nw, rh * high / nh]))


def _svg_picture(content: bytes, side_px: int, supersample: int = 1) -> Image.Image:
    side = int(min(RENDER_PIXELS_MAX, max(16, side_px)))
    if supersample == 1:
        return canonical_picture(render_svg(content, side))
    from PIL import Image

    big_side = min(RENDER_PIXELS_MAX, supersample * side)
    big = canonical_picture(render_svg(content, big_side))
    scale = side / big_side
    size = (max(1, round(big.width * scale)), max(1, round(big.height * scale)))
    return big.resize(size, Image.Resampling.LANCZOS)


def rendered_pictures(registered: Side, new: Side, supersample: int = 1) -> tuple[Image.Image, Image.Image] | None:
    """The registered and the new picture (canonical) at one resolution, an SVG among them rendered again
    for it (at ``supersample`` times that resolution and reduced to it, where a raster picture is the
    other); None when neither is an SVG or a needed content is missing."""
    r, n = registered.fine, new.fine
    if not (r.svg or n.svg) or registered.content is None or new.content is None:
        return None
    if r.svg and n.svg:
        return _svg_picture(registered.content, SVG_PAIR_PIXELS), _svg_picture(new.content, SVG_PAIR_PIXELS)
    svg, raster = (registered.content, new.content) if r.svg else (new.content, registered.content)
    picture = canonical_picture(decode_image(raster, "image"))
    drawing = _svg_picture(svg, round(SVG_RENDER_PIXELS * _render_scale(r, n)), supersample)
    return (drawing, picture) if r.svg else (picture, drawing)


def drawing_first(registered: Side, new: Side) -> tuple[Side, Side]:
    """The pair with the drawing first where one side is an SVG and the other a raster picture: a copy is
    made from a drawing, so the drawing is the reference whose span the copy shows and whose colours are
    mapped to the copy, whichever was registered first. Otherwise the pair as given."""
    return (new, registered) if new.fine.svg and not registered.fine.svg else (registered, new)


def _thumbnails(
    registered: Side, new: Side, supersample: int = 1
) -> tuple[list[np.ndarray], list[np.ndarray], tuple[Image.Image, Image.Image]] | None:
    """The grayscale thumbnails at the compared side and the ``COLOUR_PIXELS`` RGB ones of the two pictures
    ``rendered_pictures`` gives for the pair ``drawing_first`` orders, and those pictures; None where it
    gives none."""
    from PIL import Image

    pictures = rendered_pictures(*drawing_first(registered, new), supersample)
    if pictures is None:
        return None
    side = _compare_side((*pictures[0].size, *pictures[1].size))
    gray = [picture_thumbnail(p, side) for p in pictures]
    box = Image.Resampling.BOX
    colour = [np.asarray(p.resize((COLOUR_PIXELS, COLOUR_PIXELS), box), dtype=np.uint8) for p in pictures]
    return gray, colour, pictures


def verify_pair(registered: Side, new: Side) -> RenderedVerdict | None:
    """``image_verify.verify_rendered`` of the two pictures ``rendered_pictures`` gives, at the larger
    one's side (a multiple of 128 from 256 to ``COMPARE_PIXELS_MAX``); None where it gives none."""
    got = _thumbnails(registered, new)
    if got is None:
        return None
    gray, colour, (a, b) = got
    return verify_rendered(gray[0], gray[1], (colour[0], colour[1]), (a.size, b.size))


def verify_pair_v6(
    registered: Side,
    new: Side,
    variants: tuple[Variant, ...] = ((WINDOW_SHARE, QUADRATIC),),
    supersample: int = 1,
) -> FittedVerdict | None:
    """``image_verify.verify_fitted`` (version 6) of the two pictures ``rendered_pictures`` gives, at the
    side ``verify_pair`` compares them; None where it gives none."""
    from PIL import Image

    got = _thumbnails(registered, new, supersample)
    if got is None:
        return None
    gray, colour, (a, b) = got
    side = gray[0].shape[0]
    box = Image.Resampling.BOX
    rgb = [np.asarray(p.resize((side, side), box), dtype=np.uint8) for p in (a, b)]
    pair = (gray[0], gray[1]), (rgb[0], rgb[1]), (colour[0], colour[1])
    return verify_fitted(*pair, (a.size, b.size), variants)


def second_try_same(verdict: FittedVerdict) -> bool:
    """Whether version 7's second try links: its correlation from ``SUPERSAMPLE_CORRELATION_MIN`` or its
    fitted share from ``SUPERSAMPLE_FITTED_MIN`` (NaN where the correlation passed version 6's threshold:
    no colour map was fitted), with the hues within ``HUE_DEGREES_MAX``."""
    shares = verdict.correlation >= SUPERSAMPLE_CORRELATION_MIN or verdict.fitted_window >= SUPERSAMPLE_FITTED_MIN
    return bool(shares and verdict.hue_degrees <= HUE_DEGREES_MAX)


def verify_pair_v7(
    registered: Side,
    new: Side,
    similarity: float = 1.0,
    variants: tuple[Variant, ...] = ((WINDOW_SHARE, QUADRATIC),),
) -> FittedVerdict | None:
    """Version 7: ``verify_pair_v6``, and where a drawing and a raster picture at 64-pixel ``similarity``
    from ``SUPERSAMPLE_GATE`` are not the same by it, a second try with the drawing rendered at
    ``SUPERSAMPLE`` times the resolution and reduced (``second_try_same``); None where
    ``rendered_pictures`` gives no pictures."""
    verdict = verify_pair_v6(registered, new, variants)
    if verdict is None or verdict.same or registered.fine.svg == new.fine.svg or similarity < SUPERSAMPLE_GATE:
        return verdict
    again = verify_pair_v6(registered, new, variants, SUPERSAMPLE)
    if again is None or not second_try_same(again):
        return verdict
    return dataclasses.replace(again, same=True)


def _same(verify: Callable[[Side, Side], Verdict | None], registered: Side, new: Side, similarity: float) -> bool:
    """``verify``'s verdict where an SVG and the bytes allow (a registered drawing that no longer renders
    falls back), else version 4's rule, from its own ``IMAGE_VERIFY_MIN``."""
    try:
        verdict = verify(registered, new)
    except ValidationError:
        verdict = None
    if verdict is not None:
        return verdict.same
    return similarity >= IMAGE_VERIFY_MIN and same_fine_picture(registered.fine, new.fine)


def same_v5(registered: Side, new: Side, similarity: float) -> bool:
    """Version 5's verdict on a candidate pair from ``RENDER_VERIFY_MIN`` up (``similarity`` at 64 pixels):
    ``verify_pair`` where an SVG and the bytes allow, else version 4's rule."""
    return _same(verify_pair, registered, new, similarity)


def same_v6(registered: Side, new: Side, similarity: float) -> bool:
    """Version 6's verdict on a candidate pair from ``RENDER_V6_VERIFY_MIN`` up: ``verify_pair_v6`` where an
    SVG and the bytes allow, else version 4's rule (as version 5)."""
    return _same(verify_pair_v6, registered, new, similarity)


def same_v7(registered: Side, new: Side, similarity: float) -> bool:
    """Version 7's verdict on a candidate pair from ``RENDER_V6_VERIFY_MIN`` up: ``verify_pair_v7`` where an
    SVG and the bytes allow, else version 4's rule (as versions 5 and 6)."""
    return _same(lambda r, n: verify_pair_v7(r, n, similarity), registered, new, similarity)


__all__ = [
    "SUPERSAMPLE",
    "SUPERSAMPLE_CORRELATION_MIN",
    "SUPERSAMPLE_FITTED_MIN",
    "SUPERSAMPLE_GATE",
    "drawing_first",
    "second_try_same",
    "Side",
    "rendered_pictures",
    "same_v5",
    "same_v6",
    "same_v7",
    "verify_pair",
    "verify_pair_v6",
    "verify_pair_v7",
]
