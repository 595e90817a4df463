"""Exact shares through credits and lineage: they sum to one on any credit graph, follow a supply
chain to the person at its start, hold money for uncredited works, and refuse lineage cycles."""

from __future__ import annotations

import datetime as dt
import sys
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endcredits.errors import ConflictError, ManifestError, ValidationError
from endcredits.ledger.accrue import accrue
from endcredits.ledger.verify import verify
from endcredits.manifest.build import build_manifest
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_lineage, add_works, name_ids
from endcredits.royalties import CreditGraph, parse_agreement, pool_of, work_shares
from endcredits.royalties.shares import (
    RIGHTS_HOLDER_ROLE,
    UNCLAIMED_WORK_ROLE,
    CreditEntry,
    attribution_weights,
    payee_volumes,
)
from endcredits.royalties.usage import OutputIn, build_usage, load_credit_graph
from endcredits.store.engine import Store
from helpers_money import EXTERNAL, ROLES, World, agreement, agreement_text, balances, on_time, people, row_counts

PAYEES = ("person:1", "person:2", "name:3", "name:4")
ROLE_WEIGHTS = {ROLES[0]: 3, ROLES[1]: 1, ROLES[2]: 5, ROLES[3]: 2}


# Property: any small credit graph ------------------------------------------------------------------
@st.composite
def credit_graphs(draw: st.DrawFn) -> tuple[CreditGraph, str, str, str]:
    """A DAG of 1..6 works (parents have smaller indices), the agreement's two shares, and the work to pay."""
    n = draw(st.integers(1, 6))
    works = [f"w{i}" for i in range(n)]
    rights_share = draw(st.sampled_from(["0", "1/4", "1/3", "1"]))
    pass_through = draw(st.sampled_from(["0", "1/5", "1/2"]))
    credits: dict[str, list[CreditEntry]] = {}
    holders: dict[str, str] = {}
    parents: dict[str, list[tuple[str, Fraction | None]]] = {}
    for i, w in enumerate(works):
        pairs = draw(st.lists(st.tuples(st.sampled_from(PAYEES), st.sampled_from(ROLES)), max_size=3, unique=True))
        if pairs:
            credits[w] = [CreditEntry(p, r, draw(st.integers(1, 7))) for p, r in pairs]
        if draw(st.booleans()):
            holders[w] = draw(st.sampled_from(PAYEES))
        ups = draw(st.lists(st.sampled_from(works[:i]), max_size=3, unique=True)) if i else []
        room = Fraction(1) - Fraction(pass_through)  # what stated shares may take beside the default
        edges: list[tuple[str, Fraction | None]] = []
        for p in ups:
            if draw(st.booleans()):
                edges.append((p, None))
            else:
                share = min(room, Fraction(draw(st.integers(0, 10)), 10))
                room -= share
                edges.append((p, share))
        if edges:
            parents[w] = edges
    return CreditGraph(credits, holders, parents), works[-1], rights_share, pass_through


def _mass_by_source(graph: CreditGraph, root: str, pass_through: Fraction) -> dict[str, Fraction]:
    """Independently: how much of one unit of ``root`` each work keeps for its own payees."""
    mass: dict[str, Fraction] = {root: Fraction(1)}
    kept: dict[str, Fraction] = {}
    for i in range(int(root[1:]), -1, -1):  # children before parents
        w = f"w{i}"
        m = mass.get(w, Fraction(0))
        if not m:
            continue
        edges = graph.parents.get(w, [])
        unstated = sum(1 for _, s in edges if s is None)
        passed = Fraction(0)
        for p, s in edges:
            part = s if s is not None else pass_through / unstated
            mass[p] = mass.get(p, Fraction(0)) + m * part
            passed += part
        kept[w] = m * (1 - passed)
    return {w: v for w, v in kept.items() if v}


@settings(max_examples=100, deadline=None)
@given(credit_graphs())
def test_work_shares_sum_to_exactly_one_and_follow_the_graph(case: tuple[CreditGraph, str, str, str]) -> None:
    graph, root, rights_share, pass_through = case
    ag = agreement(rights_holder_share=rights_share, lineage_pass_through=pass_through, role_weights=ROLE_WEIGHTS)
    shares = work_shares(root, graph, ag)
    assert sum(s.share for s in shares) == 1
    assert all(s.share > 0 for s in shares)
    assert work_shares(root, graph, ag, memo={}) == shares  # memoised or not, the same
    # Each source work keeps exactly what reaches it minus what it passes up.
    kept = _mass_by_source(graph, root, Fraction(pass_through))
    by_source: dict[str, Fraction] = {}
    for s in shares:
        by_source[s.source_work] = by_source.get(s.source_work, Fraction(0)) + s.share
    assert by_source == kept
    # Within a work: the rights holder's share, then credits by role weight x credit weight.
    for w, portion in kept.items():
        mine = [s for s in shares if s.source_work == w]
        credits = graph.credits.get(w, [])
        holder = graph.rights_holders.get(w)
        if not credits and holder is None:
            assert [(s.payee, s.role, s.share) for s in mine] == [(f"work:{w}", UNCLAIMED_WORK_ROLE, portion)]
            continue
        holder_part = portion if not credits else (portion * Fraction(rights_share) if holder else Fraction(0))
        assert sum((s.share for s in mine if s.role == RIGHTS_HOLDER_ROLE), Fraction(0)) == holder_part
        total_weight = sum(ROLE_WEIGHTS[c.role] * c.weight for c in credits)
        for c in credits:
            expected = (portion - holder_part) * ROLE_WEIGHTS[c.role] * c.weight / total_weight
            got = sum((s.share for s in mine if s.payee == c.payee and s.role == c.role), Fraction(0))
            assert got == expected


def test_passing_more_than_the_whole_upstream_is_refused() -> None:
    graph = CreditGraph(parents={"w1": [("w0", Fraction(9, 10)), ("w2", None)]})
    with pytest.raises(ValidationError, match="work w1 passes 11/10 of its residual upstream, more than the whole"):
        work_shares("w1", graph, agreement(lineage_pass_through="0.2"))


# A supply chain on the store --------------------------------------------------------------------------
def test_a_three_hop_supply_chain_pays_the_scan_subject_for_the_film(store: Store) -> None:
    """body scan -> digital double -> film; the scan subject earns 3/10 x 1/2 x 3/4 x 3/4 = 27/320 of the film."""
    subject, tech, double_artist, actor = people(store, "scan-subject", "scan-tech", "double-artist", "actor")
    with store.write() as conn:
        studio = name_ids(conn, ["Scan Studio Ltd"])["Scan Studio Ltd"]
        scan, double, film = add_works(
            conn,
            [
                WorkIn(b"scan", "Body scan", "scan", rights_holder=f"name:{studio}"),
                WorkIn(b"double", "Digital double", "model"),
                WorkIn(b"film", "The Film", "video"),
            ],
        )
        add_credits(
            conn,
            [
                CreditIn(scan, f"person:{subject}", "endcredits:scan_subject", 1),
                CreditIn(scan, f"person:{tech}", "endcredits:vfx", 1),
                CreditIn(double, f"person:{double_artist}", "endcredits:vfx", 1),
                CreditIn(film, f"person:{actor}", "endcredits:performer", 1),
            ],
        )
        add_lineage(conn, double, scan, Fraction(1, 2))
        add_lineage(conn, film, double, Fraction(3, 10))
    ag = agreement(
        pool_rate="1/2",
        rights_holder_share="1/4",
        role_weights={"endcredits:scan_subject": 3, "endcredits:vfx": 1, "endcredits:performer": 2},
    )
    expected = Fraction(3, 10) * Fraction(1, 2) * Fraction(3, 4) * Fraction(3, 4)
    with store.read() as conn:
        shares = work_shares(film, load_credit_graph(conn, [film]), ag)
    by_payee = {(s.payee, s.source_work): s.share for s in shares}
    assert by_payee == {
        (f"person:{actor}", film): Fraction(7, 10),
        (f"person:{double_artist}", double): Fraction(3, 10) * Fraction(1, 2),
        (f"name:{studio}", scan): Fraction(3, 10) * Fraction(1, 2) * Fraction(1, 4),
        (f"person:{subject}", scan): expected,
        (f"person:{tech}", scan): Fraction(3, 10) * Fraction(1, 2) * Fraction(3, 4) * Fraction(1, 4),
    }
    assert expected == Fraction(27, 320)
    # Through the manifest and the ledger: 320 microunits of pool pay the subject exactly 27.
    manifest = build_manifest(
        store, model_id="m", uses=["commercial"], as_of=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), default="opt-out"
    )
    revenue = 2 * 320 * 10**6
    with store.read() as conn:
        batch = build_usage(
            conn, [OutputIn("frame-1", "m", revenue, "EUR", on_time(2))], {"frame-1": {film: 1.0}}, ag, manifest
        )
    accrue(store, batch, ag, event_id="b1", source=EXTERNAL)
    pool = pool_of(revenue, ag)
    b = balances(store)
    assert b[f"payable:person:{subject}:EUR"] == pool * expected == 27 * 10**6
    assert b[f"escrow:name:{studio}:EUR"] == pool * Fraction(3, 80)
    assert b["pool:EUR"] == -pool and "suspense:EUR" not in b
    assert verify(store).ok


def test_a_work_nobody_is_credited_on_is_held_in_escrow_for_the_work(store: Store) -> None:
    w = World(store)
    ag = agreement(pool_rate="0.5")
    s = accrue(
        store, w.usage([("o1", 2_000_000_001, on_time(3), {w.orphan: 1.0})], ag), ag, event_id="b1", source=EXTERNAL
    )
    assert s.escrow_microunits == s.pool_microunits == 1_000_000_000 and s.posted_microunits == 0
    assert balances(store) == {"pool:EUR": -1_000_000_000, f"escrow:work:{w.orphan}:EUR": 1_000_000_000}


def test_lineage_cycles_and_overcommitted_shares_are_refused(store: Store) -> None:
    with store.write() as conn:
        a, b, c = add_works(conn, [WorkIn(b"a", "A", "text"), WorkIn(b"b", "B", "text"), WorkIn(b"c", "C", "text")])
        add_lineage(conn, b, a, Fraction(1, 2))  # b derives from a
        add_lineage(conn, c, b, None)  # c derives from b
    before = row_counts(store)
    cases = [
        ((a, c, None), ValidationError, f"lineage {a} <- {c} would make a cycle"),
        ((b, c, Fraction(1, 10)), ValidationError, f"lineage {b} <- {c} would make a cycle"),
        ((a, a, None), ValidationError, "a work cannot derive from itself"),
        ((b, c, Fraction(3, 2)), ValidationError, "lineage share 3/2 must be between 0 and 1"),
    ]
    for (child, parent, share), error, message in cases:
        with pytest.raises(error, match=message), store.write() as conn:
            add_lineage(conn, child, parent, share)
    with pytest.raises(ConflictError, match=f"lineage {b} <- {a} already exists"), store.write() as conn:
        add_lineage(conn, b, a, Fraction(1, 2))
    with store.write() as conn:
        add_lineage(conn, c, a, Fraction(1, 2))
    with (
        pytest.raises(ValidationError, match=f"work {c} would pass 11/10 upstream, more than the whole"),
        store.write() as conn,
    ):
        d = add_works(conn, [WorkIn(b"d", "D", "text")])[0]
        add_lineage(conn, c, d, Fraction(6, 10))
    after = row_counts(store)
    assert after["lineage"] == before["lineage"] + 1 and after["works"] == before["works"]


def test_a_baseline_share_pays_per_payee_by_credited_volume(store: Store) -> None:
    w = World(store)
    ag = parse_agreement(
        agreement_text(pool_rate="0.5").replace("[role_weights]", 'baseline_share = "0.25"\n[role_weights]')
    )
    scores = {"o1": {f"person:{w.alice}": 3.0, f"person:{w.dan}": -1.0}}
    with store.read() as conn:
        with pytest.raises(ManifestError, match="baseline share with attribution per payee needs the model's manifest"):
            build_usage(conn, [OutputIn("o1", "m", 10**9, "EUR", on_time(3))], scores, ag, None, per="payee")
        batch = build_usage(conn, [OutputIn("o1", "m", 10**9, "EUR", on_time(3))], scores, ag, w.manifest, per="payee")
        volumes = payee_volumes(w.manifest.included, load_credit_graph(conn, w.manifest.included), ag)
    # Every work of the manifest counts 1, split as its residual is: the volumes add up to the works.
    assert sum(volumes.values()) == len(w.manifest.included)
    scale = 1 << 32
    expected = {p: int(scale * Fraction(1, 4) * v / sum(volumes.values())) for p, v in volumes.items()}
    expected[f"person:{w.alice}"] += int(scale * Fraction(3, 4))  # all the positive influence; dan's is negative
    got = {batch.payees[c]: int(wt) for c, wt in zip(batch.payee_codes.tolist(), batch.weights.tolist())}
    assert got == {p: v for p, v in expected.items() if v > 0}
    assert got[f"person:{w.dan}"] == expected[f"person:{w.dan}"] > 0  # paid by volume only


def test_attribution_weights_take_a_volume_per_key_or_a_list_of_equal_ones() -> None:
    ag = parse_agreement(agreement_text().replace("[role_weights]", 'baseline_share = "0.5"\n[role_weights]'))
    assert attribution_weights({"a": 1.0}, ag, ["a", "b"]) == attribution_weights({"a": 1.0}, ag, {"a": 1, "b": 1})
    weights = attribution_weights({"a": -2.0}, ag, {"a": Fraction(1, 3), "b": Fraction(2, 3)})
    assert weights == {"a": (1 << 31) // 3, "b": (1 << 32) // 3}
    with pytest.raises(ValidationError, match="baseline volumes must be >= 0"):
        attribution_weights({"a": 1.0}, ag, {"a": -1})


# Scores become weights exactly, for any finite float ------------------------------------------------
FLOAT_MAX = sys.float_info.max
SUBNORMAL_MIN = 5e-324


def exact_weights(scores: dict[str, float], scale: int = 1 << 32) -> dict[str, int]:
    """The rule, in Fractions (a float is an exact binary fraction): floor(scale * s / sum of positives)."""
    positive = {k: Fraction(v) for k, v in scores.items() if v > 0}
    total = sum(positive.values(), Fraction(0))
    weights = {k: int(scale * v / total) for k, v in positive.items()}
    return {k: w for k, w in weights.items() if w > 0}


@pytest.mark.parametrize(
    "scores",
    [
        {"a": 1.7e308, "b": 1.7e308},
        {"a": 1.7e308, "b": 1.7e308, "c": -1.7e308},
        {"a": FLOAT_MAX, "b": FLOAT_MAX, "c": FLOAT_MAX},
        {"a": FLOAT_MAX, "b": 1.0, "c": SUBNORMAL_MIN},
        {"a": SUBNORMAL_MIN, "b": SUBNORMAL_MIN * 3},
        {"a": 2.2250738585072014e-308, "b": SUBNORMAL_MIN, "c": 1e-310},
        {"a": 1.7e308, "b": 0.5e308, "c": 1e-300, "d": -FLOAT_MAX},
        {"a": 0.1, "b": 0.2, "c": 0.3},
        {"a": 1.0},
    ],
    ids=str,
)
def test_scores_become_weights_exactly_without_overflow(scores: dict[str, float]) -> None:
    """1.7e308 + 1.7e308 overflowed to inf, every weight became 0 and the money was spread over the whole
    manifest; now the split follows the scores, exactly."""
    weights = attribution_weights(scores, agreement())
    assert weights == exact_weights(scores)
    assert 0 < sum(weights.values()) <= 1 << 32


def test_equal_huge_scores_split_equally_and_a_single_one_takes_all() -> None:
    assert attribution_weights({"a": 1.7e308, "b": 1.7e308}, agreement()) == {"a": 1 << 31, "b": 1 << 31}
    assert attribution_weights({"a": FLOAT_MAX, "b": -FLOAT_MAX}, agreement()) == {"a": 1 << 32}
    assert attribution_weights({"a": SUBNORMAL_MIN}, agreement()) == {"a": 1 << 32}


finite_scores = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from("abcdefghij"), finite_scores, min_size=1), st.sampled_from(["0", "0.3", "1"]))
def test_weights_match_the_exact_rule_for_any_finite_floats(scores: dict[str, float], baseline_share: str) -> None:
    ag = agreement(baseline_share=baseline_share)
    influence_scale = int((1 << 32) * (1 - Fraction(baseline_share)))
    expected = exact_weights(scores, influence_scale) if any(v > 0 for v in scores.values()) else {}
    assert attribution_weights(scores, ag) == expected


def test_huge_scores_split_the_pool_as_scored_not_over_the_manifest(store: Store) -> None:
    w = World(store)
    ag = agreement()
    batch = w.usage([("o1", 10**9, on_time(3), {w.song: 1.7e308, w.film: 1.7e308, w.orphan: -1.7e308})], ag)
    assert set(batch.works) == {w.song, w.film}  # the orphan, negative, is not paid
    by_work: dict[str, int] = {}
    for code, weight in zip(batch.attributed_codes.tolist(), batch.weights.tolist()):  # type: ignore[union-attr]
        by_work[batch.works[code]] = by_work.get(batch.works[code], 0) + int(weight)
    assert by_work[w.song] == by_work[w.film]


@pytest.mark.parametrize(
    ("score", "says"),
    [
        (float("nan"), r"attribution scores of output o1 are not finite \(.* = nan\)"),
        (float("inf"), r"are not finite \(.* = inf\)"),
        (float("-inf"), r"are not finite \(.* = -inf\)"),
        ("0.5", r"attribution score of output o1 for .* is '0.5', not a number"),
        (None, "is None, not a number"),
        (10**400, "not a number"),
    ],
    ids=str,
)
def test_a_score_that_is_not_a_finite_number_is_refused(store: Store, score: object, says: str) -> None:
    w = World(store)
    before = row_counts(store)
    with pytest.raises(ValidationError, match=says):
        w.usage([("o1", 10**9, on_time(3), {w.song: 1.0, w.film: score})], agreement())  # type: ignore[dict-item]
    assert row_counts(store) == before
