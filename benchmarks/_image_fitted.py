"""Version 6 (``gray64-render-v6``) on the labelled pairs of ``_image_pairs``: each pair LSH finds from a
floor at 64 pixels is verified as ``register_works`` verifies it (``registry.image_rerender.verify_pair_v6``:
the drawing rendered again at the copy's resolution; version 5's correlation, and where it falls short of
``RENDERED_CORRELATION_MIN`` a colour map of the drawing fitted to the copy, with the worst window left
out, for each of ``VARIANTS``). Version 5's verdict is the correlation column of the same run.

``python benchmarks/_image_fitted.py 0.85 --cache DIR/image_pairs.npz`` chooses the rule on the tuning
half; ``--held-out GATE VARIANT FITTED`` applies one to the held-out half, version 5 beside it on the same
pairs. The scores are kept beside the cache as they are made, so a stopped run resumes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import _image_pairs as pairs
import _image_rerender as v5
import numpy as np

from endcredits.registry.image_rerender import Side, verify_pair_v6
from endcredits.registry.image_verify import HUE_DEGREES_MAX, RENDERED_CORRELATION_MIN, FittedVerdict, Variant

VARIANTS: tuple[Variant, ...] = ((0.15, False), (0.15, True), (0.20, False), (0.20, True))
"""Fitted comparisons measured (window share of the compared side, quadratic colour map); column 3 + i of
the scores."""


def _verify(registered: Side, new: Side) -> FittedVerdict | None:
    return verify_pair_v6(registered, new, VARIANTS)


def _row(v: FittedVerdict) -> tuple[float, ...]:
    return (v.correlation, v.hue_degrees, v.fitted, *v.windows)


def scores(data: dict[str, np.ndarray], s: pairs.Scored, floor: float, kept: Path | None = None) -> v5.RenderedScores:
    """(n x 7) per copy and distinct pair: correlation, hue, fitted over all pixels (affine), and for each of
    ``VARIANTS`` fitted with its worst window left out (NaN: not verified; the fits NaN where the
    correlation links)."""
    return v5.rendered_scores(data, s, floor, kept, _verify, _row, 3 + len(VARIANTS))


def linked(
    s: pairs.Scored, r: v5.RenderedScores, gate: float, window: int, fitted_min: float
) -> tuple[np.ndarray, np.ndarray]:
    """Copies and distinct pairs version 6 links under a rule: 64-pixel gate, version 5's correlation or
    the fitted share of variant ``window`` (an index of ``VARIANTS``; -1: none, version 5 alone)."""

    def rule(found: np.ndarray, sim: np.ndarray, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            ok = x[:, 0] >= RENDERED_CORRELATION_MIN
            if window >= 0:
                ok |= x[:, 3 + window] >= fitted_min
            ok &= x[:, 1] <= HUE_DEGREES_MAX
        out: np.ndarray = found & (sim >= gate) & ok
        return out

    return rule(s.copy_found, s.copy_similarity, r.copy), rule(s.distinct_found, s.distinct_similarity, r.distinct)


def choose(
    s: pairs.Scored, r: v5.RenderedScores, floor: float, false_rate_max: float = 0.001
) -> tuple[float, int, float, int, float]:
    """(gate, window, fitted share, copies linked, false rate) of the rule linking most copies of a half
    with at most ``false_rate_max`` of its distinct pairs linked: gates from ``floor`` to 0.95 by 0.01,
    each variant, fitted shares 0.970 to 0.9995 by 0.0005."""
    best = (1.0, -1, 1.0, -1, 0.0)
    for gate in np.round(np.arange(floor, 0.951, 0.01), 2):
        for window in range(len(VARIANTS)):
            for fitted in np.round(np.arange(0.970, 0.99951, 0.0005), 4):
                lc, ld = linked(s, r, float(gate), window, float(fitted))
                if ld.mean() <= false_rate_max and int(lc.sum()) > best[3]:
                    best = (float(gate), window, float(fitted), int(lc.sum()), float(ld.mean()))
    return best


def false_lines(data: dict[str, np.ndarray], s: pairs.Scored, r: v5.RenderedScores, ld: np.ndarray) -> list[str]:
    """Each distinct pair linked: its two drawings, creators, 64-pixel similarity and scores."""
    out = []
    for d in np.flatnonzero(ld):
        a, b = (int(x) for x in s.distinct_pairs[d])
        x = r.distinct[d]
        out.append(
            f"  false: {data['rel'][a]} ~ {data['rel'][b]} ({s.distinct_kind[d]}; "
            f"{'same creator' if data['creator'][a] == data['creator'][b] else 'other creators'}) "
            f"sim {s.distinct_similarity[d]:.3f} corr {x[0]:.4f} fitted {x[2]:.4f} window {x[3]:.4f} hue {x[1]:.0f}"
        )
    return out


def report(data: dict[str, np.ndarray], s: pairs.Scored, r: v5.RenderedScores, rule: tuple[float, int, float]) -> None:
    """Version 6's rates under ``rule`` (gate, variant index, fitted share) and version 5's on the same run,
    each with its misses by kind and its false links."""
    from endcredits.registry.fingerprints import IMAGE_REVIEW_MIN, IMAGE_THRESHOLD, RENDER_VERIFY_MIN

    gate, window, fitted = rule
    for name, g, w in (("gray64-render-v6", gate, window), ("gray64-render-v5 (same run)", RENDER_VERIFY_MIN, -1)):
        lc, ld = linked(s, r, g, w, fitted)
        print(f"{name}: gate {g}, variant {VARIANTS[w] if w >= 0 else '-'}, fitted {fitted if w >= 0 else '-'}")
        print("\n".join(pairs.rate_lines(s, IMAGE_THRESHOLD, IMAGE_REVIEW_MIN, (lc, ld))))
        print("\n".join(v5.miss_lines(data, s, lc, "copies linked")))
        print("\n".join(false_lines(data, s, r, ld)))
    done = int(np.isfinite(r.copy[:, 0]).sum()), int(np.isfinite(r.distinct[:, 0]).sum())
    print(f"verified {done[0]} copies and {done[1]} distinct pairs in {r.seconds:.0f} s (this run)")


def timing(data: dict[str, np.ndarray], s: pairs.Scored, floor: float, count: int) -> list[str]:
    """Seconds a comparison of version 5 (``verify_pair``) and version 6 (``verify_pair_v6``, production
    constants) on the first ``count`` copies and ``count`` distinct pairs of a half found from ``floor``,
    the two run one after the other on each pair (the renders memoised for neither)."""
    import time

    from endcredits.registry.image_rerender import verify_pair

    def svg(j: int) -> bytes:
        return (pairs.OPENCLIPART_DIR / str(data["rel"][j])).read_bytes()

    work: list[tuple[str, Side, Side]] = []
    for i in np.flatnonzero(s.copy_found & (s.copy_similarity >= floor))[:count]:
        j, k = (int(x) for x in s.copy_pairs[i])
        made = pairs.copy_contents(svg(j), int(data["index"][j]))[str(data["copy_kind"][k])]
        work.append(
            ("copy", Side(v5._fine(data, "orig", j, True), svg(j)), Side(v5._fine(data, "copy", k, False), made))
        )
    for d in np.flatnonzero(s.distinct_found & (s.distinct_similarity >= floor))[:count]:
        a, b = (int(x) for x in s.distinct_pairs[d])
        work.append(
            ("distinct", Side(v5._fine(data, "orig", a, True), svg(a)), Side(v5._fine(data, "orig", b, True), svg(b)))
        )
    spent: dict[tuple[str, str], list[float]] = {}
    for kind, registered, new in work:
        for name, verify in (("v5", verify_pair), ("v6", verify_pair_v6)):
            t0 = time.perf_counter()
            verify(registered, new)
            spent.setdefault((kind, name), []).append(time.perf_counter() - t0)
    return [
        f"{kind} pairs, {name}: {np.mean(t) * 1000:.0f} ms a comparison (median {np.median(t) * 1000:.0f}, n {len(t)})"
        for (kind, name), t in sorted(spent.items())
    ]


def every_nth_copy(s: pairs.Scored, n: int) -> pairs.Scored:
    """``s`` with every ``n``-th copy only (all distinct pairs): a cheaper tuning run (``phash-64``'s line
    still counts every copy)."""
    if n == 1:
        return s
    keep = np.arange(len(s.copy_found)) % n == 0
    return dataclasses.replace(
        s,
        copy_similarity=s.copy_similarity[keep],
        copy_found=s.copy_found[keep],
        copy_kind=s.copy_kind[keep],
        copy_pairs=s.copy_pairs[keep],
    )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("floor", type=float, nargs="?", default=0.85, help="64-pixel similarity verified from")
    parser.add_argument("--cache", type=Path, default=pairs.CACHE, help="the labelled set (_image_pairs.py)")
    parser.add_argument("--held-out", type=float, nargs=3, metavar=("GATE", "VARIANT", "FITTED"))
    parser.add_argument("--copies-every", type=int, default=1, help="score every n-th copy (all distinct pairs)")
    parser.add_argument("--timing", type=int, metavar="N", help="only time v5 and v6 on N copies and N distinct pairs")
    args = parser.parse_args()
    data = pairs.load(args.cache)
    if args.timing:
        print("\n".join(timing(data, pairs.score_half(data, 1), args.floor, args.timing)))
        return
    name = "heldout" if args.held_out else "tuning"
    s = every_nth_copy(pairs.score_half(data, 1 if args.held_out else 0), args.copies_every)
    r = scores(data, s, args.floor, args.cache.with_name(f"fitted_{name}.part.npz"))
    np.savez_compressed(args.cache.with_name(f"fitted_{name}.npz"), copy=r.copy, distinct=r.distinct)
    if args.held_out is None:
        gate, window, fitted, n, rate = choose(s, r, args.floor)
        rule = f"gate {gate}, variant {window} {VARIANTS[window]}, fitted {fitted}"
        print(f"tuning half: {rule}: {n} copies, false {rate:.4%}")
        report(data, s, r, (gate, window, fitted))
        return
    gate, variant, fitted = args.held_out
    report(data, s, r, (gate, int(variant), fitted))


if __name__ == "__main__":
    main()
