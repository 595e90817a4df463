"""A statement of about 20,000 lines: how long it takes to build, to export, and to open in the portal.

    python benchmarks/statements.py --outputs 80 --works 400 --json

One person is credited (composer) on ``--works`` image works, which another person is credited on as well
(performer), so each output's pool is shared. ``--outputs`` outputs of one model, each an image whose
content the operator supplied, are scored over every work (external scores, or with ``--scores run`` a
recorded attribution run of the same scores, whose evidence is kept per batch) and accrued in one batch: the
person's statement for the month has outputs x works lines. Timed, warm, median of ``--repeat`` runs:
``build_statement``; the CSV and JSON exports; the portal's statement page (first and last page) through
the app, signed in as the person; and one output thumbnail (the first request makes it, later ones read it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from endcredits.attribution.records import RunScores, new_run, record_run
from endcredits.attribution.settings import AttributionSettings
from endcredits.ledger.accrue import ScoreSource, accrue_scored
from endcredits.manifest.build import build_manifest
from endcredits.manifest.records import add_model
from endcredits.payouts.statements import build_statement
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_person, add_works, verify_person
from endcredits.royalties import parse_agreement
from endcredits.royalties.output_contents import record_output_contents
from endcredits.royalties.records import save_agreement
from endcredits.royalties.usage import OutputIn
from endcredits.service import create_app
from endcredits.service.auth import create_login_link
from endcredits.store.blobs import put_blob
from endcredits.store.engine import Store, init_store

AGREEMENT = """id = "bench-statements"
version = 1
currency = "EUR"
pool_rate = "0.30"
rights_holder_share = "0"
lineage_pass_through = "0"
payout_threshold = "10.00"
escrow_period_days = 1095
[role_weights]
"endcredits:composer" = 2
"endcredits:performer" = 1
"""


def _png(seed: int, side: int) -> bytes:
    from PIL import Image

    im = Image.new("RGB", (side, side), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    for x in range(0, side, 8):
        im.putpixel((x, (x + seed) % side), (255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def build_world(data_dir: Path, outputs_n: int, works_n: int, by_run: bool = False) -> tuple[Store, int]:
    """The store with the accrued batch; returns it and the person whose statement is measured."""
    store = init_store(data_dir, None)
    ag = parse_agreement(AGREEMENT)
    items = [WorkIn(_png(i, 64), f"Plate {i:04d}", "image") for i in range(works_n)]
    for w in items:
        put_blob(store.data_dir, w.content)
    with store.write() as conn:
        save_agreement(conn, ag.id, ag.version, ag.body, ag.body_sha256)
        add_model(conn, "bench-model", ["commercial"], "benchmark")
        person = add_person(conn, "composer")
        other = add_person(conn, "performer")
        for pid in (person, other):
            verify_person(conn, pid, verified_by="bench")
        work_ids = add_works(conn, items)
        add_credits(
            conn,
            [CreditIn(w, f"person:{person}", "endcredits:composer", 1) for w in work_ids]
            + [CreditIn(w, f"person:{other}", "endcredits:performer", 1) for w in work_ids],
        )
    manifest = build_manifest(
        store, model_id="bench-model", uses=["commercial"], as_of=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        default="opt-out",
    )  # fmt: skip
    outs = [
        OutputIn(
            f"out-{i:05d}", "bench-model", 10_000_000 + 1_000_003 * i, "EUR", f"2026-11-{1 + i % 28:02d}T12:00:00Z"
        )
        for i in range(outputs_n)
    ]
    scores = {o.output_id: {w: float(1 + (i * 7 + j * 13) % 97) for j, w in enumerate(work_ids)} for i, o in
              enumerate(outs)}  # fmt: skip
    kw: dict[str, Any] = {"agreement_id": ag.id, "batch_id": "bench-1", "manifest_id": manifest.id}
    if by_run:  # recorded: the evidence is kept per batch and the statement re-derives the batch's lines
        ids = [o.output_id for o in outs]
        run_scores = RunScores.of_matrix(
            "work", ids, work_ids, np.array([[scores[o][w] for w in work_ids] for o in ids])
        )
        run = new_run(manifest, run_scores, checkpoint_sha256s=["c" * 64], method="trak", weaker=False,
                      settings=AttributionSettings(k=64))  # fmt: skip
        run_id = record_run(store, run, run_scores)[0].id
        accrue_scored(store, outs, None, source=ScoreSource.run(run_id), per=None, **kw)
    else:
        accrue_scored(store, outs, scores, source=ScoreSource.external("benchmark scores"), per="work", **kw)
    record_output_contents(store, [(o.output_id, _png(1000 + i, 256)) for i, o in enumerate(outs)])
    return store, person


def _median(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float]]:
    fn()  # warm
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=int, default=80)
    parser.add_argument("--works", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--scores",
        choices=("external", "run"),
        default="external",
        help="accrue on external scores (every evidence line kept) or on a recorded run of the same scores "
        "(evidence kept per batch, lines re-derived for the statement)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store, person = build_world(Path(tmp) / "data", args.outputs, args.works, args.scores == "run")
        setup_s = time.perf_counter() - t0
        st = build_statement(store, person, "2026-11", "EUR")
        if not st.reconciles():
            raise SystemExit("the statement does not reconcile")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
            from fastapi.testclient import TestClient

        with store.write() as conn:
            token = create_login_link(conn, person, created_by="bench").token
        with TestClient(create_app(store)) as client:
            client.get("/portal/login", params={"token": token})
            pages = -(-args.outputs // 20)
            base = f"/portal/people/{person}/statements/2026-11"

            def page(n: int) -> Callable[[], Any]:
                def get() -> Any:
                    r = client.get(base, params={"currency": "EUR", "page": n})
                    if r.status_code != 200:
                        raise SystemExit(f"page {n}: {r.status_code} {r.text[:300]}")
                    return r

                return get

            html = page(1)().text
            thumb = html.split('class="thumb" src="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
            t0 = time.perf_counter()
            first = client.get(thumb)
            thumb_cold_s = time.perf_counter() - t0
            if first.status_code != 200 or not first.content.startswith(b"\x89PNG"):
                raise SystemExit(f"thumbnail: {first.status_code}")
            figures = {
                "scores": args.scores,
                "lines": len(st.lines),
                "outputs": args.outputs,
                "setup_s": round(setup_s, 2),
                "build_statement_s": _median(lambda: build_statement(store, person, "2026-11", "EUR"), args.repeat),
                "csv_s": _median(st.to_csv, args.repeat),
                "json_s": _median(st.to_json, args.repeat),
                "page_first_s": _median(page(1), args.repeat),
                "page_last_s": _median(page(pages), args.repeat),
                "csv_download_s": _median(lambda: client.get(base + ".csv"), args.repeat),
                "thumbnail_cold_s": thumb_cold_s,
                "thumbnail_warm_s": _median(lambda: client.get(thumb), args.repeat),
                "page_bytes": len(html),
                "thumbnail_bytes": len(first.content),
            }
        store.dispose()
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for k, v in figures.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
