"""The columnar path (``build_usage_columns``) gives exactly the ``UsageBatch`` of ``build_usage`` on seeded
random batches over a registry with credits, rights holders, lineage and unclaimed works, per work and per
payee, with and without a baseline share, and from recorded credit shares as evidence re-derives lines; both
accrue to the same ledger, to the microunit, and re-derive the same evidence lines, to the subunit."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import astuple
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlalchemy import select

from endcredits.attribution.records import RunScores, load_run, new_run, read_run_scores, record_run
from endcredits.attribution.settings import AttributionSettings
from endcredits.errors import EvidenceError, ManifestError, ValidationError
from endcredits.ledger.accrue import ScoreSource, accrue, accrue_scored, line_table
from endcredits.ledger.evidence import kept_per_batch, output_rows, payee_rows, read_evidence, share_rows
from endcredits.ledger.evidence_lines import evidence_lines
from endcredits.manifest.build import build_manifest
from endcredits.manifest.records import ManifestRecord
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_lineage, add_works, name_ids
from endcredits.royalties import Agreement
from endcredits.royalties.records import save_agreement
from endcredits.royalties.shares import PayeeShare
from endcredits.royalties.usage import OutputIn, UsageBatch, build_usage
from endcredits.royalties.usage_columns import UsageColumns, build_usage_columns
from endcredits.store.engine import Store
from endcredits.store.schema import accrual_batches
from helpers_money import EXTERNAL, ROLES, agreement, balances, on_time, people, register_model

WORKS = 14


def _registry(store: Store, rng: random.Random) -> ManifestRecord:
    """Works with random credits (some with weights near WEIGHT_MAX, whose denominators leave int64),
    rights holders, lineage with stated and unstated shares, and a work nobody is credited on."""
    register_model(store)
    ids = people(store, *(f"p{i}" for i in range(6)))
    payees = [f"person:{i}" for i in ids]
    with store.write() as conn:
        payees += [f"name:{n}" for n in name_ids(conn, ["Ann Named", "Bo Named"]).values()]
        works = add_works(
            conn,
            [
                WorkIn(f"work {i}".encode(), f"W{i}", "text", rights_holder=rng.choice([None, *payees[:6]]))
                for i in range(WORKS)
            ],
        )
        credits = [
            CreditIn(
                w,
                rng.choice(payees),
                rng.choice(ROLES),
                rng.choice([1, 2, 3, 7, 1, 2, 10**12 - 11] if w != works[3] else [10**12 - 11]),
            )
            for w in works[1:]
            for _ in range(rng.randint(0, 4))
        ]
        add_credits(conn, list({(c.work_id, c.payee, c.role): c for c in credits}.values()))
        for i in range(2, WORKS):
            if rng.random() < 0.4:
                share = rng.choice([None, Fraction(1, 10), Fraction(3, 7)])
                add_lineage(conn, works[i], works[rng.randrange(1, i)], share)
    return build_manifest(
        store, model_id="m", uses=["commercial"], as_of=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), default="opt-out"
    )


def _batch(rng: random.Random, keys: list[str], outputs: int) -> tuple[list[OutputIn], dict[str, dict[str, float]]]:
    outs, scores = [], {}
    for i in range(outputs):
        oid = f"o{i}"
        outs.append(OutputIn(oid, "m", rng.choice([0, 1, 10**9, rng.randrange(10**12)]), "EUR", on_time(1 + i % 2)))
        picked = rng.sample(keys, rng.randint(0 if i % 5 == 0 else 1, len(keys)))
        scores[oid] = {
            k: rng.choice([rng.random(), rng.random(), -rng.random(), 0.0, 1e-300, 1.7e308, rng.random() * 1e-12])
            for k in picked
        }
    return outs, scores


def _same(a: UsageBatch, b: UsageBatch) -> None:
    for name in ("output_ids", "model_ids", "revenue_microunits", "currencies", "occurred_at", "payees", "works"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.roles == b.roles
    for name in ("offsets", "payee_codes", "attributed_codes", "source_codes", "role_codes"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.weights.dtype == b.weights.dtype and a.weights.tolist() == b.weights.tolist()
    assert a.content_sha256() == b.content_sha256()


def _agreements(rng: random.Random) -> list[Agreement]:
    return [
        agreement(),
        agreement(rights_holder_share="0.3", lineage_pass_through="0.35", baseline_share="0.1"),
        agreement(
            rights_holder_share=str(Fraction(rng.randrange(1, 99), 100)),
            role_weights={r: rng.randrange(1, 9) for r in ROLES},
        ),
    ]


def _both(store: Store, outs: Any, scores: Any, ag: Agreement, manifest: Any, per: str) -> tuple[Any, Any]:
    cols = UsageColumns.of_scores(outs, scores)
    got: list[Any] = []
    with store.read() as conn:
        for build in (lambda: build_usage(conn, outs, scores, ag, manifest, per=per),
                      lambda: build_usage_columns(conn, cols, ag, manifest, per=per)):  # fmt: skip
            try:
                got.append(build())
            except (ValidationError, ManifestError) as exc:
                got.append(type(exc))
    return got[0], got[1]


def test_columns_build_exactly_the_lines_of_build_usage(store: Store) -> None:
    rng = random.Random(18)
    manifest = _registry(store, rng)
    works = list(manifest.included)
    payees = sorted({f"person:{i}" for i in range(1, 7)} | {"name:1", "name:2"})
    compared = 0
    for trial in range(24):
        ag = _agreements(rng)[trial % 3]
        per = "work" if trial % 2 == 0 else "payee"
        outs, scores = _batch(rng, works if per == "work" else payees, rng.randint(1, 30))
        want, got = _both(store, outs, scores, ag, manifest, per)
        if isinstance(want, UsageBatch):
            _same(want, got)
            compared += 1
        else:
            assert want is got
    assert compared >= 12


def test_both_paths_accrue_the_same_ledger(tmp_path: Any, store: Store) -> None:
    rng = random.Random(7)
    manifest = _registry(store, rng)
    ag = agreement(lineage_pass_through="0.35")
    outs, scores = _batch(rng, list(manifest.included), 40)
    scores = {o: s | {manifest.included[0]: 0.5} for o, s in scores.items()}
    with store.read() as conn:
        usage = build_usage_columns(conn, UsageColumns.of_scores(outs, scores), ag, manifest, per="work")
        reference = build_usage(conn, outs, scores, ag, manifest)
    _same(reference, usage)
    summary = accrue(store, usage, ag, event_id="cols-1", source=EXTERNAL)
    assert summary.status == "created" and balances(store)
    again = accrue(store, reference, ag, event_id="cols-1", source=EXTERNAL)
    assert again.status == "exists" and again.pool_microunits == summary.pool_microunits


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        ({"o0": {"w": float("nan")}}, "not a finite number"),
        ({"o0": {}}, "no positive attribution"),
    ],
)
def test_columns_refuse_what_build_usage_refuses(store: Store, scores: Any, message: str) -> None:
    outs = [OutputIn("o0", "m", 100, "EUR", on_time(1))]
    cols = UsageColumns.of_scores(outs, {k: {f"person:{i}": v for i, v in enumerate(s.values(), 1)}
                                         for k, s in scores.items()})  # fmt: skip
    with store.read() as conn, pytest.raises(ValidationError, match=message):
        build_usage_columns(conn, cols, agreement(), None, per="payee")


def test_a_key_twice_in_one_output_is_refused(store: Store) -> None:
    cols = UsageColumns(
        ["o0"], ["m"], [100], ["EUR"], [on_time(1)],
        np.asarray([0, 2]), ["person:1"], np.asarray([0, 0]), np.asarray([0.5, 0.5]),
    )  # fmt: skip
    with store.read() as conn, pytest.raises(ValidationError, match="scores person:1 twice"):
        build_usage_columns(conn, cols, agreement(), None, per="payee")


def test_recorded_shares_build_exactly_the_lines_of_build_usage(store: Store) -> None:
    """Evidence re-derives lines from each work's recorded shares: both paths, given the same shares (those
    accrual recorded, near-int64 denominators included), make the same batch and split it to the subunit."""
    rng = random.Random(29)
    manifest = _registry(store, rng)
    compared = 0
    for trial in range(12):
        ag = _agreements(rng)[trial % 3]
        outs, scores = _batch(rng, list(manifest.included), rng.randint(1, 30))
        with store.read() as conn:
            try:
                shares = build_usage(conn, outs, scores, ag, manifest).shares
            except ValidationError:
                continue
            assert shares is not None
            want = build_usage(conn, outs, scores, ag, manifest, shares=shares)
            got = build_usage_columns(conn, UsageColumns.of_scores(outs, scores), ag, manifest, per="work",
                                      shares=shares)  # fmt: skip
        _same(want, got)
        assert got.shares == want.shares == shares
        accounts = {p: f"acct:{p}" for p in want.payees}
        assert line_table("b", got, ag, accounts).equals(line_table("b", want, ag, accounts))
        compared += 1
        if len(shares) > 1:  # a work the lines need whose shares were not recorded: the evidence is incomplete
            short = dict(list(shares.items())[1:])
            with store.read() as conn, pytest.raises(EvidenceError, match="lack work"):
                build_usage_columns(conn, UsageColumns.of_scores(outs, scores), ag, manifest, per="work",
                                    shares=short)  # fmt: skip
    assert compared >= 8


def test_rederived_lines_are_those_of_the_exact_path(store: Store) -> None:
    """Batches accrued on a recorded run (evidence kept per batch; the run scores two works twice, the last
    score counting): every line ``evidence_lines`` re-derives, and those of a few outputs, equal the lines
    ``build_usage`` makes from the same run and recorded shares."""
    rng = random.Random(31)
    manifest = _registry(store, rng)
    ag = agreement(lineage_pass_through="0.35", payout_threshold="0.01")
    with store.write() as conn:
        save_agreement(conn, ag.id, ag.version, ag.body, ag.body_sha256)
    for trial in range(3):
        outs, scores = _batch(rng, list(manifest.included), rng.randint(5, 25))
        outs = [OutputIn(f"t{trial}-{o.output_id}", *astuple(o)[1:]) for o in outs]
        scores = {f"t{trial}-{k}": v for k, v in scores.items()}
        run = _record_run(store, manifest, scores, rng)
        batch = f"run-{trial}"
        accrue_scored(store, outs, None, source=ScoreSource.run(run.id), per=None, agreement_id=ag.id,
                      batch_id=batch, manifest_id=manifest.id)  # fmt: skip
        want = pa.concat_tables(_exact_lines_of(store, batch, outs, ag, manifest))
        assert evidence_lines(store, batch).to_pylist() == want.to_pylist()
        some = {o.output_id for o in rng.sample(outs, 3)}
        picked = evidence_lines(store, batch, some)
        assert picked.num_rows and set(picked["output_id"].to_pylist()) == some
        assert sorted(picked.to_pylist(), key=str) == sorted(
            want.filter(pc.is_in(want["output_id"].cast(pa.string()), pa.array(sorted(some)))).to_pylist(), key=str
        )


def _exact_lines_of(store: Store, batch: str, outs: list[OutputIn], ag: Agreement, manifest: Any) -> list[pa.Table]:
    """Each group's lines of ``batch`` made by ``build_usage`` from its run's scores and its recorded shares."""
    out: list[pa.Table] = []
    with store.read() as conn:
        query = select(accrual_batches).where(accrual_batches.c.batch_event_id == batch)
        for group in conn.execute(query.order_by(accrual_batches.c.event_id)).all():
            table = read_evidence(store.data_dir / group.evidence_path)
            assert kept_per_batch(table)
            shares = {w: [PayeeShare(*s) for s in got] for w, got in share_rows(table).items()}
            scores = read_run_scores(store.data_dir, load_run(conn, group.scores_run_id))
            rows = output_rows(table)  # the outputs as accrued: times normalized
            columns = (rows[c].to_pylist() for c in ("output_id", "model_id", "revenue_microunits", "occurred_at"))
            group_outs = [OutputIn(o, m, r, "EUR", t) for o, m, r, t in zip(*columns, strict=True)]
            assert {o.output_id for o in group_outs} <= {o.output_id for o in outs}
            ids = [o.output_id for o in group_outs]
            usage = build_usage(conn, group_outs, scores.for_outputs(ids), ag, manifest, shares=shares)
            accounts = dict(zip(*(payee_rows(table)[c].to_pylist() for c in ("payee", "account")), strict=True))
            out.append(line_table(group.batch_event_id, usage, ag, accounts))
    return out


def _record_run(store: Store, manifest: Any, scores: dict[str, dict[str, float]], rng: random.Random) -> Any:
    """A recorded run of ``scores`` over every work of ``manifest``, then two of them again with other scores."""
    works = list(manifest.included)
    keys = works + works[:2]
    matrix = np.array([[scores[o].get(w, rng.random()) for w in keys] for o in scores], dtype=np.float64)
    matrix[:, len(works) :] = rng.random()
    run_scores = RunScores.of_matrix("work", list(scores), keys, matrix)
    run = new_run(manifest, run_scores, checkpoint_sha256s=["c" * 64], method="trak", weaker=False,
                  settings=AttributionSettings(k=64))  # fmt: skip
    return record_run(store, run, run_scores)[0]
