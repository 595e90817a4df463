"""Version 5 (``gray64-render-v5``) on the labelled pairs of ``_image_pairs``: each pair LSH finds from a
floor at 64 pixels is verified as ``register_works`` verifies it, the drawing (an SVG) rendered again at
the copy's resolution (``registry.image_rerender.verify_pair``; two drawings both at 512 pixels). The
copies' bytes are made again from the drawings (``_image_pairs.copy_contents``: seeded, the same bytes
the cache was described from). Renders are memoised per drawing and size while a half is scored.

``python benchmarks/_image_rerender.py 0.88`` chooses the rule on the tuning half; ``--held-out GATE
CORRELATION SHARE`` applies one to the held-out half, version 4 beside it. The scores are kept beside the
cache as they are made, so a run stopped on a loaded machine resumes where it stopped.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _image_pairs as pairs
import numpy as np

from endcredits.registry import image_rerender
from endcredits.registry.fingerprints import FinePicture
from endcredits.registry.image_rerender import Side, verify_pair
from endcredits.registry.image_verify import HUE_DEGREES_MAX, RenderedVerdict

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


KEEP_EVERY_S = 60.0
"""How often ``rendered_scores`` writes its progress when asked to keep it (seconds)."""


def _pairs_key(s: pairs.Scored, floor: float) -> int:
    return zlib.crc32(s.copy_pairs.tobytes() + s.distinct_pairs.tobytes() + repr(floor).encode())


def _resume(kept: Path | None, s: pairs.Scored, floor: float, width: int = 3) -> dict[str, np.ndarray]:
    """The scores (``width`` a pair) and done marks kept in ``kept`` for these pairs, or fresh ones; kept
    progress for other pairs is refused."""
    fresh = {
        "copy": np.full((len(s.copy_found), width), np.nan),
        "distinct": np.full((len(s.distinct_found), width), np.nan),
        "copy_done": np.zeros(len(s.copy_found), dtype=bool),
        "distinct_done": np.zeros(len(s.distinct_found), dtype=bool),
    }
    if kept is None or not kept.exists():
        return fresh
    with np.load(kept) as z:
        if int(z["key"]) != _pairs_key(s, floor):
            raise ValueError(f"{kept} holds the progress of other pairs or another floor: delete it to start again")
        return {k: z[k] for k in fresh}


def _v5_row(v: RenderedVerdict) -> tuple[float, ...]:
    return (v.correlation, v.residual_share, v.hue_degrees)


def rendered_scores(
    data: dict[str, np.ndarray],
    s: pairs.Scored,
    floor: float,
    kept: Path | None = None,
    verify: Callable[[Side, Side], Any] = verify_pair,
    as_row: Callable[[Any], tuple[float, ...]] = _v5_row,
    width: int = 3,
) -> RenderedScores:
    """Verify every pair of ``s`` found from ``floor`` up as version 5 does (or as ``verify`` does, each
    verdict stored as ``as_row``'s ``width`` numbers): the drawing (or the first of a distinct pair)
    registered, the copy (the second) new. With ``kept``, the progress is written there every
    ``KEEP_EVERY_S`` and a run resumes from it (``seconds``: this run's)."""
    import time

    t0 = time.perf_counter()
    _memo_render()
    got = _resume(kept, s, floor, width)
    last = [t0]

    def keep(done: bool = False) -> None:
        if kept is not None and (done or time.perf_counter() - last[0] >= KEEP_EVERY_S):
            partial = kept.with_name(kept.stem + ".tmp.npz")
            np.savez(partial, key=np.int64(_pairs_key(s, floor)), **got)  # type: ignore[arg-type]
            partial.replace(kept)
            last[0] = time.perf_counter()

    def svg_bytes(j: int) -> bytes:
        return (pairs.OPENCLIPART_DIR / str(data["rel"][j])).read_bytes()

    def put(name: str, i: int, v: object) -> None:
        got[name][i] = as_row(v) if v is not None else np.nan
        got[f"{name}_done"][i] = True

    todo = np.flatnonzero(s.copy_found & (s.copy_similarity >= floor) & ~got["copy_done"])
    by_drawing: dict[int, list[int]] = defaultdict(list)
    for row in todo:
        by_drawing[int(s.copy_pairs[row, 0])].append(int(row))
    for j, rows in sorted(by_drawing.items()):
        content = svg_bytes(j)
        made = pairs.copy_contents(content, int(data["index"][j]))  # the seed the build used
        registered = Side(_fine(data, "orig", j, True), content)
        for i in rows:
            k = int(s.copy_pairs[i, 1])
            new = Side(_fine(data, "copy", k, False), made[str(data["copy_kind"][k])])
            put("copy", i, verify(registered, new))
        keep()
    todo = np.flatnonzero(s.distinct_found & (s.distinct_similarity >= floor) & ~got["distinct_done"])
    for d in sorted(todo, key=lambda d: tuple(s.distinct_pairs[d])):
        a, b = (int(x) for x in s.distinct_pairs[d])
        pair = (Side(_fine(data, "orig", a, True), svg_bytes(a)), Side(_fine(data, "orig", b, True), svg_bytes(b)))
        put("distinct", int(d), verify(*pair))
        keep()
    keep(done=True)
    return RenderedScores(got["copy"], got["distinct"], time.perf_counter() - t0)


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


def main() -> None:
    """Choose version 5's rule on the tuning half, or, with ``--held-out``, apply one to the held-out half
    (version 4 beside it); the scores are kept beside the cache, and a stopped run resumes."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("floor", type=float, nargs="?", default=0.88, help="64-pixel similarity verified from")
    parser.add_argument("--cache", type=Path, default=pairs.CACHE, help="the labelled set (_image_pairs.py)")
    parser.add_argument("--held-out", type=float, nargs=3, metavar=("GATE", "CORRELATION", "SHARE"))
    args = parser.parse_args()
    data = pairs.load(args.cache)
    name = "heldout" if args.held_out else "tuning"
    s = pairs.score_half(data, 1 if args.held_out else 0)
    scores = rendered_scores(data, s, args.floor, args.cache.with_name(f"rendered_{name}.part.npz"))
    np.savez_compressed(args.cache.with_name(f"rendered_{name}.npz"), copy=scores.copy, distinct=scores.distinct)
    if args.held_out is None:
        gate, corr, share, n, rate = choose_rendered_rule(s, scores, args.floor)
        print(f"tuning half: gate {gate}, correlation {corr}, share {share}: {n} copies linked, false {rate:.4%}")
        print("\n".join(rate_lines(data, s, scores, (gate, corr, share))))
        return
    from endcredits.registry.fingerprints import IMAGE_REVIEW_MIN, IMAGE_THRESHOLD

    gate, corr, share = args.held_out
    print(f"held-out half, gray64-render-v5: gate {gate}, correlation {corr}, share {share}")
    print("\n".join(rate_lines(data, s, scores, (gate, corr, share))))
    v4 = pairs.verified_v4(data, s)
    print("held-out half, gray64-verify256-v4 (production constants):")
    print(
        "\n".join(
            [*pairs.rate_lines(s, IMAGE_THRESHOLD, IMAGE_REVIEW_MIN, v4), *miss_lines(data, s, v4[0], "copies linked")]
        )
    )


if __name__ == "__main__":
    main()
