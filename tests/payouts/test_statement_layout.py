"""A statement a person can read, on both backends: totals by model, work and role that add up exactly to
the total, every output on exactly one page, the model's sentence re-derived from integers, and what each
output generated (content the operator supplied, kept private and once)."""

from __future__ import annotations

import io
import json
import stat

import pytest
from PIL import Image

from endcredits.errors import ConflictError, NotFoundError
from endcredits.ledger.accrue import accrue
from endcredits.limits import PREVIEW_IMAGE_PIXELS_MAX, SUBUNITS_PER_MICROUNIT
from endcredits.money import format_amount
from endcredits.payouts.previews import THUMBNAIL_PX, make_thumbnail, output_previews, output_thumbnail
from endcredits.payouts.statement_layout import outputs_page, outputs_paid, percent, summarize
from endcredits.payouts.statements import build_statement
from endcredits.royalties.output_contents import (
    OUTPUTS_FOLDER,
    media_type_of,
    output_contents_of,
    record_output_contents,
)
from endcredits.store.blobs import content_path
from endcredits.store.engine import Store
from helpers_money import EXTERNAL, World, agreement, on_time

AG = agreement(pool_rate="0.3")
OUTPUTS_N = 11


def png(side: int, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def world(store: Store) -> World:
    w = World(store)
    outs = [
        (f"o{i:02d}", 1_000_003 * (i + 1), on_time(3, 1 + i), {w.song: 1.0 + i % 3, w.film: 0.5 + i % 2, w.orphan: 0.1})
        for i in range(OUTPUTS_N)
    ]
    accrue(store, w.usage(outs, AG), AG, event_id="march", source=EXTERNAL)
    return w


def test_totals_by_model_work_and_role_add_up_exactly_to_the_total(world: World) -> None:
    st = build_statement(world.store, world.alice, "2026-03", "EUR")
    s = summarize(st)
    assert st.reconciles() and s.total_microunits == st.accrued_microunits > 0
    for groups in (s.by_model, s.by_work, s.by_role):
        assert sum(g.amount_microunits for g in groups) == st.accrued_microunits
        assert sum(g.amount_subunits for g in groups) == st.lines_subunits_total
        assert sum(g.lines for g in groups) == st.line_count
        for g in groups:  # each shown amount within one microunit of its exact share of the total
            exact_num = st.accrued_microunits * g.amount_subunits
            assert abs(g.amount_microunits * st.lines_subunits_total - exact_num) < st.lines_subunits_total
    assert [g.key for g in s.by_work] == [world.song]  # alice is credited on the song only
    assert {g.key for g in s.by_role} == {line["role"] for line in st.lines}
    again = json.loads(st.to_json())
    assert again["summary"]["total_microunits"] == st.accrued_microunits
    assert len(again["lines"]) == st.line_count  # the JSON still has every line


def test_every_output_is_on_exactly_one_page(world: World) -> None:
    st = build_statement(world.store, world.alice, "2026-03", "EUR")
    every = [o.output_id for o in outputs_paid(st)]
    assert sorted(every) == sorted({line["output_id"] for line in st.lines}) and len(every) == OUTPUTS_N
    seen = []
    first = outputs_page(st, 1, 4)
    assert first.pages == 3 and first.outputs_total == OUTPUTS_N
    for n in range(1, first.pages + 1):
        page = outputs_page(st, n, 4)
        seen += [o.output_id for o in page.outputs]
        for o in page.outputs:
            assert o.works and sum(w.amount_subunits for w in o.works) == o.amount_subunits
            assert 0 < o.amount_subunits <= o.pool_subunits
    assert seen == every  # in time order, each once
    with pytest.raises(NotFoundError, match="has 3 pages of 4 outputs"):
        outputs_page(st, 4, 4)
    mine = sum(o.amount_subunits for o in outputs_paid(st))
    assert mine == st.lines_subunits_total


def test_the_model_sentence_is_exact(world: World) -> None:
    st = build_statement(world.store, world.alice, "2026-03", "EUR")
    (m,) = summarize(st).models
    everyone = [st.outputs[o]["pool_subunits"] for o in st.outputs]
    pool = sum(int(p) for p in everyone)
    revenue = sum(1_000_003 * (i + 1) for i in range(OUTPUTS_N))
    assert pool > 0
    assert m.pool_subunits == pool and m.revenue_microunits == revenue and m.outputs == OUTPUTS_N
    # the share from integers alone: basis points rounded half up
    bp = (2 * st.lines_subunits_total * 10_000 + pool) // (2 * pool)
    share = f"{bp // 100}.{bp % 100:02d}%"
    assert m.sentence == (
        f"Of the {format_amount(pool // SUBUNITS_PER_MICROUNIT, 'EUR')} EUR model m paid in 2026-03 to the people "
        f"behind its training data (from {format_amount(revenue, 'EUR')} EUR its {OUTPUTS_N} outputs earned), "
        f"{format_amount(st.accrued_microunits, 'EUR')} EUR ({share}) was paid to you for the one of your works it "
        f"drew on, through {OUTPUTS_N} of its outputs."
    )
    assert m.methods == ("external scores: test weights",) and m.validity is None


def test_percentages_come_from_integers() -> None:
    assert percent(1, 3) == "33.33%" and percent(2, 3) == "66.67%" and percent(1, 8) == "12.50%"
    assert percent(1, 1) == "100.00%" and percent(0, 7) == "0.00%"
    assert percent(1, 10**9) == "less than 0.01%"
    assert percent(1, 3, places=0) == "33%"


def test_output_contents_are_kept_once_private_and_shown(world: World) -> None:
    store = world.store
    tune = "X:1\nT:A generated reel\nK:D\n" + "|:d2fd adfa|" * 40
    assert record_output_contents(store, [("o00", png(400)), ("o01", tune.encode())]) == ["recorded", "recorded"]
    assert record_output_contents(store, [("o00", png(400))]) == ["exists"]
    with pytest.raises(ConflictError, match="already has other content"):
        record_output_contents(store, [("o00", png(400, (0, 0, 0)))])
    with store.read() as conn:
        found = output_contents_of(conn, ["o00", "o01", "o02"])
    assert found["o00"].media_type == "image/png" and found["o01"].media_type.startswith("text/plain")
    assert "o02" not in found
    path = content_path(store.data_dir, OUTPUTS_FOLDER, found["o00"].content_sha256)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    previews = output_previews(store, ["o00", "o01", "o02"])
    assert previews["o00"].kind == "image"
    assert previews["o01"].kind == "text" and previews["o01"].excerpt.startswith("X:1\nT:A generated reel")
    assert previews["o01"].excerpt.endswith("…") and len(previews["o01"].excerpt) <= 242
    assert previews["o02"].kind == "none" and "did not supply" in previews["o02"].note
    thumb = output_thumbnail(store, "o00")
    assert thumb is not None and Image.open(io.BytesIO(thumb)).size == (THUMBNAIL_PX, THUMBNAIL_PX)
    cached = content_path(store.data_dir, "thumbnails", f"{found['o00'].content_sha256}-{THUMBNAIL_PX}.png")
    assert cached.read_bytes() == thumb and stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert output_thumbnail(store, "o01") is None and output_thumbnail(store, "o02") is None


def test_a_thumbnail_refuses_what_it_cannot_or_should_not_decode() -> None:
    assert make_thumbnail(b"not an image") is None
    assert make_thumbnail(png(10)) is not None
    side = int(PREVIEW_IMAGE_PIXELS_MAX**0.5) + 1
    header_only = io.BytesIO()
    Image.new("1", (side, side)).save(header_only, format="PNG")  # 1 bit per pixel: small file, huge image
    assert make_thumbnail(header_only.getvalue()) is None


def test_an_svg_drawing_is_previewed_as_an_image_rendered_never_decoded_as_text() -> None:
    drawing = (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
        b'<rect x="2" y="2" width="36" height="16" fill="#2a6"/></svg>'
    )
    assert media_type_of(drawing) == "image/svg+xml"
    thumb = make_thumbnail(drawing)
    assert thumb is not None
    with Image.open(io.BytesIO(thumb)) as im:
        centre = im.convert("RGB").getpixel((THUMBNAIL_PX // 2, THUMBNAIL_PX // 2))
    assert im.size == (THUMBNAIL_PX, THUMBNAIL_PX) and centre == (34, 170, 102)  # the rectangle's #2a6
    assert make_thumbnail(b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="oops"') is None
