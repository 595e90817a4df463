"""The image main job end to end on both backends: `endcredits demo --corpus openclipart --json` over drawings
written here (simple shapes with Open Clip Art's RDF record), so it needs no Debian package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.ledger.verify import verify
from endcredits.payouts.previews import output_previews
from endcredits.payouts.statements import build_statement
from endcredits.store.engine import open_store
from helpers_demo import check_eu_summary, check_guild, check_licence_and_fees

CREATORS = ("Ada Ink", "Ben Brush", "Cleo Curve", "Dan Dot", "Eve Edge", "Fay Fill", "Gus Grid", "Hal Hue", "Ivy")
DRAWINGS = 40


def drawing(i: int, creator: str) -> bytes:
    """A shape that differs from drawing to drawing (kind, place, size), signed by ``creator``."""
    x, y, r = 8 + (i * 7) % 48, 8 + (i * 13) % 48, 6 + i % 10
    shape = (
        f'<circle cx="{x}" cy="{y}" r="{r}" fill="black"/>'
        if i % 3 == 0
        else f'<rect x="{x - r}" y="{y - r}" width="{2 * r}" height="{r + i % 7}" fill="#{(i * 37) % 200:02x}2040"/>'
        if i % 3 == 1
        else f'<path d="M {x} {y} L {64 - x} {y + r} L {x} {64 - y} Z" stroke="black" stroke-width="3" fill="none"/>'
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:cc="http://web.resource.org/cc/" '
        'width="64" height="64" viewBox="0 0 64 64">'
        "<metadata><rdf:RDF><cc:Work>"
        f"<dc:title>shape {i}</dc:title>"
        f"<dc:creator><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:creator>"
        f"<dc:rights><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:rights>"
        '<cc:license rdf:resource="http://web.resource.org/cc/PublicDomain"/>'
        f"</cc:Work></rdf:RDF></metadata>{shape}</svg>"
    ).encode()


def write_corpus(folder: Path) -> Path:
    """``DRAWINGS`` drawings in two category folders, credited unevenly (the first creators draw the most),
    and one drawing under ``logos/``, which the demo leaves out."""
    for i in range(DRAWINGS):
        creator = CREATORS[min(i % 12, len(CREATORS) - 1)]
        sub = folder / ("shapes" if i % 2 else "signs")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"shape-{i:02d}.svg").write_bytes(drawing(i, creator))
    (folder / "logos").mkdir()
    (folder / "logos" / "brand.svg").write_bytes(drawing(99, "A Brand"))
    return folder


def run_image_demo(corpus: Path, data: Path, db_url: str | None = None) -> dict[str, Any]:
    args = ["--data", str(data), *(["--db", db_url] if db_url else []), "demo", "--json", "--corpus", "openclipart"]
    args += ["--corpus-dir", str(corpus)]
    result = CliRunner().invoke(app, [*args, "--works", str(DRAWINGS + 10), "--outputs", "12", "--train-steps", "20"])
    assert result.exit_code == 0, result.stderr or result.stdout
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


@pytest.mark.slow
def test_image_demo_conserves_every_microunit_and_shows_images(tmp_path: Path, db_url: str | None) -> None:
    corpus = write_corpus(tmp_path / "clipart")
    data = tmp_path / "demo"
    summary = run_image_demo(corpus, data, db_url)
    assert summary["corpus"] == "openclipart"
    assert summary["works"] == DRAWINGS  # every drawing but the logo
    assert summary["excluded_works"] >= 1  # the opt-out
    assert summary["outputs"] == 12 and summary["pool_microunits"] > 0
    assert summary["pool_microunits"] == (
        summary["paid_microunits"] + summary["escrow_microunits"] + summary["suspense_microunits"]
    )
    assert summary["conserved"] is True and summary["verified"] is True
    assert summary["attribution"]["method"] == "trak" and summary["attribution"]["works"] == (
        DRAWINGS - summary["excluded_works"]
    )
    assert summary["statement"]["reconciles"] is True
    # The ABC demo's terms through the same functions: the illustrators' guild, one drawing under the RSL
    # licence and a Content-Usage header (its training fee posted with the run), the EU training summary.
    check_guild(summary, "illustrators")
    check_licence_and_fees(summary)
    check_eu_summary(summary, data, "image")
    store = open_store(data, db_url)
    try:
        assert verify(store).ok
        # The statement of a credited creator shows the images that paid them.
        statement = summary["statement"]
        st = build_statement(store, statement["person_id"], statement["period"], "EUR")
        output_ids = sorted({line["output_id"] for line in st.lines})
        assert output_ids
        previews = output_previews(store, output_ids)
        assert {p.kind for p in previews.values()} == {"image"}
    finally:
        store.dispose()


@pytest.mark.slow
def test_image_demo_is_the_same_run_after_run(tmp_path: Path) -> None:
    # A fixed step count and seeded draws: the same checkpoint, attribution and split, to the microunit.
    corpus = write_corpus(tmp_path / "clipart")
    first, second = (run_image_demo(corpus, tmp_path / name) for name in ("one", "two"))
    for key in ("checkpoint_sha256", "merkle_root", "pool_microunits", "paid_microunits", "escrow_microunits"):
        assert first[key] == second[key], key
    assert first["top_earners"] == second["top_earners"]
