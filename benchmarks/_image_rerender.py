"""Version 5 (``gray64-render-v5``) on the labelled pairs of ``_image_pairs``: each pair LSH finds from a
floor at 64 pixels is verified as ``register_works`` verifies it, the drawing (an SVG) rendered again at
the copy's resolution (``registry.image_rerender.verify_pair``; two drawings both at 512 pixels). The
copies' bytes are made again from the drawings (``_image_pairs.copy_contents``: seeded, the same bytes
the cache was described from). Renders are memoised per drawing and size while a half is scored.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import _image_pairs as pairs
import numpy as np

from endcredits.registry import image_rerender
from endcredits.registry.fingerprints import FinePicture
from endcredits.registry.image_rerender import Side, verify_pair
from endcredits.registry.image_verify import HUE_DEGREES_MAX

STAR = re.compile(r"(^|/)star_\d+pt\d+step")
"""The star polygons of one creator (``shapes/stars/star_86pt11step.svg``): fine lines, one series."""


@dataclass(frozen=True)
class RenderedScores:
    """``verify_pair``'s correlation, share of differing pixels and hue for each copy and distinct pair of
    a ``Scored`` found by LSH from ``floor`` up at 64 pixels (NaN for the others)."""

    copy: np.ndarray
    """(n copies x 3): correlation, residual share, hue degrees."""
    distinct: np.ndarray
    seconds: float


def _memo_render() -> None:
    """Memoise ``render_svg`` as ``image_rerender`` calls it (by the bytes and the size)."""
    if not hasattr(image_rerender.render_svg, "cache_info"):
        image_rerender.render_svg = functools.lru_cache(maxsize=96)(image_rerender.render_svg)  # type: ignore[assignment]


def _fine(data: dict[str, np.ndarray], side: str, i: int, svg: bool) -> FinePicture:
    n = data[f"{side}_native"][i]
    return FinePicture(
        data[f"{side}_thumb256"][i].reshape(256, 256),
        data[f"{side}_rgb16"][i].reshape(16, 16, 3),
        (int(n[0]), int(n[1])),
        svg,
    )


def rendered_scores(data: dict[str, np.ndarray], s: pairs.Scored, floor: float) -> RenderedScores:
    """Verify every pair of ``s`` found from ``floor`` up as version 5 does: the drawing (or the first of a
    distinct pair) registered, the copy (the second) new."""
    import time

    t0 = time.perf_counter()
    _memo_render()

    def svg_bytes(j: int) -> bytes:
        return (pairs.OPENCLIPART_DIR / str(data["rel"][j])).read_bytes()

    copy = np.full((len(s.copy_found), 3), np.nan)
    todo = np.flatnonzero(s.copy_found & (s.copy_similarity >= floor))
    by_drawing: dict[int, list[int]] = defaultdict(list)
    for i in todo:
        by_drawing[int(s.copy_pairs[i, 0])].append(int(i))
    for j, rows in sorted(by_drawing.items()):
        content = svg_bytes(j)
        made = pairs.copy_contents(content, int(data["index"][j]))  # the seed the build used
        registered = Side(_fine(data, "orig", j, True), content)
        for i in rows:
            k = int(s.copy_pairs[i, 1])
            v = verify_pair(registered, Side(_fine(data, "copy", k, False), made[str(data["copy_kind"][k])]))
            copy[i] = (v.correlation, v.residual_share, v.hue_degrees) if v is not None else np.nan
    distinct = np.full((len(s.distinct_found), 3), np.nan)
    todo = np.flatnonzero(s.distinct_found & (s.distinct_similarity >= floor))
    for i in sorted(todo, key=lambda i: tuple(s.distinct_pairs[i])):
        a, b = (int(x) for x in s.distinct_pairs[i])
        v = verify_pair(
            Side(_fine(data, "orig", a, True), svg_bytes(a)), Side(_fine(data, "orig", b, True), svg_bytes(b))
        )
        distinct[i] = (v.correlation, v.residual_share, v.hue_degrees) if v is not None else np.nan
    return RenderedScores(copy, distinct, time.perf_counter() - t0)


def rendered_linked(
    s: pairs.Scored, r: RenderedScores, gate: float, correlation_min: float, share_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which copies and distinct pairs version 5 links under a rule (64-pixel gate, correlation, share)."""

    def rule(found: np.ndarray, sim: np.ndarray, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            ok = (x[:, 0] >= correlation_min) & (x[:, 1] <= share_max) & (x[:, 2] <= HUE_DEGREES_MAX)
        out: np.ndarray = found & (sim >= gate) & ok
        return out

    return rule(s.copy_found, s.copy_similarity, r.copy), rule(s.distinct_found, s.distinct_similarity, r.distinct)


SHARES = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 1.0)


def choose_rendered_rule(
    s: pairs.Scored, r: RenderedScores, floor: float, false_rate_max: float = 0.001
) -> tuple[float, float, float, int, float]:
    """(gate, correlation, share, copies linked, false rate) of the rule linking most copies of a half with
    at most ``false_rate_max`` of its distinct pairs linked: gates from ``floor`` to 0.95 by 0.01,
    correlations 0.970 to 0.999 by 0.001, shares ``SHARES``."""
    best = (1.0, 1.0, 0.0, -1, 0.0)
    for gate in np.round(np.arange(floor, 0.951, 0.01), 2):
        for corr in np.round(np.arange(0.970, 0.9995, 0.001), 3):
            for share in SHARES:
                lc, ld = rendered_linked(s, r, float(gate), float(corr), share)
                if ld.mean() <= false_rate_max and int(lc.sum()) > best[3]:
                    best = (float(gate), float(corr), share, int(lc.sum()), float(ld.mean()))
    return best


def miss_lines(data: dict[str, np.ndarray], s: pairs.Scored, linked: np.ndarray, label: str) -> list[str]:
    """Copies not linked, by kind of copy and kind of drawing (star polygon or not), and by why: not an
    LSH candidate, under the 64-pixel gate, or refused by the verification."""
    rel = data["rel"][s.copy_pairs[:, 0]]
    star = np.asarray([bool(STAR.search(str(x))) for x in rel])
    out = [f"{label}: stars {int(linked[star].sum())}/{int(star.sum())} linked, others "
           f"{int(linked[~star].sum())}/{int((~star).sum())}"]  # fmt: skip
    for k in sorted(set(s.copy_kind)):
        m = s.copy_kind == k
        out.append(
            f"  {k}: stars {int(linked[m & star].sum())}/{int((m & star).sum())}, "
            f"others {int(linked[m & ~star].sum())}/{int((m & ~star).sum())}"
        )
    folders: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i, x in enumerate(rel):
        top = "star polygons" if star[i] else Path(str(x)).parts[0]
        folders[top][0] += int(not linked[i])
        folders[top][1] += 1
    worst = sorted(folders.items(), key=lambda kv: -kv[1][0])[:8]
    out.append("  missed by folder: " + ", ".join(f"{k} {m}/{n}" for k, (m, n) in worst))
    return out


def rate_lines(
    data: dict[str, np.ndarray], s: pairs.Scored, r: RenderedScores, rule: tuple[float, float, float]
) -> list[str]:
    """Version 5's rates under ``rule`` (gate, correlation, share), as ``_image_pairs.rate_lines`` prints
    them, then the copies not linked by kind of copy and of drawing."""
    from endcredits.registry.fingerprints import IMAGE_REVIEW_MIN, IMAGE_THRESHOLD

    linked = rendered_linked(s, r, *rule)
    return [
        *pairs.rate_lines(s, IMAGE_THRESHOLD, IMAGE_REVIEW_MIN, linked),
        *miss_lines(data, s, linked[0], "copies linked"),
        f"  verified {int(np.isfinite(r.copy[:, 0]).sum())} copies and "
        f"{int(np.isfinite(r.distinct[:, 0]).sum())} distinct pairs in {r.seconds:.0f} s",
    ]


if __name__ == "__main__":
    import sys

    floor = float(sys.argv[1]) if len(sys.argv) > 1 else 0.88
    data = pairs.load()
    tuning = pairs.score_half(data, 0)
    scores = rendered_scores(data, tuning, floor)
    gate, corr, share, n, rate = choose_rendered_rule(tuning, scores, floor)
    print(f"tuning half: gate {gate}, correlation {corr}, share {share}: {n} copies linked, false {rate:.4%}")
    print("\n".join(rate_lines(data, tuning, scores, (gate, corr, share))))
    np.savez_compressed(pairs.CACHE.with_name("rendered_tuning.npz"), copy=scores.copy, distinct=scores.distinct)
