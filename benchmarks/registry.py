"""Registry throughput: importing works, credits and people, then building one manifest over all of them.

    python benchmarks/registry.py --db sqlite --json
    python benchmarks/registry.py --db postgresql --json

Step 1 (import, timed as a whole): ``--people`` people (``add_people``), then ``--works`` works
(``add_works``, 100,000 a transaction) with 3 credits each (``add_credits``) among those people.
Step 2 (manifest, timed): 5% of the works carry a notAllowed consent grant for the use (added before,
not timed); ``build_manifest`` decides every work, builds the Merkle tree over the included ones and
stores every entry. Prints works/s for each step and the process's peak resident memory after it
(``ru_maxrss``: a high-water mark, so the manifest figure includes the import's peak when that was higher).
Work content is 64 distinct bytes each; no fingerprints are computed (``add_works`` is the exact,
SHA-256 path; ``register_works`` adds a fingerprint per work and is not what a bulk import uses).

``--bulk`` measures `endcredits works import` instead: ``--works`` small text files and one CSV row each
(two credits among ``--people`` names, a licence on every tenth), imported with ``import_collection``
(fingerprints included, as that command computes them), then imported again (nothing to add). Prints
rows/s of both runs.

    python benchmarks/registry.py --images [--images-limit N] --db sqlite|postgresql --json

``--images``: instead, import the Open Clip Art drawings (Debian ``openclipart-svg``, all but ``logos/``)
with ``interop.svg.import_svg_drawings``, ``--images-chunk`` files a transaction: each is parsed for its
metadata, rendered by cairosvg, fingerprinted (``gray64-render-v7``: a candidate drawing is rendered
again from its stored bytes to verify it), linked or not, and credited. Prints drawings/s and peak memory,
then the duplicate-detection rates of the image fingerprint (and of ``gray64-render-v5``, ``gray64-verify256-v4``,
``gray64-verify128-v3`` and ``gray64-crop-v2`` beside it) on the held-out half of the labelled pairs
(``benchmarks/_image_pairs.py``; built and cached on first use, which renders every drawing again: about
half an hour on one process of a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from endcredits.manifest.build import build_manifest
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_people, add_works
from endcredits.store.bulk import bulk_insert
from endcredits.store.engine import Store, init_store, utc_now

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CHUNK_WORKS = 100_000
ROLES = ("endcredits:composer", "endcredits:performer", "endcredits:transcriber")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(
    store: Store, works_n: int, people_n: int, excluded_fraction: float, chunk_works: int = CHUNK_WORKS
) -> dict[str, object]:
    t0 = time.perf_counter()
    with store.write() as conn:
        person_ids = add_people(conn, [f"person-{i:07d}" for i in range(people_n)])
    work_ids: list[str] = []
    for start in range(0, works_n, chunk_works):
        stop = min(works_n, start + chunk_works)
        items = [WorkIn(f"work {i:010d} {'x' * 48}".encode(), f"Work {i}", "text") for i in range(start, stop)]
        with store.write() as conn:
            ids = add_works(conn, items)
            add_credits(
                conn,
                [
                    CreditIn(w, f"person:{person_ids[(i * 7 + k * 31_337) % people_n]}", ROLES[k])
                    for i, w in zip(range(start, stop), ids)
                    for k in range(3)
                ],
            )
        work_ids += ids
    import_s = time.perf_counter() - t0
    import_peak = _peak_mib()

    refused = work_ids[:: round(1 / excluded_fraction)] if excluded_fraction else []
    with store.write() as conn:
        at = utc_now()
        bulk_insert(
            conn,
            "consent_grants",
            (
                "subject_kind",
                "subject_id",
                "use",
                "decision",
                "valid_from",
                "valid_until",
                "perpetual",
                "source",
                "created_at",
            ),
            [
                ("work", w, "ai_training", "notAllowed", "2025-01-01T00:00:00.000000Z", None, True, "benchmark", at)
                for w in refused
            ],
        )
    t1 = time.perf_counter()
    m = build_manifest(
        store, model_id="bench", uses=["ai_training"], as_of=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), default="opt-out"
    )
    manifest_s = time.perf_counter() - t1
    if len(m.excluded) != len(refused) or len(m.included) != works_n - len(refused):
        raise SystemExit(
            f"manifest has {len(m.included)} included and {len(m.excluded)} excluded; expected "
            f"{works_n - len(refused)} and {len(refused)}"
        )
    return {
        "works": works_n,
        "credits": 3 * works_n,
        "people": people_n,
        "excluded": len(m.excluded),
        "import_s": round(import_s, 2),
        "import_works_per_s": round(works_n / import_s),
        "import_peak_rss_mib": round(import_peak),
        "manifest_s": round(manifest_s, 2),
        "manifest_works_per_s": round(works_n / manifest_s),
        "manifest_peak_rss_mib": round(_peak_mib()),
        "merkle_root": m.merkle_root,
    }


def run_bulk(store: Store, folder: Path, works_n: int, people_n: int) -> dict[str, object]:
    import csv
    import hashlib

    from endcredits.interop._common import Window
    from endcredits.interop.collection import import_collection

    (folder / "media").mkdir()
    with (folder / "collection.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            ["content", "kind", "title", "licence", "credit1_name", "credit1_role", "credit2_name", "credit2_role"]
        )
        for i in range(works_n):
            words = hashlib.sha256(str(i).encode()).hexdigest()
            (folder / "media" / f"{i}.txt").write_text(f"{words}\n{words[::-1]}\n", encoding="utf-8")
            w.writerow(
                [f"media/{i}.txt", "text", f"Work {i}", "CC-BY-NC-4.0" if i % 10 == 0 else "",
                 f"Writer {i % people_n}", ROLES[0], f"Player {(i * 7) % people_n}", ROLES[1]]
            )  # fmt: skip
    window = Window.days(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 365)
    t0 = time.perf_counter()
    first = import_collection(store, folder / "collection.csv", window=window)
    first_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    again = import_collection(store, folder / "collection.csv", window=window)
    again_s = time.perf_counter() - t1
    if first.rows_new != works_n or again.rows_present != works_n or first.rows_refused or again.rows_refused:
        raise SystemExit(f"bulk import: {first.summary()} then {again.summary()}")
    return {
        "rows": works_n,
        "credits": first.credits_added,
        "import_s": round(first_s, 2),
        "import_rows_per_s": round(works_n / first_s),
        "reimport_s": round(again_s, 2),
        "reimport_rows_per_s": round(works_n / again_s),
        "peak_rss_mib": round(_peak_mib()),
    }


def run_images(store: Store, limit: int | None, chunk: int) -> dict[str, object]:
    import random

    from _image_pairs import OPENCLIPART_DIR, SEED, corpus_files

    from endcredits.interop.svg import import_svg_drawings

    files = corpus_files()
    if limit is not None:
        files = sorted(random.Random(SEED).sample(files, min(limit, len(files))))
    totals = {"works": 0, "linked": 0, "credits": 0, "refused": 0}
    t0 = time.perf_counter()
    for start in range(0, len(files), chunk):
        report = import_svg_drawings(store, files[start : start + chunk], root=OPENCLIPART_DIR)
        totals["works"] += report.works
        totals["linked"] += report.linked
        totals["credits"] += report.credits
        totals["refused"] += len(report.refused)
    import_s = time.perf_counter() - t0
    return {
        "drawings": len(files),
        **totals,
        "import_s": round(import_s, 2),
        "import_drawings_per_s": round(len(files) / import_s, 1),
        "import_peak_rss_mib": round(_peak_mib()),
    }


def image_rates() -> list[str]:
    """The image fingerprint's rates on the held-out half of the labelled pairs: ``gray64-render-v7`` (an
    SVG rendered again at the copy's resolution, a colour map fitted with the worst window left out, a
    second try rendered finer and reduced), ``gray64-render-v6`` (the same run without the second try) and
    ``gray64-render-v5`` (its correlation alone), then ``gray64-verify256-v4``, ``gray64-verify128-v3`` and
    ``gray64-crop-v2`` beside it."""
    import _image_pairs as pairs
    import _image_rerender as rerender
    import _image_resampled as resampled

    from endcredits.registry.fingerprints import (
        IMAGE_REVIEW_MIN,
        IMAGE_THRESHOLD,
        IMAGE_VERIFY_MIN,
        RENDER_V6_VERIFY_MIN,
        RENDER_VERIFY_MIN,
        VERIFY128_IMAGE_METHOD,
        VERIFY128_MIN,
    )

    if not pairs.CACHE.exists():
        pairs.save(pairs.build(processes=1))
    data = pairs.load()
    scored = pairs.score_half(data, 1)
    before = pairs.score_half(data, 1, VERIFY128_IMAGE_METHOD)
    r = resampled.scores(data, scored)
    copies, distinct = (
        (scored.copy_found, scored.copy_similarity, r.copy),
        (scored.distinct_found, scored.distinct_similarity, r.distinct),
    )
    v7 = tuple(resampled.linked(*x, RENDER_V6_VERIFY_MIN, second=True) for x in (copies, distinct))
    v6 = tuple(resampled.linked(*x, RENDER_V6_VERIFY_MIN, second=False) for x in (copies, distinct))
    v5 = tuple(resampled.linked_v5(*x) for x in (copies, distinct))
    v4 = pairs.verified_v4(data, scored)
    return [
        f"held-out half, gray64-render-v7 (verified from {RENDER_V6_VERIFY_MIN}, rendered again, fitted, finer):",
        *pairs.rate_lines(scored, IMAGE_THRESHOLD, IMAGE_REVIEW_MIN, v7),
        *rerender.miss_lines(data, scored, v7[0], "copies linked"),
        f"held-out half, gray64-render-v6 (verified from {RENDER_V6_VERIFY_MIN}, rendered again, fitted):",
        *pairs.rate_lines(scored, IMAGE_THRESHOLD, IMAGE_REVIEW_MIN, v6),
        *rerender.miss_lines(data, scored, v6[0], "copies linked"),
        f"held-out half, gray64-render-v5 (verified from {RENDER_VERIFY_MIN}, rendered again):",
        *pairs.rate_lines(scored, IMAGE_THRESHOLD, IMAGE_REVIEW_MIN, v5),
        *rerender.miss_lines(data, scored, v5[0], "copies linked"),
        f"held-out half, gray64-verify256-v4 (verified from {IMAGE_VERIFY_MIN}):",
        *pairs.rate_lines(scored, IMAGE_THRESHOLD, IMAGE_REVIEW_MIN, v4),
        *rerender.miss_lines(data, scored, v4[0], "copies linked"),
        f"held-out half, gray64-verify128-v3 (verified from {VERIFY128_MIN}):",
        *pairs.rate_lines(before, IMAGE_THRESHOLD, IMAGE_REVIEW_MIN, pairs.verified(data, before)),
        f"held-out half, gray64-crop-v2 at {IMAGE_THRESHOLD}:",
        *pairs.rate_lines(before, IMAGE_THRESHOLD, IMAGE_REVIEW_MIN),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--works", type=int, default=1_000_000)
    p.add_argument("--people", type=int, default=100_000)
    p.add_argument("--excluded", type=float, default=0.05, help="share of works refused by consent")
    p.add_argument(
        "--works-per-transaction",
        type=int,
        default=CHUNK_WORKS,
        help="works (with their credits) committed per transaction; an import file is one",
    )
    p.add_argument("--bulk", action="store_true", help="time `works import` of a CSV collection instead")
    p.add_argument("--images", action="store_true", help="import the Open Clip Art drawings instead")
    p.add_argument("--images-limit", type=int, default=None, help="a seeded sample of this many drawings")
    p.add_argument("--images-chunk", type=int, default=500, help="drawings per transaction")
    p.add_argument("--no-rates", action="store_true", help="with --images: skip the labelled-pair rates")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not 0 < args.works <= 10_000_000 or not 0 < args.people <= args.works or not 0 <= args.excluded < 1:
        p.error("need 0 < people <= works <= 10,000,000 and 0 <= excluded < 1")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        url = None
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        if args.db == "postgresql":
            admin = create_engine(PG_URL)
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        store = init_store(tmp / "data", url)
        try:
            if args.bulk:
                result = {"db": args.db, "mode": "bulk", **run_bulk(store, tmp, args.works, args.people)}
            elif args.images:
                result = {"db": args.db, **run_images(store, args.images_limit, args.images_chunk)}
            else:
                result = {
                    "db": args.db,
                    "works_per_transaction": args.works_per_transaction,
                    **run(store, args.works, args.people, args.excluded, args.works_per_transaction),
                }
        finally:
            store.dispose()
            if args.db == "postgresql":
                with admin.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
                admin.dispose()
    if args.images and not args.no_rates:
        result["rates"] = image_rates()
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
