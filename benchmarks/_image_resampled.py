"""Version 7 (``gray64-render-v7``) against version 6 on one half of the labelled pairs of ``_image_pairs``.

Version 7 is version 6 with a second try where a drawing and a raster picture do not match: the drawing
rendered at ``image_rerender.SUPERSAMPLE`` times the picture's resolution and reduced to it. Nothing is
chosen here: version 6's gate and fitted share are kept and the factor is fixed, so the run only reports,
for both versions from the same verdicts:

- the copies linked (version 7 tries again only where version 6 refuses);
- the labelled set's distinct pairs (two drawings, both rendered again: the second try never applies);
- distinct pairs of a second kind, where it does apply: the second drawing's PNG export (on white, at the
  set's export size, and resized to a half and a quarter of it as the copies are) against the first
  drawing registered. The 64-pixel gate is the two drawings' similarity.

``python benchmarks/_image_resampled.py --cache DIR/image_pairs.npz`` (the held-out half; ``--half 0`` the
tuning one). Progress is kept beside the cache, so a stopped run resumes.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import _image_pairs as pairs
import _image_rerender as v5
import numpy as np

from endcredits.registry import fingerprints as fp
from endcredits.registry.fingerprints import RENDER_V6_VERIFY_MIN
from endcredits.registry.image_rerender import (
    SUPERSAMPLE,
    SUPERSAMPLE_CORRELATION_MIN,
    SUPERSAMPLE_FITTED_MIN,
    SUPERSAMPLE_GATE,
    Side,
    verify_pair_v6,
)
from endcredits.registry.image_verify import FittedVerdict

WIDTH = 8
"""Columns a pair: version 6's correlation, hue, fitted share with the window left out, verdict (1/0); the
same four for the second try (NaN where version 6 links or the pair is two drawings)."""


def _four(v: FittedVerdict | None) -> tuple[float, ...]:
    if v is None:
        return (np.nan,) * 4
    return (v.correlation, v.hue_degrees, v.fitted_window, float(v.same))


def verify_both(registered: Side, new: Side) -> tuple[float, ...] | None:
    """Version 6's verdict and, where it refuses a drawing and a raster picture, the second try's."""
    first = verify_pair_v6(registered, new)
    if first is None:
        return None
    second = None
    if not first.same and registered.fine.svg != new.fine.svg:
        second = verify_pair_v6(registered, new, supersample=SUPERSAMPLE)
    return (*_four(first), *_four(second))


def _row(x: tuple[float, ...]) -> tuple[float, ...]:
    return x


FACTORS = (1.0, 0.5, 0.25)
"""Sizes of the second drawing's export in the raster distinct pairs (of the export size)."""


def _export_png(content: bytes, factor: float) -> bytes:
    """A drawing's PNG export on white at the labelled set's export size times ``factor`` (Lanczos), as
    its resized copies are made."""
    from PIL import Image

    picture = fp.canonical_picture(fp.render_svg(content, pairs.EXPORT_PIXELS))
    if factor != 1.0:
        size = (max(1, round(picture.width * factor)), max(1, round(picture.height * factor)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def raster_distinct(
    data: dict[str, np.ndarray], s: pairs.Scored, floor: float, factor: float, kept: Path
) -> np.ndarray:
    """``WIDTH`` columns for every distinct pair found from ``floor`` up: the first drawing registered, the
    second's PNG export at ``factor`` new (NaN for the others); resumes from ``kept``."""
    out = np.full((len(s.distinct_found), WIDTH), np.nan)
    done = np.zeros(len(s.distinct_found), dtype=bool)
    if kept.exists():
        with np.load(kept) as z:
            out, done = z["scores"], z["done"]
    todo = np.flatnonzero(s.distinct_found & (s.distinct_similarity >= floor) & ~done)
    last = time.perf_counter()
    for d in todo:
        a, b = (int(x) for x in s.distinct_pairs[d])
        svg_a = (pairs.OPENCLIPART_DIR / str(data["rel"][a])).read_bytes()
        png = _export_png((pairs.OPENCLIPART_DIR / str(data["rel"][b])).read_bytes(), factor)
        made = fp.image_fingerprint(png, "image")
        if made is not None:
            row = verify_both(Side(v5._fine(data, "orig", a, True), svg_a), Side(fp.fine_picture(made.value), png))
            out[d] = row if row is not None else np.nan
        done[d] = True
        if time.perf_counter() - last > v5.KEEP_EVERY_S:
            _keep(kept, out, done)
            last = time.perf_counter()
    _keep(kept, out, done)
    return out


def _keep(kept: Path, scores: np.ndarray, done: np.ndarray) -> None:
    """Write the progress beside ``kept`` and move it into place, so a stopped run never leaves half a file."""
    partial = kept.with_name(kept.stem + ".tmp.npz")
    np.savez(partial, scores=scores, done=done)
    partial.replace(kept)


def scores(data: dict[str, np.ndarray], s: pairs.Scored, kept: Path | None = None) -> v5.RenderedScores:
    """``WIDTH`` columns for every copy and distinct pair of ``s`` found from version 6's gate up."""
    return v5.rendered_scores(data, s, RENDER_V6_VERIFY_MIN, kept, verify_both, _row, WIDTH)


Rule = tuple[float, float, float]
"""Version 7's second try: (64-pixel gate, correlation, fitted share), each from which it links."""


def linked(
    found: np.ndarray, sim: np.ndarray, x: np.ndarray, gate: float, second: bool, rule: Rule | None = None
) -> np.ndarray:
    """Pairs linked by version 6 (``second`` False) or 7 from the 64-pixel ``gate``: version 6's verdict,
    or the second try's under ``rule`` (default: the code's constants)."""
    from endcredits.registry.image_verify import HUE_DEGREES_MAX

    ok = x[:, 3] == 1.0
    if second:
        g2, c2, f2 = (
            rule if rule is not None else (SUPERSAMPLE_GATE, SUPERSAMPLE_CORRELATION_MIN, SUPERSAMPLE_FITTED_MIN)
        )
        with np.errstate(invalid="ignore"):
            ok |= (sim >= g2) & ((x[:, 4] >= c2) | (x[:, 6] >= f2)) & (x[:, 5] <= HUE_DEGREES_MAX)
    out: np.ndarray = found & (sim >= gate) & ok
    return out


GATES = (0.85, 0.88, 0.90, 0.92, 0.94, 0.96)
CORRELATIONS = (0.996, 0.997, 0.998, 0.999, 0.9995, 2.0)
FITTED = (0.997, 0.998, 0.999, 0.9995, 2.0)
"""The second try's rules ``choose`` tries (2.0: that path off)."""


def choose(
    s: pairs.Scored, r: v5.RenderedScores, raster: dict[float, np.ndarray], false_rate_max: float = 0.001
) -> tuple[Rule, int, list[int]]:
    """The second try's rule linking most copies of a half such that, for each kind of distinct pair (two
    drawings, and each size of export), version 7 falsely links no more than ``false_rate_max`` of them or,
    where version 6 already links more, no more than version 6: (rule, copies linked, false by kind)."""
    gate = RENDER_V6_VERIFY_MIN
    kinds = [r.distinct, *raster.values()]
    allowed = [
        max(int(false_rate_max * len(x)), int(linked(s.distinct_found, s.distinct_similarity, x, gate, False).sum()))
        for x in kinds
    ]
    best: tuple[Rule, int, list[int]] = ((2.0, 2.0, 2.0), -1, [])
    for rule in ((g, c, f) for g in GATES for c in CORRELATIONS for f in FITTED):
        false = [int(linked(s.distinct_found, s.distinct_similarity, x, gate, True, rule).sum()) for x in kinds]
        if all(n <= a for n, a in zip(false, allowed)):
            n = int(linked(s.copy_found, s.copy_similarity, r.copy, gate, True, rule).sum())
            if n > best[1]:
                best = (rule, n, false)
    return best


def linked_v5(found: np.ndarray, sim: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Pairs version 5 links: its gate, and the same correlation and hue limits (from version 6's columns)."""
    from endcredits.registry.fingerprints import RENDER_VERIFY_MIN
    from endcredits.registry.image_verify import HUE_DEGREES_MAX, RENDERED_CORRELATION_MIN

    with np.errstate(invalid="ignore"):
        ok = (x[:, 0] >= RENDERED_CORRELATION_MIN) & (x[:, 1] <= HUE_DEGREES_MAX)
    out: np.ndarray = found & (sim >= RENDER_VERIFY_MIN) & ok
    return out


def main() -> None:
    import argparse

    from endcredits.registry.fingerprints import IMAGE_REVIEW_MIN, IMAGE_THRESHOLD

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=pairs.CACHE, help="the labelled set (_image_pairs.py)")
    parser.add_argument("--half", type=int, default=1, choices=(0, 1), help="0 tuning, 1 held out (default)")
    parser.add_argument(
        "--raster-only",
        type=float,
        nargs="+",
        metavar="FACTOR",
        help="only verify the raster distinct pairs at these sizes (a second process beside a run)",
    )
    args = parser.parse_args()
    data = pairs.load(args.cache)
    s = pairs.score_half(data, args.half)
    gate = RENDER_V6_VERIFY_MIN
    name = ("tuning", "heldout")[args.half]
    t0 = time.perf_counter()
    if args.raster_only:
        for f in args.raster_only:
            raster_distinct(data, s, gate, f, args.cache.with_name(f"resampled_{name}_raster{f}.part.npz"))
        return
    r = scores(data, s, args.cache.with_name(f"resampled_{name}.part.npz"))
    raster = {
        f: raster_distinct(data, s, gate, f, args.cache.with_name(f"resampled_{name}_raster{f}.part.npz"))
        for f in FACTORS
    }
    print(f"{name} half, gate {gate}, second try at {SUPERSAMPLE}x; verified in {time.perf_counter() - t0:.0f} s")
    if args.half == 0:
        rule, n, false = choose(s, r, raster)
        print(
            f"chosen on this half: second try from {rule[0]}, correlation {rule[1]}, fitted {rule[2]} (2.0: off): "
            f"{n} copies linked; false by kind (two drawings, exports at {FACTORS}): {false}"
        )
    for label, second in (("gray64-render-v6", False), ("gray64-render-v7", True)):
        lc = linked(s.copy_found, s.copy_similarity, r.copy, gate, second)
        ld = linked(s.distinct_found, s.distinct_similarity, r.distinct, gate, second)
        print(f"{label}:")
        print("\n".join(pairs.rate_lines(s, IMAGE_THRESHOLD, IMAGE_REVIEW_MIN, (lc, ld))))
        for f, x in raster.items():
            lr = linked(s.distinct_found, s.distinct_similarity, x, gate, second)
            rate = f"{int(lr.sum())}/{len(lr)} falsely linked ({lr.mean():.3%})"
            print(f"  export at {f:g} against the other drawing: {rate}")
            for d in np.flatnonzero(lr):
                a, b = (str(data["rel"][int(i)]) for i in s.distinct_pairs[d])
                print(f"    {a} <- {b}: sim {s.distinct_similarity[d]:.3f}, {np.round(x[d], 4)}")
        print("\n".join(v5.miss_lines(data, s, lc, "copies linked")))
    tried = np.isfinite(r.copy[:, 4])
    print(f"second try on {int(tried.sum())} copies; linked by it {int((r.copy[:, 7] == 1.0).sum())}")


if __name__ == "__main__":
    main()
