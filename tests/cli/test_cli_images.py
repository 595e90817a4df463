"""`works add` on images: an SVG drawing registers as an image, a heavily edited raster copy of it is shown
as a candidate to confirm (with the `works link` command), a broken SVG is refused in one line naming the
file; both backends."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import ImageDraw
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.registry import fingerprints as fp

ROOK = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="120" height="160" viewBox="0 0 120 160">'
    b'<rect x="20" y="130" width="80" height="20" fill="#222"/><rect x="35" y="60" width="50" height="70" '
    b'fill="#222"/><path d="M25 20h15v15h12V20h16v15h12V20h15v40H25z" fill="#222"/></svg>'
)


def test_svg_then_a_candidate_then_a_broken_svg(tmp_path: Path, db_url: str | None) -> None:
    runner = CliRunner()
    base = ["--data", str(tmp_path / "data")] + (["--db", db_url] if db_url else [])
    assert runner.invoke(app, [*base, "init"]).exit_code == 0
    (tmp_path / "rook.svg").write_bytes(ROOK)
    picture = fp.canonical_picture(fp.render_svg(ROOK, 200))
    w, h = picture.size  # a grey box over the middle quarter: similar, but not enough to link
    ImageDraw.Draw(picture).rectangle((w // 4, h // 4, w * 3 // 4, h * 3 // 4), fill=(160, 160, 160))
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    (tmp_path / "boxed.png").write_bytes(buf.getvalue())
    (tmp_path / "broken.svg").write_bytes(ROOK[:60])

    added = runner.invoke(
        app, [*base, "works", "add", str(tmp_path / "rook.svg"), "--title", "Rook", "--kind", "image/svg+xml", "--json"]
    )
    assert added.exit_code == 0, added.stderr
    rook = json.loads(added.stdout)
    boxed = runner.invoke(
        app, [*base, "works", "add", str(tmp_path / "boxed.png"), "--title", "Boxed", "--kind", "image/png"]
    )
    assert boxed.exit_code == 0, boxed.stderr
    assert f"may copy {rook['work_id']}" in boxed.stdout and "endcredits works link" in boxed.stdout
    broken = runner.invoke(
        app, [*base, "works", "add", str(tmp_path / "broken.svg"), "--title", "B", "--kind", "image/svg+xml"]
    )
    assert broken.exit_code == 1
    lines = [line for line in broken.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(tmp_path / "broken.svg") in lines[0] and "could not be rendered" in lines[0]
