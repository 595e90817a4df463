"""SVG drawings are images: rendered, fingerprinted on their picture, their RDF metadata read into credits;
a raster copy links to the drawing, a different drawing does not, a broken one is refused whole. Both
backends. The drawings are written here; nothing needs Debian's openclipart-svg."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import ImageDraw
from sqlalchemy import select

from endcredits.errors import ValidationError
from endcredits.interop.svg import import_svg_drawings, read_svg_metadata
from endcredits.registry import fingerprints as fp
from endcredits.registry.fingerprints import IMAGE_METHOD, LEGACY_IMAGE_METHOD, register_works
from endcredits.registry.records import WorkIn, add_fingerprint, add_works, get_work, graph_rows, name_ids
from endcredits.store.engine import Store
from endcredits.store.schema import work_fingerprints
from helpers_money import row_counts

RDF = """<metadata><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:cc="http://web.resource.org/cc/">
 <cc:Work rdf:about=""><dc:title>{title}</dc:title>
  <dc:creator><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:creator>
  <dc:rights><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:rights>
  <cc:license rdf:resource="http://web.resource.org/cc/PublicDomain"/>
 </cc:Work></rdf:RDF></metadata>"""


def _svg(body: str, title: str = "Rook", creator: str = "Ada Draughts") -> bytes:
    return (
        '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="120" height="160" '
        f'viewBox="0 0 120 160">{RDF.format(title=title, creator=creator)}{body}</svg>'
    ).encode()


# Two chess pieces of one set, by one creator: the same base and size, different heads (a hard pair).
BASE = (
    '<rect x="20" y="130" width="80" height="20" fill="#222"/><rect x="35" y="60" width="50" height="70" fill="#222"/>'
)
ROOK = _svg(BASE + '<path d="M25 20h15v15h12V20h16v15h12V20h15v40H25z" fill="#222"/>', "Rook")
BISHOP = _svg(BASE + '<ellipse cx="60" cy="35" rx="22" ry="30" fill="#222"/><circle cx="60" cy="6" r="5"/>', "Bishop")


def _export(svg: bytes, side_px: int, fmt: str, **options: object) -> bytes:
    """What a person would make of the drawing: a raster export on white at another size."""
    buf = io.BytesIO()
    fp.canonical_picture(fp.render_svg(svg, side_px)).save(buf, format=fmt, **options)
    return buf.getvalue()


def test_metadata_is_read_from_the_rdf_record() -> None:
    meta = read_svg_metadata(ROOK, where="rook.svg")
    assert meta.title == "Rook"
    assert meta.creators == ("Ada Draughts",)
    assert meta.rights_holder == "Ada Draughts"
    assert meta.license_url == "http://web.resource.org/cc/PublicDomain"
    assert read_svg_metadata(b'<svg xmlns="http://www.w3.org/2000/svg"/>').creators == ()


def test_entities_are_refused_in_one_line() -> None:
    laughs = b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "ha"><!ENTITY b "&a;&a;">]><svg>&b;</svg>'
    with pytest.raises(ValidationError, match=r"^x.svg: the SVG declares the XML entity 'a'") as info:
        read_svg_metadata(laughs, where="x.svg")
    assert "\n" not in str(info.value)
    with pytest.raises(ValidationError, match="could not be rendered"):
        fp.image_fingerprint(laughs, "image/svg+xml")


def test_an_svg_imports_as_an_image_with_its_credits(store: Store, tmp_path: Path) -> None:
    (tmp_path / "rook.svg").write_bytes(ROOK)
    report = import_svg_drawings(store, [tmp_path / "rook.svg"], root=tmp_path)
    assert (report.works, report.linked, report.credits, report.names, report.refused) == (1, 0, 1, 1, ())
    work_id = hashlib.sha256(ROOK).hexdigest()
    with store.write() as conn:
        work = get_work(conn, work_id)
        graph = graph_rows(conn, [work_id])
        ada = f"name:{name_ids(conn, ['Ada Draughts'])['Ada Draughts']}"
        fingerprint = conn.execute(select(work_fingerprints.c.method).where(work_fingerprints.c.work_id == work_id))
        method = fingerprint.scalar_one()
    assert (work.title, work.kind, work.source, method) == ("Rook", "image/svg+xml", "rook.svg", IMAGE_METHOD)
    assert graph.credits == [(work_id, ada, "cawg:creator", 1)]
    assert graph.rights_holders == [(work_id, ada)]


def test_a_raster_copy_links_and_a_different_drawing_does_not(store: Store) -> None:
    """A JPEG export links; a small PNG export is a candidate for a person; the bishop is neither."""
    with store.write() as conn:
        rook, bishop, jpeg, small = register_works(
            conn,
            [
                WorkIn(ROOK, "Rook", "image/svg+xml"),
                WorkIn(BISHOP, "Bishop", "image"),  # sniffed as SVG from its bytes
                WorkIn(_export(ROOK, 300, "JPEG", quality=60), "rook.jpg", "image/jpeg"),
                WorkIn(_export(ROOK, 90, "PNG"), "rook-small.png", "image/png"),
            ],
        )
    assert (rook.method, bishop.method) == (IMAGE_METHOD, IMAGE_METHOD)
    assert bishop.canonical_work_id is None and rook.work_id not in [w for w, _ in bishop.candidates]
    assert jpeg.canonical_work_id == rook.work_id and jpeg.similarity is not None
    assert jpeg.similarity >= fp.IMAGE_THRESHOLD
    # A 90-pixel thumbnail keeps too little to tell the rook from a near neighbour: shown, not linked.
    assert small.canonical_work_id is None and rook.work_id in [w for w, _ in small.candidates]


def test_a_heavily_edited_copy_is_a_candidate_for_a_person_not_a_link(store: Store) -> None:
    picture = fp.canonical_picture(fp.render_svg(ROOK, 200))
    w, h = picture.size  # a grey box over the middle quarter of the piece: similarity 0.83 (measured)
    ImageDraw.Draw(picture).rectangle((w // 4, h // 4, w * 3 // 4, h * 3 // 4), fill=(160, 160, 160))
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    with store.write() as conn:
        rook, edited = register_works(
            conn, [WorkIn(ROOK, "Rook", "image/svg+xml"), WorkIn(buf.getvalue(), "boxed", "image")]
        )
    assert edited.canonical_work_id is None
    assert [w for w, _ in edited.candidates] == [rook.work_id]
    assert fp.IMAGE_REVIEW_MIN <= edited.candidates[0][1] < fp.IMAGE_THRESHOLD


def test_a_broken_svg_is_refused_in_one_line_and_nothing_is_written(store: Store, tmp_path: Path) -> None:
    broken = ROOK[: len(ROOK) // 2]
    before = row_counts(store)
    with pytest.raises(ValidationError, match=r"^work 'broken.svg': the SVG could not be rendered") as info:
        with store.write() as conn:
            register_works(conn, [WorkIn(ROOK, "Rook", "image/svg+xml"), WorkIn(broken, "b", "image", "broken.svg")])
    assert "\n" not in str(info.value)
    assert row_counts(store) == before
    (tmp_path / "broken.svg").write_bytes(broken)
    report = import_svg_drawings(store, [tmp_path / "broken.svg"], root=tmp_path)
    assert report.works == 0 and len(report.refused) == 1 and report.refused[0].startswith("broken.svg: ")


def test_fingerprints_of_the_legacy_method_stay_valid(store: Store) -> None:
    """Rows written as phash-64 before version 2 are compared only with each other, by the old rule."""
    old = fp.legacy_image_fingerprint(_export(ROOK, 200, "PNG"))
    assert old.method == LEGACY_IMAGE_METHOD
    assert fp.is_match(LEGACY_IMAGE_METHOD, fp.similarity(LEGACY_IMAGE_METHOD, old.value, old.value))
    with store.write() as conn:
        (first,) = add_works(conn, [WorkIn(_export(ROOK, 240, "PNG"), "registered before version 2", "image/png")])
        add_fingerprint(conn, first, old.method, old.value, old.band_keys)
        (new,) = register_works(conn, [WorkIn(_export(ROOK, 200, "PNG"), "rook.png", "image/png")])
    assert new.method == IMAGE_METHOD and new.canonical_work_id is None


def _methods(store: Store) -> set[str]:
    """The fingerprint methods of the store's rows and band keys."""
    from endcredits.store.schema import fingerprint_bands

    with store.read() as conn:
        rows = conn.execute(select(work_fingerprints.c.method)).scalars().all()
        bands = conn.execute(select(fingerprint_bands.c.method).distinct()).scalars().all()
    return {*rows, *bands}


def _migrate(store: Store, target: str, down: bool) -> None:
    from alembic import command

    from endcredits.store.engine import _alembic_config

    with store.engine.begin() as conn:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, target)


@pytest.mark.parametrize(("down_to", "older"), [("0012", fp.V5_IMAGE_METHOD), ("0014", fp.V6_IMAGE_METHOD)])
def test_a_store_upgraded_from_an_older_version_still_finds_its_drawings(
    store: Store, down_to: str, older: str
) -> None:
    """Migrations 0013 and 0015 rename version 5's and version 6's rows (the same bytes and band keys as
    version 7's) so drawings registered before an upgrade are candidates for works registered after it;
    their downgrades rename back."""
    with store.write() as conn:
        (rook,) = register_works(conn, [WorkIn(ROOK, "Rook", "image/svg+xml")])
    _migrate(store, down_to, down=True)
    assert _methods(store) == {older}
    _migrate(store, "head", down=False)
    assert _methods(store) == {IMAGE_METHOD}
    with store.write() as conn:
        (jpeg,) = register_works(conn, [WorkIn(_export(ROOK, 300, "JPEG", quality=60), "rook.jpg", "image/jpeg")])
    assert jpeg.canonical_work_id == rook.work_id
