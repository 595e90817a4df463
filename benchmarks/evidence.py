"""Evidence bytes per output, kept line by line, per output and payee, and per batch, on a demo-shaped batch.

    python benchmarks/evidence.py --outputs 200 --works 900 --people 300 --json

``--works`` works, each credited to three people drawn from ``--people`` (composer, transcriber,
collector, as the ABC demo credits its tunes), one manifest, and ``--outputs`` outputs scored over every
work (a positive score each: every output pays every work, as the demo's about 2,700 lines per output
do), in one batch. The same scores are accrued twice into fresh stores: marked external (every line kept)
and from a recorded attribution run (kept per batch: each output's pool, each payee's total and the
recorded shares; lines re-derived on demand). The run's lines, re-derived, are also written the way
evidence was kept per output and payee (a row per output and payee plus the shares), by the same writer,
so the three layouts are measured on the same lines. Prints lines and rows per output, evidence bytes per
output and per day at 10^9 outputs, and the time to re-derive one output's lines and to run ``verify``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from endcredits.attribution.records import RunScores, new_run, record_run
from endcredits.attribution.settings import AttributionSettings
from endcredits.ledger.accrue import ScoreSource, accrue_scored
from endcredits.ledger.evidence import per_payee_table, read_evidence, share_rows, write_evidence
from endcredits.ledger.evidence_lines import evidence_lines
from endcredits.ledger.verify import verify
from endcredits.manifest.build import build_manifest
from endcredits.manifest.records import add_model
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_person, add_works
from endcredits.royalties import parse_agreement
from endcredits.royalties.records import save_agreement
from endcredits.royalties.usage import OutputIn
from endcredits.store.engine import Store, init_store

AGREEMENT = """\
id = "bench-evidence"
version = 1
currency = "EUR"
pool_rate = "0.30"
rights_holder_share = "0.25"
lineage_pass_through = "0.20"
baseline_share = "0"
payout_threshold = "0.50"
escrow_period_days = 1095
negative_influence = "zero"

[role_weights]
"endcredits:composer" = 3
"endcredits:transcriber" = 1
"endcredits:collector" = 1
"""
ROLES = ("endcredits:composer", "endcredits:transcriber", "endcredits:collector")


def _world(data_dir: Path, works_n: int, people_n: int) -> tuple[Store, Any, list[str]]:
    store = init_store(data_dir, None)
    ag = parse_agreement(AGREEMENT)
    rng = random.Random(7)
    with store.write() as conn:
        save_agreement(conn, ag.id, ag.version, ag.body, ag.body_sha256)
        add_model(conn, "bench-model", ["commercial"], "benchmark")
        people = [add_person(conn, f"p{i}") for i in range(people_n)]
        work_ids = add_works(conn, [WorkIn(f"tune {i}".encode(), f"Tune {i}", "text") for i in range(works_n)])
        add_credits(
            conn,
            [
                CreditIn(w, f"person:{p}", role, 1)
                for w in work_ids
                for p, role in zip(rng.sample(people, 3), ROLES, strict=True)
            ],
        )
    manifest = build_manifest(
        store, model_id="bench-model", uses=["commercial"], as_of=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        default="opt-out",
    )  # fmt: skip
    return store, manifest, work_ids


def _accrue(data_dir: Path, args: argparse.Namespace, by_run: bool) -> list[dict[str, Any]]:
    store, manifest, work_ids = _world(data_dir, args.works, args.people)
    outs = [OutputIn(f"out-{i:05d}", "bench-model", 10_000_000 + 1_000_003 * i, "EUR", "2026-11-02T12:00:00Z")
            for i in range(args.outputs)]  # fmt: skip
    matrix = np.random.default_rng(11).random((args.outputs, len(work_ids))) + 1e-3
    kw: dict[str, Any] = {"agreement_id": "bench-evidence", "batch_id": "bench-1", "manifest_id": manifest.id}
    if by_run:
        run_scores = RunScores.of_matrix("work", [o.output_id for o in outs], work_ids, matrix)
        run = new_run(manifest, run_scores, checkpoint_sha256s=["c" * 64], method="trak", weaker=False,
                      settings=AttributionSettings(k=64))  # fmt: skip
        run_id = record_run(store, run, run_scores)[0].id
        summary = accrue_scored(store, outs, None, source=ScoreSource.run(run_id), per=None, **kw)
    else:
        scores = {o.output_id: dict(zip(work_ids, row.tolist(), strict=True)) for o, row in zip(outs, matrix)}
        summary = accrue_scored(store, outs, scores, source=ScoreSource.external("bench"), per="work", **kw)
    files = list((store.data_dir / "evidence").rglob("*.parquet"))
    t0 = time.perf_counter()
    one = evidence_lines(store, "bench-1", {outs[0].output_id})
    rederive_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ok = verify(store).ok
    verify_s = round(time.perf_counter() - t0, 2)
    found = [(files, "per batch (run)" if by_run else "lines (external)")]
    if by_run:  # the same lines, kept as they were before evidence was kept per batch
        per_payee = data_dir / "per-output-and-payee.parquet"
        shares = share_rows(read_evidence(files[0]))
        write_evidence(per_payee, per_payee_table(evidence_lines(store, "bench-1"), shares))
        found.insert(0, ([per_payee], "per output and payee (run)"))
    return [
        {
            "layout": layout,
            "lines_per_output": summary.lines / args.outputs,
            "rows_per_output": sum(read_evidence(f).num_rows for f in kept) / args.outputs,
            "bytes_per_output": sum(f.stat().st_size for f in kept) / args.outputs,
            "tb_per_day_at_1e9_outputs": sum(f.stat().st_size for f in kept) / args.outputs * 1e9 / 1e12,
            "one_output_lines_s": round(rederive_s, 3) if kept is files else None,
            "one_output_lines": one.num_rows,
            "verify_s": verify_s if kept is files else None,
            "verify_ok": ok if kept is files else None,
        }
        for kept, layout in found
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, default=200)
    parser.add_argument("--works", type=int, default=900)
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for by_run in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            results += _accrue(Path(tmp) / "data", args, by_run)
    print(json.dumps(results, indent=2) if args.json else "\n".join(map(str, results)))


if __name__ == "__main__":
    main()
