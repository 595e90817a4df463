"""Copies made by another renderer: does an export of a drawing link to the drawing it copies?

    python benchmarks/image_other_renderer.py --drawings 300 --json

The labelled set (``_image_pairs``) makes its copies from cairosvg's render, the renderer the registry
itself uses. A creator's export comes from Inkscape, a browser or librsvg, which draw strokes, gradients
and text a little differently. This takes ``--drawings`` drawings evenly over the sorted Open Clip Art
corpus (all but ``logos/``), renders each with ``rsvg-convert`` (librsvg; ``apt-get install
librsvg2-bin``) on white at a width drawn with a seed from 128, 256 and 512 pixels, registers the drawings
(``interop.svg.import_svg_drawings``) and then the PNG copies (``register_works``) in a fresh SQLite
store, and counts each copy as linked to its own drawing (or to the work its drawing is linked to),
linked to another work, shown for review with its drawing among the candidates, or none of these.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _image_pairs import OPENCLIPART_DIR, corpus_files
from sqlalchemy import select

from endcredits.interop.svg import import_svg_drawings
from endcredits.registry.fingerprints import IMAGE_METHOD, register_works
from endcredits.registry.records import WorkIn, content_sha256
from endcredits.store.engine import init_store
from endcredits.store.schema import work_links

WIDTHS_PX = (128, 256, 512)


def _render(svg: Path, width_px: int, out: Path) -> bytes | None:
    done = subprocess.run(
        ["rsvg-convert", "-w", str(width_px), "-b", "white", "-o", str(out), str(svg)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return out.read_bytes() if done.returncode == 0 and out.is_file() else None


def run(drawings_n: int, seed: int) -> dict[str, object]:
    if shutil.which("rsvg-convert") is None:
        raise SystemExit("rsvg-convert is missing: apt-get install librsvg2-bin")
    files = corpus_files()
    picked = files[:: max(1, len(files) // drawings_n)][:drawings_n]
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = init_store(Path(tmp) / "data")
        copies: list[tuple[Path, int, bytes]] = []
        for i, svg in enumerate(picked):
            width = rng.choice(WIDTHS_PX)
            png = _render(svg, width, Path(tmp) / f"{i}.png")
            if png is not None:
                copies.append((svg, width, png))
        started = time.perf_counter()
        report = import_svg_drawings(store, picked, root=OPENCLIPART_DIR)
        with store.write() as conn:
            registered = register_works(
                conn, [WorkIn(png, f"{svg.stem} ({w} px)", "image/png") for svg, w, png in copies]
            )
        seconds = time.perf_counter() - started
        with store.read() as conn:
            canonical = dict(
                conn.execute(
                    select(work_links.c.work_id, work_links.c.canonical_work_id).where(
                        work_links.c.unlinked_at.is_(None)
                    )
                ).all()
            )
        store.dispose()
    outcome: Counter[str] = Counter()
    by_width: dict[int, Counter[str]] = {w: Counter() for w in WIDTHS_PX}
    seen: set[str] = set()
    for (svg, width, png), r in zip(copies, registered):
        if content_sha256(png) in seen:  # two drawings of the corpus rendered to the same bytes
            continue
        seen.add(content_sha256(png))
        own = content_sha256(svg.read_bytes())
        mine = {own, canonical.get(own, own)}
        if r.canonical_work_id is not None and r.similarity is not None:
            kind = "linked_to_its_drawing" if r.canonical_work_id in mine else "linked_to_another"
        elif mine & {w for w, _ in r.candidates}:
            kind = "shown_for_review"
        else:
            kind = "not_found"
        outcome[kind] += 1
        by_width[width][kind] += 1
    return {
        "method": IMAGE_METHOD,
        "drawings": len(picked),
        "drawings_refused": len(report.refused),
        "copies": sum(outcome.values()),
        **{k: outcome[k] for k in ("linked_to_its_drawing", "linked_to_another", "shown_for_review", "not_found")},
        "by_width": {str(w): dict(c) for w, c in by_width.items()},
        "register_s": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawings", type=int, default=300)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.drawings, args.seed)
    print(json.dumps(result, indent=2) if args.json else result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
