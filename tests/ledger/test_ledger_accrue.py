"""Accrual on both backends: conservation, carry-forward, order independence, idempotency by batch id,
dry runs, refusals, and one transfer per (currency, month)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from endcredits.errors import ConflictError, LedgerError, ManifestError, NotFoundError, ValidationError
from endcredits.ledger import reversal_of
from endcredits.ledger.accrue import accrue
from endcredits.ledger.records import carried_fractions, load_transfer, post_transfer, transfer_count
from endcredits.ledger.verify import verify
from endcredits.limits import SUBUNITS_PER_MICROUNIT
from endcredits.registry.records import WorkIn, add_works
from endcredits.royalties import pool_of
from endcredits.royalties.usage import OutputIn, build_usage
from endcredits.store.engine import Store
from helpers_money import (
    EXTERNAL,
    World,
    agreement,
    balances,
    evidence_files,
    on_time,
    people,
    register_model,
    row_counts,
    usage,
)


def carried(store: Store) -> dict[str, int]:
    with store.read() as conn:
        return {payee: subunits for (payee, _), subunits in carried_fractions(conn).items()}


# Conservation -------------------------------------------------------------------------------------
def test_every_pool_is_posted_escrowed_or_carried_to_the_microunit(store: Store) -> None:
    w = World(store)
    ag = agreement(pool_rate="0.30")
    revenues = {"o1": 1_000_000_007, "o2": 33, "o3": 1, "o4": 10**18 + 3}
    scores = {
        "o1": {w.song: 0.7, w.film: 0.2, w.orphan: 0.1},
        "o2": {w.song: 1.0, w.film: -0.5},
        "o3": {w.orphan: 2.0},
        "o4": {w.song: 0.3333, w.film: 0.3333, w.orphan: 0.3334},
    }
    pools_total = 0
    for batch, outs in (("b1", ["o1", "o2", "o3"]), ("b2", ["o4"])):
        s = accrue(
            store,
            w.usage([(o, revenues[o], on_time(3), scores[o]) for o in outs], ag),
            ag,
            event_id=batch,
            source=EXTERNAL,
        )
        assert s.status == "created"
        assert s.revenue_microunits == sum(revenues[o] for o in outs)
        assert s.pool_microunits == sum(pool_of(revenues[o], ag) for o in outs)
        assert s.pool_microunits == s.posted_microunits + s.escrow_microunits + s.suspense_delta_microunits
        pools_total += s.pool_microunits
    assert pool_of(1_000_000_007, ag) == 300_000_002  # rounded down; the sub-microunit stays with the operator
    b = balances(store)
    assert b["pool:EUR"] == -pools_total
    assert sum(b.values()) == 0
    # Each kind of payee lands where it must: paid, or held under its own name.
    assert set(b) == {
        "pool:EUR",
        "suspense:EUR",
        f"payable:person:{w.alice}:EUR",
        f"escrow:name:{w.bob}:EUR",
        f"escrow:person:{w.dan}:EUR",
        f"escrow:work:{w.orphan}:EUR",
    }
    assert all(v > 0 for k, v in b.items() if k != "pool:EUR")
    assert b["suspense:EUR"] * SUBUNITS_PER_MICROUNIT == sum(carried(store).values())
    report = verify(store)
    assert report.ok, report.problems


# Carry-forward ------------------------------------------------------------------------------------
def test_a_dyadic_fraction_carries_forward_exactly(store: Store) -> None:
    """a is owed exactly 1/4 microunit per output (one output per batch): paid 1 at the 4th, 2 at the 8th."""
    a, b = people(store, "a", "b")
    register_model(store)
    ag = agreement(pool_rate="1")
    posted = []
    for k in range(1, 9):
        accrue(
            store,
            usage([(f"o{k}", 1, on_time(4, k), [(f"person:{a}", 1), (f"person:{b}", 3)])]),
            ag,
            event_id=f"b{k}",
            source=EXTERNAL,
        )
        posted.append(balances(store).get(f"payable:person:{a}:EUR", 0))
        assert carried(store)[f"person:{a}"] == (k % 4) * SUBUNITS_PER_MICROUNIT // 4
    assert posted == [0, 0, 0, 1, 1, 1, 1, 2]
    assert balances(store) == {
        "pool:EUR": -8,
        f"payable:person:{a}:EUR": 2,
        f"payable:person:{b}:EUR": 6,
        "suspense:EUR": 0,
    }
    assert verify(store).ok


def test_fractions_of_a_microunit_carry_forward_until_they_are_whole(store: Store) -> None:
    """Each output's 1 microunit pool is owed 0.4 / 0.2 / 0.4 to a, b, c; one output per batch.

    0.4 is not a whole number of 2^-32 subunits, so each output credits a payee within one subunit of
    its share (ties by a content hash); what a payee holds (posted + carried) stays within k subunits
    of its exact entitlement after k outputs, and only whole microunits are posted.
    """
    a, b, c = people(store, "a", "b", "c")
    register_model(store)
    ag = agreement(pool_rate="1")
    lines = [(f"person:{a}", 2), (f"person:{b}", 1), (f"person:{c}", 2)]
    owed = {a: Fraction(2, 5), b: Fraction(1, 5), c: Fraction(2, 5)}
    posted_a = []
    for k in range(1, 7):
        accrue(store, usage([(f"o{k}", 1, on_time(4, k), lines)]), ag, event_id=f"b{k}", source=EXTERNAL)
        bal, carry = balances(store), carried(store)
        posted = {p: bal.get(f"payable:person:{p}:EUR", 0) for p in owed}
        posted_a.append(posted[a])
        for p, share in owed.items():
            held_subunits = posted[p] * SUBUNITS_PER_MICROUNIT + carry[f"person:{p}"]
            assert 0 <= carry[f"person:{p}"] < SUBUNITS_PER_MICROUNIT
            assert abs(held_subunits - share * k * SUBUNITS_PER_MICROUNIT) < k, (k, p)
        assert sum(posted.values()) + bal.get("suspense:EUR", 0) == k  # nothing lost
        assert bal.get("suspense:EUR", 0) * SUBUNITS_PER_MICROUNIT == sum(carry.values())
    # a holds 0.4, 0.8, 1.2, 1.6, 2.0, 2.4 (each within k subunits): paid only as whole microunits accumulate.
    # At exactly 2.0 the last subunit may still be carried (it arrives with the sixth output).
    assert posted_a[:4] == [0, 0, 1, 1] and posted_a[4] in (1, 2) and posted_a[5] == 2
    assert verify(store).ok


# Order independence --------------------------------------------------------------------------------
TIED = [("o1", 1, on_time(5, 1)), ("o2", 1, on_time(5, 2)), ("o3", 1, on_time(5, 3)), ("o4", 7, on_time(5, 4))]


def _ledger_state(store: Store) -> tuple[dict[str, int], dict[str, int]]:
    return balances(store), carried(store)


def test_the_order_of_outputs_within_a_batch_does_not_matter(store: Store, store_factory) -> None:  # type: ignore[no-untyped-def]
    replica = store_factory()
    ag = agreement(pool_rate="1")
    states = []
    for s in (store, replica):
        payees = [f"person:{p}" for p in people(s, "x", "y", "z")]
        register_model(s)
        outs = [(o, r, t, [(p, 1) for p in payees]) for o, r, t in TIED]
        accrue(s, usage(outs if s is store else outs[::-1]), ag, event_id="b", source=EXTERNAL)
        states.append(_ledger_state(s))
    assert states[0] == states[1]
    assert states[0][0]["pool:EUR"] == -10


def test_the_order_of_lines_within_an_output_does_not_matter(store: Store, store_factory) -> None:  # type: ignore[no-untyped-def]
    replica = store_factory()
    ag = agreement(pool_rate="1")
    states = []
    for s in (store, replica):
        payees = [f"person:{p}" for p in people(s, "x", "y", "z")]
        register_model(s)
        order = payees if s is store else payees[::-1]
        accrue(s, usage([(o, r, t, [(p, 1) for p in order]) for o, r, t in TIED]), ag, event_id="b", source=EXTERNAL)
        states.append(_ledger_state(s))
    assert states[0] == states[1]


# Idempotency --------------------------------------------------------------------------------------
def test_a_batch_id_accrues_once(store: Store) -> None:
    (a,) = people(store, "a")
    register_model(store)
    ag = agreement(pool_rate="0.5")
    batch = usage([("o1", 1000, on_time(6), [(f"person:{a}", 1)]), ("o2", 10, on_time(6), [(f"person:{a}", 1)])])
    first = accrue(store, batch, ag, event_id="b1", source=EXTERNAL)
    assert (first.status, first.pool_microunits, first.groups) == ("created", 505, ("b1/EUR/2026-06",))
    before, files = row_counts(store), evidence_files(store)
    again = accrue(
        store,
        usage([("o1", 1000, on_time(6), [(f"person:{a}", 1)]), ("o2", 10, on_time(6), [(f"person:{a}", 1)])]),
        ag,
        event_id="b1",
        source=EXTERNAL,
    )
    assert (again.status, again.pool_microunits, again.outputs, again.groups) == ("exists", 505, 2, ("b1/EUR/2026-06",))
    assert row_counts(store) == before and evidence_files(store) == files
    with pytest.raises(ConflictError, match="batch b1 was already accrued with other content; use a new batch id"):
        accrue(store, usage([("o1", 1001, on_time(6), [(f"person:{a}", 1)])]), ag, event_id="b1", source=EXTERNAL)
    with pytest.raises(ConflictError, match="batch b1 was already accrued with other content"):
        accrue(store, batch, agreement(pool_rate="0.6"), event_id="b1", source=EXTERNAL)
    with pytest.raises(ConflictError, match="output o2 was already accrued in batch b1; it is never paid twice"):
        accrue(
            store,
            usage([("o2", 10, on_time(6), [(f"person:{a}", 1)]), ("o3", 5, on_time(6), [(f"person:{a}", 1)])]),
            ag,
            event_id="b2",
            source=EXTERNAL,
        )
    assert row_counts(store) == before and evidence_files(store) == files
    assert balances(store)[f"payable:person:{a}:EUR"] == 505


# Dry run ------------------------------------------------------------------------------------------
def test_a_dry_run_reports_the_same_numbers_and_writes_nothing(store: Store) -> None:
    w = World(store)
    ag = agreement()
    outs = [("o1", 12_345_678, on_time(7), {w.song: 0.5, w.film: 0.3, w.orphan: 0.2})]
    before = row_counts(store)
    dry = accrue(store, w.usage(outs, ag), ag, event_id="b1", dry_run=True, source=EXTERNAL)
    assert dry.status == "dry_run"
    assert row_counts(store) == before  # no accounts, transfers, carries, outputs or audit entries
    assert before["accounts"] == 0
    assert evidence_files(store) == []
    real = accrue(store, w.usage(outs, ag), ag, event_id="b1", source=EXTERNAL)
    assert real.status == "created"
    assert (
        dry.pool_microunits,
        dry.posted_microunits,
        dry.escrow_microunits,
        dry.suspense_delta_microunits,
        dry.groups,
    ) == (
        real.pool_microunits,
        real.posted_microunits,
        real.escrow_microunits,
        real.suspense_delta_microunits,
        real.groups,
    )


# Refusals ------------------------------------------------------------------------------------------
def test_bad_batches_are_refused_and_write_nothing(store: Store) -> None:
    w = World(store)
    ag = agreement()
    before = row_counts(store)
    pay_alice = [(f"person:{w.alice}", 1)]
    with pytest.raises(NotFoundError, match="model nope is not registered"):
        accrue(store, usage([("o1", 100, on_time(8), pay_alice)], model_id="nope"), ag, event_id="b1", source=EXTERNAL)
    with pytest.raises(ValidationError, match="output currency USD differs from agreement test-2026 currency EUR"):
        accrue(store, usage([("o1", 100, on_time(8), pay_alice)], currency="USD"), ag, event_id="b1", source=EXTERNAL)
    with pytest.raises(ValidationError, match="batch event id must be 1..180 characters without '/'"):
        accrue(store, usage([("o1", 100, on_time(8), pay_alice)]), ag, event_id="a/b", source=EXTERNAL)
    # The first month's evidence is written before the second month fails: it is removed again.
    with pytest.raises(NotFoundError, match="payee person:999 is not registered"):
        accrue(
            store,
            usage([("o1", 100, on_time(8), pay_alice), ("o2", 100, on_time(9), [("person:999", 1)])]),
            ag,
            event_id="b1",
            source=EXTERNAL,
        )
    with pytest.raises(NotFoundError, match="payee name:424242 is not registered"):
        accrue(
            store,
            usage([("o1", 100, on_time(8), [("name:424242", 1), *pay_alice])]),
            ag,
            event_id="b1",
            source=EXTERNAL,
        )
    with pytest.raises(ValidationError, match="negative revenue -1: revenue must be >= 0"):
        usage([("o1", -1, on_time(8), pay_alice)])
    with pytest.raises(ValidationError, match="negative revenue -5"):
        w.usage([("o1", -5, on_time(8), {w.song: 1.0})], ag)
    with store.write() as conn:
        (outside,) = add_works(conn, [WorkIn(b"late", "Late", "text")])  # registered after the manifest
    with pytest.raises(ManifestError, match=f"attributes work {outside}, which is not in manifest {w.manifest.id}"):
        w.usage([("o1", 100, on_time(8), {w.song: 0.5, outside: 0.5})], ag)
    with store.read() as conn, pytest.raises(ManifestError, match="output o1 is from model other, not m"):
        build_usage(conn, [OutputIn("o1", "other", 100, "EUR", on_time(8))], {"o1": {w.song: 1.0}}, ag, w.manifest)
    after = row_counts(store)
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == {"works": 1, "audit_log": 1}
    assert evidence_files(store) == []


# Periods --------------------------------------------------------------------------------------------
def test_a_batch_across_two_months_makes_two_transfers_and_two_evidence_files(store: Store) -> None:
    (a,) = people(store, "a")
    register_model(store)
    ag = agreement(pool_rate="1")
    pay = [(f"person:{a}", 1)]
    s = accrue(
        store,
        usage(
            [
                ("jan-late", 10, "2026-01-31T23:59:59Z", pay),
                ("feb-local", 20, "2026-02-01T00:30:00+01:00", pay),  # still January in UTC
                ("feb", 300, "2026-02-01T00:00:00Z", pay),
            ]
        ),
        ag,
        event_id="b",
        source=EXTERNAL,
    )
    assert s.groups == ("b/EUR/2026-01", "b/EUR/2026-02")
    assert s.pool_microunits == 330
    with store.read() as conn:
        assert transfer_count(conn) == 2
    files = evidence_files(store)
    assert [p.parent.name for p in files] == ["period=2026-01", "period=2026-02"]
    assert balances(store) == {"pool:EUR": -330, f"payable:person:{a}:EUR": 330}
    assert verify(store).ok


def test_outputs_whose_pool_rounds_to_zero_are_still_recorded(store: Store) -> None:
    (a,) = people(store, "a")
    register_model(store)
    ag = agreement(pool_rate="0.3")
    pay = [(f"person:{a}", 1)]
    s = accrue(
        store,
        usage([("free-tier", 0, on_time(1), pay), ("tiny", 3, on_time(1, 2), pay), ("paid", 1000, on_time(2), pay)]),
        ag,
        event_id="b",
        source=EXTERNAL,
    )
    assert s.status == "created" and s.pool_microunits == 300
    assert row_counts(store)["outputs"] == 3
    assert balances(store) == {"pool:EUR": -300, f"payable:person:{a}:EUR": 300}
    with pytest.raises(ConflictError, match="output tiny was already accrued in batch b"):
        accrue(store, usage([("tiny", 3, on_time(1, 2), pay)]), ag, event_id="b-again", source=EXTERNAL)
    assert verify(store).ok


def test_an_accrual_cannot_be_reversed_behind_the_carries_back(store: Store) -> None:
    """A raw reversal would empty suspense but keep the carried fractions, and the next batch would overdraw it."""
    payees = [f"person:{p}" for p in people(store, "x", "y", "z")]
    register_model(store)
    ag = agreement(pool_rate="1")
    accrue(store, usage([("o1", 2, on_time(1), [(p, 1) for p in payees])]), ag, event_id="b1", source=EXTERNAL)
    assert balances(store)["suspense:EUR"] == 2  # 2/3 microunit each, all still carried
    with store.read() as conn:
        original = load_transfer(conn, "b1/EUR/2026-01")
    before = row_counts(store)
    with pytest.raises(LedgerError, match="is an accrual"), store.write() as conn:
        post_transfer(conn, reversal_of(original, "undo-b1", "wrong batch"))
    assert row_counts(store) == before
    accrue(store, usage([("o2", 1, on_time(1, 2), [(p, 1) for p in payees])]), ag, event_id="b2", source=EXTERNAL)
    assert verify(store).ok


def _reference_string_hash(text: str) -> int:
    """The tie-break hash written out in Python integers: a polynomial in the UTF-8 bytes, then mixed."""
    data, m = text.encode(), 1 << 64
    h = sum((byte + 1) * pow(0x100000001B3, j, m) for j, byte in enumerate(data)) % m
    h ^= len(data) * 0x9E3779B97F4A7C15 % m
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9 % m
    h = (h ^ (h >> 27)) * 0x94D049BB133111EB % m
    return h ^ (h >> 31)


def test_tie_break_hashes_are_the_written_out_polynomial() -> None:
    import pyarrow as pa

    from endcredits.ledger.accrue import _string_hashes

    texts = ["", "a", "name:1", "name:12", "é€𝄞", "x" * 300, "", "person:7", "nul\x00inside"]
    expected = [_reference_string_hash(t) for t in texts]
    assert _string_hashes(pa.array(texts, pa.string())).tolist() == expected
    assert _string_hashes(pa.array(["skip", *texts], pa.large_string()).slice(1)).tolist() == expected
    assert len(set(expected)) == len(set(texts))
