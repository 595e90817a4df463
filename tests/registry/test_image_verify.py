"""The second look at near-alike images (``registry.image_verify``, method ``gray64-verify256-v4``): a
drawing's raster exports (JPEG, cropped, recoloured, smaller) link to it; two flags that differ only in an
emblem, drawn here as SVG, do not, though their 64-pixel thumbnails nearly agree. Then real Open Clip Art
drawings (Debian's openclipart-svg, which ``make install`` installs): line drawings and their exports
link, two stars of one series and one arrow in two colours do not. Storage on both backends; rows
of the previous methods stay valid and are compared by their own rule."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from endcredits.errors import ValidationError
from endcredits.registry import fingerprints as fp
from endcredits.registry.fingerprints import (
    IMAGE_METHOD,
    PREVIOUS_IMAGE_METHOD,
    VERIFY128_IMAGE_METHOD,
    images_match,
    register_works,
)
from endcredits.registry.image_verify import FINE_PIXELS, V4_PIXELS, hue_difference, refine, verify, warp
from endcredits.registry.records import WorkIn, add_fingerprint, add_works
from endcredits.store.engine import Store


def _flag(emblem: str = "") -> bytes:
    """A 3:2 flag of three stripes with a pale border and a diagonal band, and optionally an emblem."""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="200" viewBox="0 0 300 200">'
        '<rect width="300" height="200" fill="#1d4f91"/><rect y="67" width="300" height="66" fill="#f4f4f4"/>'
        '<rect y="133" width="300" height="67" fill="#c8102e"/><path d="M0 0L120 100L0 200z" fill="#0a7d3b"/>'
        f"{emblem}</svg>"
    ).encode()


PLAIN = _flag()
STARRED = _flag('<path d="M40 85l5 15h16l-13 9 5 16-13-10-13 10 5-16-13-9h16z" fill="#ffd100"/>')


def _export(svg: bytes, side_px: int = 400) -> Image.Image:
    return fp.canonical_picture(fp.render_svg(svg, side_px))


def _bytes(img: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def _crop(img: Image.Image, share: float) -> Image.Image:
    dx, dy = round(img.width * share), round(img.height * share)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


def _value(content: bytes, kind: str = "image") -> str:
    got = fp.image_fingerprint(content, kind)
    assert got is not None and got.method == IMAGE_METHOD
    return got.value


COPIES = {
    "jpeg_q20": lambda img: _bytes(img, "JPEG", quality=20),
    "crop_5pct": lambda img: _bytes(_crop(img, 0.05)),
    "quarter_size": lambda img: _bytes(img.resize((img.width // 4, img.height // 4), Image.Resampling.LANCZOS)),
    "darker_15pct": lambda img: _bytes(ImageEnhance.Brightness(img).enhance(0.85)),
    "grayscale": lambda img: _bytes(img.convert("L")),
}


@pytest.mark.parametrize("copy", sorted(COPIES))
def test_a_raster_copy_of_a_drawing_is_the_same_picture(copy: str) -> None:
    similarity, same = images_match(_value(STARRED, "image/svg+xml"), _value(COPIES[copy](_export(STARRED))))
    assert same, (copy, similarity)


def test_flags_that_differ_in_an_emblem_are_not_the_same_picture() -> None:
    plain, starred = _value(PLAIN, "image/svg+xml"), _value(STARRED, "image/svg+xml")
    similarity, same = images_match(plain, starred)
    # Close enough at 64 pixels to be verified: the verification is what tells them apart.
    assert similarity >= fp.IMAGE_VERIFY_MIN and not same
    assert images_match(starred, plain) == (similarity, False)


def test_verification_aligns_a_crop_and_tells_colours_apart() -> None:
    rng = np.random.default_rng(7)
    big = np.kron(rng.integers(0, 256, (16, 16)), np.ones((16, 16))).astype(np.uint8)  # 256 px of blocks
    whole = np.asarray(Image.fromarray(big).resize((FINE_PIXELS, FINE_PIXELS), Image.Resampling.BOX))
    cut = np.asarray(Image.fromarray(big[32:224, 32:224]).resize((FINE_PIXELS, FINE_PIXELS), Image.Resampling.BOX))
    red = np.zeros((16, 16, 3), dtype=np.uint8)
    red[..., 0] = 220
    blue = red[..., ::-1].copy()
    same = verify(whole, cut, red, red)
    assert same.same and same.correlation >= 0.995
    assert same.span_y[0] == 0 and abs(same.span_y[1] - 32 / 256) <= 1 / 64  # the whole one is cut to fit
    assert hue_difference(red, blue) > 100 and not verify(whole, cut, red, blue).same
    assert hue_difference(red, np.full((16, 16, 3), 128, dtype=np.uint8)) == 0.0  # grayscale: no hue
    other = np.kron(rng.integers(0, 256, (32, 32)), np.ones((4, 4))).astype(np.uint8)
    assert not verify(whole, other, red, red).same


def test_a_value_without_its_fine_thumbnail_is_refused_in_one_line() -> None:
    value = _value(PLAIN, "image/svg+xml")
    with pytest.raises(ValidationError, match=r"holds no 256x256 thumbnail$"):
        images_match(value[: 2 * 64 * 64], value)
    with pytest.raises(ValidationError, match=r"holds no 128x128 thumbnail$"):
        images_match(value, value, VERIFY128_IMAGE_METHOD)  # a version 4 value is not a version 3 one
    for method in (IMAGE_METHOD, VERIFY128_IMAGE_METHOD):
        with pytest.raises(ValidationError, match=r"decided by images_match"):
            fp.is_match(method, 1.0)


def test_the_alignment_finds_a_shift_and_scale_of_a_fraction_of_a_pixel() -> None:
    rng = np.random.default_rng(3)
    big = np.kron(rng.integers(0, 256, (24, 24)), np.ones((24, 24))).astype(np.float64)  # 576 px of blocks
    img = np.asarray(Image.fromarray(big).resize((V4_PIXELS, V4_PIXELS), Image.Resampling.BOX), dtype=np.float64)
    truth = (0.011, 0.987, -0.006, 1.004)  # under 3 pixels of 256 at either end
    moved = warp(img, truth)
    got = refine(img, moved, (0.0, 1.0, 0.0, 1.0), steps=20)
    assert max(abs(g - t) for g, t in zip(got, truth)) < 0.25 / V4_PIXELS


def test_copies_link_and_the_other_flag_is_only_shown(store: Store) -> None:
    export = _export(STARRED)
    with store.write() as conn:
        starred, jpeg, cropped, plain = register_works(
            conn,
            [
                WorkIn(STARRED, "Starred flag", "image/svg+xml"),
                WorkIn(_bytes(export, "JPEG", quality=50), "starred.jpg", "image/jpeg"),
                WorkIn(_bytes(_crop(export, 0.02)), "starred-cropped.png", "image/png"),
                WorkIn(PLAIN, "Plain flag", "image/svg+xml"),
            ],
        )
    assert starred.method == IMAGE_METHOD and starred.canonical_work_id is None
    assert jpeg.canonical_work_id == starred.work_id and cropped.canonical_work_id == starred.work_id
    assert jpeg.similarity is not None and jpeg.similarity >= fp.IMAGE_VERIFY_MIN
    assert plain.canonical_work_id is None
    assert starred.work_id in [w for w, _ in plain.candidates]
    with store.read() as conn:
        shown = fp.review_candidates(conn, fp.image_fingerprint(PLAIN, "image/svg+xml"), exclude=plain.work_id)  # type: ignore[arg-type]
    assert starred.work_id in [w for w, _ in shown]


def _v3_value(svg: bytes) -> str:
    """A ``gray64-verify128-v3`` value as that version stored it (64-pixel thumbnail, then zlib'd 128-pixel
    grayscale and 16-pixel colour thumbnails)."""
    picture = fp.canonical_picture(fp.render_svg(svg))
    colour = np.asarray(picture.resize((16, 16), Image.Resampling.BOX), dtype=np.uint8)
    fine = fp.picture_thumbnail(picture, FINE_PIXELS).tobytes() + colour.tobytes()
    return fp.picture_thumbnail(picture).tobytes().hex() + zlib.compress(fine, 9).hex()


def test_rows_of_version_3_are_compared_by_version_3(store: Store) -> None:
    starred, plain = _v3_value(STARRED), _v3_value(PLAIN)
    assert images_match(starred, starred, VERIFY128_IMAGE_METHOD)[1]
    assert not images_match(plain, starred, VERIFY128_IMAGE_METHOD)[1]
    keys = fp.image_band_keys(fp.picture_thumbnail(fp.canonical_picture(fp.render_svg(STARRED))))
    with store.write() as conn:
        (first,) = add_works(conn, [WorkIn(_bytes(_export(STARRED)), "registered under version 3", "image/png")])
        add_fingerprint(conn, first, VERIFY128_IMAGE_METHOD, starred, keys)
        (again,) = register_works(conn, [WorkIn(STARRED, "Starred flag", "image/svg+xml")])
    # The new work is fingerprinted as version 4 and compared only with version 4 rows: none yet.
    assert again.method == IMAGE_METHOD and again.canonical_work_id is None and again.candidates == ()
    with store.read() as conn:
        v3 = fp.Fingerprint(VERIFY128_IMAGE_METHOD, starred, keys)
        assert [w for w, _ in fp.review_candidates(conn, v3)] == []  # the same picture: linked, not shown
        assert fp._image_links(v3, {first: 1.0}, {first: starred}) == [(1.0, first)]


def test_rows_of_the_previous_method_stay_valid(store: Store) -> None:
    """A ``gray64-crop-v2`` row is compared only with its own method, by its own threshold."""
    thumb = fp.picture_thumbnail(_export(PLAIN))
    old = thumb.tobytes().hex()
    assert fp.is_match(PREVIOUS_IMAGE_METHOD, fp.similarity(PREVIOUS_IMAGE_METHOD, old, old))
    new = fp.image_fingerprint(PLAIN, "image/svg+xml")
    assert new is not None
    with store.write() as conn:
        (first,) = add_works(conn, [WorkIn(_bytes(_export(PLAIN)), "registered under version 2", "image/png")])
        add_fingerprint(conn, first, PREVIOUS_IMAGE_METHOD, old, new.band_keys)
        (again,) = register_works(conn, [WorkIn(PLAIN, "Plain flag", "image/svg+xml")])
    assert again.method == IMAGE_METHOD and again.canonical_work_id is None and again.candidates == ()


# Real drawings ------------------------------------------------------------------------------------
OPENCLIPART = Path("/usr/share/openclipart/svg")


def _drawing(rel: str) -> bytes:
    return (OPENCLIPART / rel).read_bytes()


STAR = "shapes/stars/star_86pt11step.svg"
OTHER_STAR = "shapes/stars/star_95pt12step.svg"
"""Two star polygons of one series: at 128 pixels, aligned, they correlated at 0.996, as close as exports."""
THIN = "signs_and_symbols/map_symbols/plant_-_rpg_map_element_01.svg"
"""A line drawing whose 400-pixel PNG export version 3 did not link (0.988 at 128 pixels, aligned)."""
FISH = "animals/fish/giraffe_cichlid_01.svg"


@pytest.mark.parametrize("rel", [THIN, FISH])
@pytest.mark.parametrize("copy", ["png", "jpeg_q50", "quarter_size", "crop_2pct"])
def test_exports_of_real_line_drawings_are_the_same_picture(rel: str, copy: str) -> None:
    export = _export(_drawing(rel))
    made = {
        "png": lambda: _bytes(export),
        "jpeg_q50": lambda: _bytes(export, "JPEG", quality=50),
        "quarter_size": lambda: _bytes(
            export.resize((export.width // 4, export.height // 4), Image.Resampling.LANCZOS)
        ),
        "crop_2pct": lambda: _bytes(_crop(export, 0.02)),
    }[copy]()
    similarity, same = images_match(_value(_drawing(rel), "image/svg+xml"), _value(made))
    assert same, (rel, copy, similarity)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (STAR, OTHER_STAR),
        ("shapes/stars/star_62pt03step.svg", "shapes/stars/star_85pt04step.svg"),
        ("shapes/arrows/arrow-right-red_benji_pa_01.svg", "shapes/arrows/arrow-right-blue_benji_p_01.svg"),
        ("signs_and_symbols/flags/europe/austria.svg", "signs_and_symbols/flags/europe/netherlands.svg"),
    ],
)
def test_real_near_neighbours_are_not_the_same_picture(first: str, second: str) -> None:
    a, b = _value(_drawing(first), "image/svg+xml"), _value(_drawing(second), "image/svg+xml")
    similarity, same = images_match(a, b)
    assert similarity >= fp.IMAGE_VERIFY_MIN and not same  # verified, and refused by the verification
    assert not images_match(b, a)[1]


def test_exports_link_and_the_other_star_is_only_shown(store: Store) -> None:
    export = _export(_drawing(THIN))
    quarter = export.resize((export.width // 4, export.height // 4), Image.Resampling.LANCZOS)
    with store.write() as conn:
        plant, png, small, star, other = register_works(
            conn,
            [
                WorkIn(_drawing(THIN), "Plant", "image/svg+xml"),
                WorkIn(_bytes(export), "plant.png", "image/png"),
                WorkIn(_bytes(quarter, "JPEG", quality=85), "plant-small.jpg", "image/jpeg"),
                WorkIn(_drawing(STAR), "Star 86/11", "image/svg+xml"),
                WorkIn(_drawing(OTHER_STAR), "Star 95/12", "image/svg+xml"),
            ],
        )
    assert png.canonical_work_id == plant.work_id and small.canonical_work_id == plant.work_id
    assert star.canonical_work_id is None and other.canonical_work_id is None and other.method == IMAGE_METHOD
    assert star.work_id in [w for w, _ in other.candidates]
