"""Routes cached per store (``ledger.routes``) are ``route_arrays``'s, exactly, after every change that moves
a route: a claim, a verification and its withdrawal, names registered since, a store beside it. An accrual
of payees the cache knows distinct writes the ledger an accrual that hashes them writes."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, update

import endcredits.ledger.accrue as accrue_module
from endcredits.errors import NotFoundError
from endcredits.ledger.accrue import accrue
from endcredits.ledger.records import fold_pending
from endcredits.ledger.routes import route_payees
from endcredits.ledger.verify import verify
from endcredits.registry.records import add_person, claim_name, name_ids, route_arrays, verify_person
from endcredits.store.engine import Store
from endcredits.store.schema import names, people
from helpers_money import EXTERNAL, agreement, ledger_state, names_usage, names_world


def _names(store: Store, first: int, n: int) -> list[str]:
    with store.write() as conn:
        ids = name_ids(conn, [f"route name {i}" for i in range(first, first + n)])
    return [f"name:{ids[f'route name {i}']}" for i in range(first, first + n)]


def _same(store: Store, payees: list[str]) -> list[str]:
    """The cached routes equal route_arrays's; the kinds returned."""
    with store.read() as conn:
        texts = pa.array(payees, pa.string())
        *got, distinct = route_payees(conn, texts)
        want = route_arrays(conn, texts)
    assert [a.to_pylist() for a in got] == [a.to_pylist() for a in want]
    assert not distinct or len(set(payees)) == len(payees)
    return got[0].to_pylist()


def test_every_change_to_a_route_is_seen(store: Store) -> None:
    payees = _names(store, 0, 40)
    assert set(_same(store, payees)) == {"escrow"}
    with store.write() as conn:
        pid = add_person(conn, "route person")
        claim_name(conn, int(payees[3].split(":")[1]), pid)
    assert _same(store, payees)[3] == "escrow"  # claimed, not verified: escrow under the person
    with store.write() as conn:
        verify_person(conn, pid, verified_by="test")
    assert _same(store, payees)[3] == "payable"
    with store.write() as conn:
        conn.execute(update(people).where(people.c.id == pid).values(verified_at=None, verified_by=None))
    assert _same(store, payees)[3] == "escrow"
    more = _names(store, 40, 10)  # registered after the cache was filled
    with store.write() as conn:
        other = add_person(conn, "route person 2")
        verify_person(conn, other, verified_by="test")
        claim_name(conn, int(more[2].split(":")[1]), other)
    assert _same(store, [*payees, *more])[42] == "payable"


def test_an_unregistered_name_is_refused_as_before(store: Store) -> None:
    payees = _names(store, 0, 5)
    _same(store, payees)
    unknown = f"name:{int(payees[-1].split(':')[1]) + 1000}"
    with store.read() as conn:
        with pytest.raises(NotFoundError, match=f"payee {unknown} is not registered"):
            route_payees(conn, pa.array([*payees, unknown], pa.string()))
    _same(store, payees)


def test_a_name_removed_after_it_was_cached_is_refused(store: Store) -> None:
    payees = _names(store, 0, 5)
    _same(store, payees)
    with store.write() as conn:  # no code removes a name; a person with the database's tools might
        conn.execute(delete(names).where(names.c.id == int(payees[2].split(":")[1])))
    with store.read() as conn:
        with pytest.raises(NotFoundError, match=f"payee {payees[2]} is not registered"):
            route_payees(conn, pa.array(payees, pa.string()))
    _same(store, [payees[0], payees[1], payees[3]])


def test_a_database_put_back_as_it_was_is_read_again(store: Store) -> None:
    """A copy of the database from before names were registered, put back under the same URL (a restore):
    the names it does not hold are refused, not routed from the cache."""
    payees = _names(store, 0, 3)
    _same(store, payees)  # cached
    with store.write() as conn:
        conn.execute(delete(names).where(names.c.id > int(payees[0].split(":")[1])))
        conn.exec_driver_sql("UPDATE route_versions SET names_removed = 0")  # as the older copy had it
    with store.read() as conn:
        with pytest.raises(NotFoundError, match=f"payee {payees[1]} is not registered"):
            route_payees(conn, pa.array(payees, pa.string()))
    _same(store, payees[:1])


def test_payees_named_twice_are_not_called_distinct(store: Store) -> None:
    payees = _names(store, 0, 4)
    _same(store, payees)
    with store.read() as conn:
        assert route_payees(conn, pa.array(payees, pa.string()))[2]
        assert not route_payees(conn, pa.array([*payees, payees[1]], pa.string()))[2]


def test_payees_not_all_names_are_routed_by_route_arrays(store: Store) -> None:
    payees = _names(store, 0, 3)
    with store.write() as conn:
        pid = add_person(conn, "route person")
    _same(store, [*payees, f"person:{pid}"])


def test_two_stores_in_one_process_keep_their_own_routes(store: Store, store_factory) -> None:  # type: ignore[no-untyped-def]
    other = store_factory()
    mine, theirs = _names(store, 0, 6), _names(other, 0, 6)
    assert mine == theirs  # the same ids in both
    with other.write() as conn:
        pid = add_person(conn, "route person")
        verify_person(conn, pid, verified_by="test")
        claim_name(conn, int(theirs[1].split(":")[1]), pid)
    assert _same(other, theirs)[1] == "payable"
    assert _same(store, mine)[1] == "escrow"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["claim", "unclaim", "verify", "unverify", "register"]), st.integers(0, 29)),
        max_size=8,
    )
)
def test_random_changes_route_as_route_arrays(store: Store, steps: list[tuple[str, int]]) -> None:
    with store.read() as conn:
        have = conn.exec_driver_sql("SELECT count(*) FROM names").scalar_one()
    payees = _names(store, have, 30)
    with store.write() as conn:
        persons = [add_person(conn, f"route person {have}-{i}") for i in range(3)]
    _same(store, payees)
    for what, i in steps:
        with store.write() as conn:
            if what == "claim":
                claim_name(conn, int(payees[i].split(":")[1]), persons[i % 3])
            elif what == "unclaim":
                conn.execute(update(names).where(names.c.id == int(payees[i].split(":")[1])).values(person_id=None))
            elif what == "verify":
                verify_person(conn, persons[i % 3], verified_by="test")
            elif what == "unverify":
                conn.execute(update(people).where(people.c.id == persons[i % 3]).values(verified_at=None))
        if what == "register":
            payees += _names(store, have + len(payees) + 1000 * (i + 1), 2)
        _same(store, payees)


def test_names_known_distinct_accrue_as_names_hashed(
    store_factory: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An accrual whose payees the route cache knows distinct (no hash of them for the accounts and the
    carries) writes the very transfers, segments, balances and carries as one that hashes them, through
    folds (the snapshot) and pending segments, with claimed names sharing their person's account."""
    hashed, known = store_factory(), store_factory()
    payees = [names_world(s, 80, names_per_person=2) for s in (hashed, known)][0]
    ag = agreement()
    examples = itertools.count()

    def not_known(conn: object, texts: pa.Array, numbers: object = "parse") -> tuple[pa.Array, pa.Array, bool]:
        kinds, holders, _ = route_payees(conn, texts, numbers)  # type: ignore[arg-type]
        return kinds, holders, False

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.integers(1, 40), st.booleans()), min_size=1, max_size=4), st.integers(0, 10**6))
    def check(steps: list[tuple[int, bool]], seed: int) -> None:
        n = next(examples)
        for i, (paid, fold_after) in enumerate(steps):
            rng = np.random.default_rng(seed + i)
            used = np.sort(rng.choice(80, size=max(4, paid), replace=False))
            codes = np.concatenate([rng.permutation(len(used))[:4] for _ in range(6)])
            usage = names_usage([payees[c] for c in used.tolist()], codes, 1000 * n + i, rng)
            with monkeypatch.context() as m:
                m.setattr(accrue_module, "route_payees", not_known)
                accrue(hashed, usage, ag, event_id=f"h{n}-{i}", source=EXTERNAL)
            accrue(known, usage, ag, event_id=f"h{n}-{i}", source=EXTERNAL)
            if fold_after:
                for s in (hashed, known):
                    with s.write() as conn:
                        fold_pending(conn)
            assert ledger_state(hashed) == ledger_state(known)

    check()
    assert verify(known).ok
