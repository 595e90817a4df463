"""Versions 5 to 7 (``gray64-render-v5``, ``-v6``, ``-v7``): a registered SVG drawing is rendered again at a
copy's own resolution to verify it. A star polygon's 400-pixel export links to the stored drawing; a
different star of the same creator's series does not (it is shown for a person to confirm), whichever is
registered first; without the stored bytes, version 4's rule decides; a broken SVG is still refused in one
line. Version 6 links an export with a box stamped on it, which version 5 refuses, and keeps apart a badge
drawn with another star or in another colour. Version 7 links a half-size export that version 6
refuses, by rendering the drawing finer and reducing it, and still keeps the other star's smaller export
apart. A cropped export links to its drawing whichever is registered first. Both backends."""

from __future__ import annotations

import io
import math
import re
import zlib
from pathlib import Path

import pytest
from PIL import ImageChops, ImageDraw

from endcredits.errors import ValidationError
from endcredits.interop.svg import read_svg_metadata
from endcredits.registry import fingerprints as fp
from endcredits.registry.fingerprints import (
    IMAGE_METHOD,
    V4_IMAGE_METHOD,
    V5_IMAGE_METHOD,
    V6_IMAGE_METHOD,
    images_match,
    register_works,
)
from endcredits.registry.image_rerender import (
    SUPERSAMPLE,
    SUPERSAMPLE_CORRELATION_MIN,
    SUPERSAMPLE_GATE,
    Side,
    verify_pair,
    verify_pair_v6,
    verify_pair_v7,
)
from endcredits.registry.image_verify import FITTED_R2_MIN, RENDERED_CORRELATION_MIN
from endcredits.registry.records import WorkIn, get_work
from endcredits.store.blobs import put_blob
from endcredits.store.engine import Store

OPENCLIPART = Path("/usr/share/openclipart/svg")
STAR = "shapes/stars/star_86pt11step.svg"
OTHER_STAR = "shapes/stars/star_95pt12step.svg"
"""Two stars of one series by one creator: at 256 pixels they correlate more (0.989) than the first does
with its own 400-pixel export (0.985), so version 4 tells neither apart."""


def _drawing(rel: str) -> bytes:
    return (OPENCLIPART / rel).read_bytes()


def _export(svg: bytes, fmt: str = "PNG", factor: float = 1.0, **options: object) -> bytes:
    """A 400-pixel export on white, resized by ``factor`` (Lanczos, as an image editor would)."""
    from PIL import Image

    picture = fp.canonical_picture(fp.render_svg(svg, 400))
    if factor != 1.0:
        size = (round(picture.width * factor), round(picture.height * factor))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    picture.save(buf, format=fmt, **options)
    return buf.getvalue()


def _value(content: bytes, kind: str) -> str:
    got = fp.image_fingerprint(content, kind)
    assert got is not None and got.method == IMAGE_METHOD
    return got.value


def test_the_stars_are_one_creators_and_version_4_cannot_tell_them_apart() -> None:
    star, other = _drawing(STAR), _drawing(OTHER_STAR)
    assert read_svg_metadata(star, where=STAR).creators == read_svg_metadata(other, where=OTHER_STAR).creators
    a, b, copy = _value(star, "image/svg+xml"), _value(other, "image/svg+xml"), _value(_export(star), "image")
    assert fp.fine_picture(a).svg and not fp.fine_picture(copy).svg
    v4 = [fp.same_fine_picture(fp.fine_picture(a), fp.fine_picture(x)) for x in (copy, b)]
    assert v4 == [False, False]  # the export refused by version 4's stored thumbnails
    assert images_match(a, copy, contents=(star, _export(star)))[1]
    assert not images_match(a, b, contents=(star, other))[1]
    assert not images_match(a, copy)[1]  # no bytes: version 4's rule


@pytest.mark.parametrize("copy", ["png", "jpeg_q50"])
def test_a_re_rendered_export_correlates_as_a_copy_and_the_other_star_does_not(copy: str) -> None:
    star, other = _drawing(STAR), _drawing(OTHER_STAR)
    made = _export(star) if copy == "png" else _export(star, "JPEG", quality=50)
    registered = Side(fp.fine_picture(_value(star, "image/svg+xml")), star)
    same = verify_pair(registered, Side(fp.fine_picture(_value(made, "image")), made))
    assert same is not None and same.same and same.correlation >= 0.995, same
    wrong = _export(other)
    differ = verify_pair(registered, Side(fp.fine_picture(_value(wrong, "image")), wrong))
    assert differ is not None and not differ.same and differ.correlation < 0.99, differ
    # The raster registered first and the drawing new: the drawing is rendered at the raster's resolution.
    back = verify_pair(Side(fp.fine_picture(_value(made, "image")), made), registered)
    assert back is not None and back.same


@pytest.mark.parametrize("drawing_first", [True, False])
def test_a_stored_star_links_its_export_not_the_other_star(store: Store, drawing_first: bool) -> None:
    star, other, export = _drawing(STAR), _drawing(OTHER_STAR), _export(_drawing(STAR))
    items = [WorkIn(star, "Star 86/11", "image/svg+xml", STAR), WorkIn(export, "star.png", "image/png", "star.png")]
    items = items if drawing_first else items[::-1]
    items.append(WorkIn(other, "Star 95/12", "image/svg+xml", OTHER_STAR))
    for w in items:
        put_blob(store.data_dir, w.content)
    with store.write() as conn:
        first, second, third = register_works(conn, items, data_dir=store.data_dir)
    assert second.method == IMAGE_METHOD and second.canonical_work_id == first.work_id
    assert second.similarity is not None and second.similarity >= fp.RENDER_VERIFY_MIN
    assert third.canonical_work_id is None  # the other star: not linked ...
    assert first.work_id in [w for w, _ in third.candidates]  # ... but shown for a person to confirm
    with store.read() as conn:
        assert get_work(conn, third.work_id) is not None
        shown = fp.review_candidates(
            conn, fp.image_fingerprint(other, "image/svg+xml"), exclude=third.work_id, content=other,  # type: ignore[arg-type]
            data_dir=store.data_dir,
        )  # fmt: skip
    assert first.work_id in [w for w, _ in shown] and second.work_id in [w for w, _ in shown]


MONKEY = "animals/mammals/happy_monkey_benji_park_01.svg"


def _cropped(svg: bytes, fraction: float = 0.05) -> bytes:
    """The drawing's 400-pixel export with ``fraction`` of its drawn width and height cut off each side."""
    from PIL import Image

    picture = Image.open(io.BytesIO(_export(svg))).convert("RGB")
    x0, y0, x1, y1 = ImageChops.invert(picture.convert("L")).getbbox()  # type: ignore[misc]
    dx, dy = round((x1 - x0) * fraction), round((y1 - y0) * fraction)
    buf = io.BytesIO()
    picture.crop((x0 + dx, y0 + dy, x1 - dx, y1 - dy)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("drawing_first", [True, False])
def test_a_cropped_export_links_whichever_is_registered_first(store: Store, drawing_first: bool) -> None:
    """The crop shows part of the drawing, so the drawing is the reference in either order: registered
    after its crop, it used to be aligned the other way round and was refused."""
    drawing = _drawing(MONKEY)
    crop = _cropped(drawing)
    forward = verify_pair_v7(_side(drawing, "image/svg+xml"), _side(crop, "image"))
    backward = verify_pair_v7(_side(crop, "image"), _side(drawing, "image/svg+xml"))
    assert forward is not None and backward is not None and forward.same and backward.same
    assert backward.correlation == forward.correlation  # one comparison, whichever order
    items = [WorkIn(drawing, "Happy monkey", "image/svg+xml", MONKEY), WorkIn(crop, "monkey.png", "image/png", "m")]
    items = items if drawing_first else items[::-1]
    for w in items:
        put_blob(store.data_dir, w.content)
    with store.write() as conn:
        first, second = register_works(conn, items, data_dir=store.data_dir)
    assert second.method == IMAGE_METHOD and second.canonical_work_id == first.work_id


def test_without_the_stored_bytes_version_4_decides(store: Store) -> None:
    star, export = _drawing(STAR), _export(_drawing(STAR))
    with store.write() as conn:
        drawing, png = register_works(conn, [WorkIn(star, "Star", "image/svg+xml"), WorkIn(export, "s", "image/png")])
    assert png.canonical_work_id is None and drawing.work_id in [w for w, _ in png.candidates]


def test_a_broken_svg_is_refused_in_one_line_and_nothing_is_written(store: Store) -> None:
    broken = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="4" height="4"'
    star = _drawing(STAR)
    put_blob(store.data_dir, star)
    with pytest.raises(ValidationError) as info, store.write() as conn:
        register_works(
            conn, [WorkIn(star, "Star", "image/svg+xml"), WorkIn(broken, "broken", "image/svg+xml", "broken.svg")],
            data_dir=store.data_dir,
        )  # fmt: skip
    assert re.fullmatch(r"work 'broken\.svg': the SVG could not be rendered \(.+\)", str(info.value))
    with store.read() as conn:
        assert fp.review_candidates(conn, fp.image_fingerprint(star, "image/svg+xml")) == []  # type: ignore[arg-type]


def test_a_version_4_value_is_read_by_its_own_rule() -> None:
    value = _value(_drawing(STAR), "image/svg+xml")
    head, packed = value[: 2 * 64 * 64], zlib.decompress(bytes.fromhex(value[2 * 64 * 64 :]))
    assert packed[-1] == 1  # version 5 ends with the SVG flag; version 4 ended before it
    v4 = head + zlib.compress(packed[:-1], 9).hex()
    assert not fp.fine_picture(v4, V4_IMAGE_METHOD).svg
    assert images_match(v4, v4, V4_IMAGE_METHOD)[1]
    with pytest.raises(ValidationError, match=r"holds no 256x256 thumbnail$"):
        fp.fine_picture(v4)  # one byte short of a version 5 value


# Version 6 (``gray64-render-v6``): a colour map fitted with the worst window left out -------------------
def _star_points(points: int, step: int) -> str:
    angles = [2 * math.pi * i * step / points for i in range(points)]
    return " ".join(f"{100 + 70 * math.sin(t):.2f},{100 - 70 * math.cos(t):.2f}" for t in angles)


def _badge(points: int, step: int, ring: str = "#c8102e") -> bytes:
    """An openclipart-like badge: a ring, a paper disc, a star polygon with thin outlines, a blue label."""
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200" viewBox="0 0 200 200">
<circle cx="100" cy="100" r="92" fill="{ring}" stroke="#202020" stroke-width="3"/>
<circle cx="100" cy="100" r="76" fill="#f4f0e0"/>
<polygon points="{_star_points(points, step)}" fill="#ffcc00" fill-rule="evenodd" stroke="#202020"
 stroke-width="1.5"/>
<rect x="70" y="176" width="60" height="14" fill="#1f4e9c"/>
</svg>""".encode()


def _stamped(svg: bytes) -> bytes:
    """The drawing's 400-pixel export with a grey box (1/7 of its width and height) stamped on it."""
    picture = fp.canonical_picture(fp.render_svg(svg, 400))
    w, h = picture.size
    ImageDraw.Draw(picture).rectangle((w * 0.55, h * 0.3, w * 0.55 + w / 7, h * 0.3 + h / 7), fill=(128, 128, 128))
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def _side(content: bytes, kind: str) -> Side:
    return Side(fp.fine_picture(_value(content, kind)), content)


def test_version_6_links_a_stamped_export_that_version_5_refuses() -> None:
    badge = _badge(11, 4)
    stamped = _stamped(badge)
    v5 = verify_pair(_side(badge, "image/svg+xml"), _side(stamped, "image"))
    v6 = verify_pair_v6(_side(badge, "image/svg+xml"), _side(stamped, "image"))
    assert v5 is not None and not v5.same and v5.correlation < RENDERED_CORRELATION_MIN, v5
    assert v6 is not None and v6.same and v6.fitted_window >= FITTED_R2_MIN > v6.fitted, v6
    # Registered first, the stamped export is the one rendered for: the same answer.
    back = verify_pair_v6(_side(stamped, "image"), _side(badge, "image/svg+xml"))
    assert back is not None and back.same


@pytest.mark.parametrize(("points", "step", "ring"), [(11, 3, "#c8102e"), (12, 5, "#c8102e"), (11, 4, "#1f9c4e")])
def test_version_6_keeps_a_near_neighbour_apart(points: int, step: int, ring: str) -> None:
    """Another star in the same badge, or the same badge in another colour (green, not red), is another
    drawing: neither the fitted map nor the window may make it match, as drawing or as its export."""
    badge, other = _badge(11, 4), _badge(points, step, ring)
    export = _export(other)
    for new in (_side(other, "image/svg+xml"), _side(export, "image")):
        verdict = verify_pair_v6(_side(badge, "image/svg+xml"), new)
        assert verdict is not None and not verdict.same, verdict


def test_a_stored_badge_links_its_stamped_export_and_not_the_other_badge(store: Store) -> None:
    badge, stamped, other = _badge(11, 4), _stamped(_badge(11, 4)), _badge(11, 4, "#1f9c4e")
    items = [
        WorkIn(badge, "Badge", "image/svg+xml", "badge.svg"),
        WorkIn(stamped, "badge.png", "image/png", "badge.png"),
        WorkIn(other, "Green badge", "image/svg+xml", "green.svg"),
    ]
    for w in items:
        put_blob(store.data_dir, w.content)
    with store.write() as conn:
        first, second, third = register_works(conn, items, data_dir=store.data_dir)
    assert second.method == IMAGE_METHOD == "gray64-render-v7" and second.canonical_work_id == first.work_id
    assert third.canonical_work_id is None and first.work_id in [w for w, _ in third.candidates]


def test_a_version_5_row_is_compared_by_version_5s_rule() -> None:
    """A version 5 value holds the same bytes as a version 6 one; read as version 5 it is decided by the
    correlation alone, so the stamped export is not linked to it, and by version 6 it is."""
    badge, stamped = _badge(11, 4), _stamped(_badge(11, 4))
    a, b = _value(badge, "image/svg+xml"), _value(stamped, "image")
    assert fp.fine_picture(a, V5_IMAGE_METHOD).svg and fp.fine_picture(a).svg
    assert not images_match(a, b, V5_IMAGE_METHOD, contents=(badge, stamped))[1]
    assert images_match(a, b, contents=(badge, stamped))[1]


# Version 7 (``gray64-render-v7``): a second try with the drawing rendered finer and reduced ---------------
SMALL_STAR = "shapes/stars/star_79pt22step.svg"
THIRD_STAR = "shapes/stars/star_37pt10step.svg"
"""Two star polygons whose half-size exports (200 pixels) version 6 refuses: rendered straight at 200
pixels, their fine lines are smoothed by the renderer, in the export by the resampling."""


@pytest.mark.parametrize("rel", [SMALL_STAR, THIRD_STAR])
def test_version_7_links_a_half_size_export_that_version_6_refuses(rel: str) -> None:
    drawing = _drawing(rel)
    small = _export(drawing, factor=0.5)
    v6 = verify_pair_v6(_side(drawing, "image/svg+xml"), _side(small, "image"))
    v7 = verify_pair_v7(_side(drawing, "image/svg+xml"), _side(small, "image"))
    assert v6 is not None and not v6.same, v6
    assert v7 is not None and v7.same and v7.correlation >= SUPERSAMPLE_CORRELATION_MIN > v6.correlation, v7
    assert SUPERSAMPLE == 2
    # Under the second try's gate at 64 pixels, version 6's answer stands.
    below = verify_pair_v7(_side(drawing, "image/svg+xml"), _side(small, "image"), SUPERSAMPLE_GATE - 0.01)
    assert below == v6


def test_version_7_links_the_drawing_to_a_half_size_export_registered_first() -> None:
    """The export registered first and the drawing new: the drawing is rendered for the export."""
    drawing = _drawing(SMALL_STAR)
    small = _export(drawing, factor=0.5)
    back = verify_pair_v7(_side(small, "image"), _side(drawing, "image/svg+xml"))
    assert back is not None and back.same, back


def test_version_7_keeps_the_other_stars_half_size_export_apart() -> None:
    """Version 6 refuses the other star's half-size export, so version 7 tries again, and refuses too."""
    registered = _side(_drawing(STAR), "image/svg+xml")
    other = _export(_drawing(OTHER_STAR), factor=0.5)
    v6, v7 = verify_pair_v6(registered, _side(other, "image")), verify_pair_v7(registered, _side(other, "image"))
    assert v6 is not None and not v6.same and v7 is not None and not v7.same, (v6, v7)


def test_two_drawings_get_no_second_try() -> None:
    """The second try is for a drawing against a raster picture: two drawings are version 6's answer."""
    a, b = _side(_badge(11, 4), "image/svg+xml"), _side(_badge(12, 5), "image/svg+xml")
    assert verify_pair_v7(a, b) == verify_pair_v6(a, b)


def test_a_stored_drawing_links_its_half_size_export(store: Store) -> None:
    """The star's half-size export is a candidate that version 6 refuses and version 7 links."""
    drawing = _drawing(SMALL_STAR)
    half = _export(drawing, factor=0.5)
    values = _value(drawing, "image/svg+xml"), _value(half, "image")
    assert not images_match(*values, V6_IMAGE_METHOD, (drawing, half))[1]
    items = [
        WorkIn(drawing, "Star 79/22", "image/svg+xml", SMALL_STAR),
        WorkIn(half, "star-small.png", "image/png", "star-small.png"),
    ]
    for w in items:
        put_blob(store.data_dir, w.content)
    with store.write() as conn:
        first, second = register_works(conn, items, data_dir=store.data_dir)
    assert second.method == IMAGE_METHOD and second.canonical_work_id == first.work_id


def test_a_version_6_row_is_compared_by_version_6s_rule() -> None:
    """A version 6 value holds version 7's bytes; read as version 6 there is no second try."""
    drawing = _drawing(SMALL_STAR)
    small = _export(drawing, factor=0.5)
    a, b = _value(drawing, "image/svg+xml"), _value(small, "image")
    assert fp.fine_picture(a, V6_IMAGE_METHOD).svg
    assert not images_match(a, b, V6_IMAGE_METHOD, contents=(drawing, small))[1]
    assert images_match(a, b, contents=(drawing, small))[1]
