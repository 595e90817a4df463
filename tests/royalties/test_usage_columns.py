"""The columnar path (``build_usage_columns``) gives exactly the ``UsageBatch`` of ``build_usage`` on seeded
random batches over a registry with credits, rights holders, lineage and unclaimed works, per work and per
payee, with and without a baseline share; and both accrue to the same ledger, to the microunit."""

from __future__ import annotations

import datetime as dt
import random
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from endcredits.errors import ManifestError, ValidationError
from endcredits.ledger.accrue import accrue
from endcredits.manifest.build import build_manifest
from endcredits.manifest.records import ManifestRecord
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_lineage, add_works, name_ids
from endcredits.royalties import Agreement
from endcredits.royalties.usage import OutputIn, UsageBatch, build_usage
from endcredits.royalties.usage_columns import UsageColumns, build_usage_columns
from endcredits.store.engine import Store
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
