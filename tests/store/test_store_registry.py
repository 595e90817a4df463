"""Bulk registry writes (``add_works``, ``add_credits``) on both backends: ids are the SHA-256 of the
content, a batch is written whole or not at all, and bad input is refused with a one-line error that
names the culprit, leaving every table as it was."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import select, text

from endcredits.errors import ConflictError, EndcreditsError, NotFoundError, ValidationError
from endcredits.limits import CREDITS_PER_WORK_MAX, WEIGHT_MAX
from endcredits.registry.records import (
    CreditIn,
    WorkIn,
    add_credits,
    add_people,
    add_works,
    claim_name,
    name_ids,
    payee_routes,
    verify_person,
)
from endcredits.store.engine import Store
from endcredits.store.schema import credits, works
from helpers_money import row_counts


def _refused(store: Store, error: type[EndcreditsError], match: str, write: Any) -> None:
    """``write(conn)`` raises ``error`` with a one-line message and changes nothing."""
    before = row_counts(store)
    with pytest.raises(error, match=match) as info, store.write() as conn:
        write(conn)
    assert "\n" not in str(info.value)
    assert row_counts(store) == before


def test_works_are_addressed_by_sha256_in_input_order_and_a_batch_keeps_the_first_copy(store: Store) -> None:
    contents = [b"b-side", b"a-side", b"b-side", b"c-side"]
    with store.write() as conn:
        ids = add_works(conn, [WorkIn(c, f"T{i}", "audio") for i, c in enumerate(contents)])
    assert ids == [hashlib.sha256(c).hexdigest() for c in contents]
    with store.read() as conn:
        rows = {r.id: (r.title, r.kind, r.size_bytes) for r in conn.execute(select(works))}
    assert rows == {ids[0]: ("T0", "audio", 6), ids[1]: ("T1", "audio", 6), ids[3]: ("T3", "audio", 6)}
    before = row_counts(store)
    with store.write() as conn:  # the same content again: the same ids, nothing written, not even an audit entry
        assert add_works(conn, [WorkIn(b"a-side", "again", "text"), WorkIn(b"b-side", "again", "text")]) == ids[1::-1]
    assert row_counts(store) == before


def test_bad_works_are_refused_whole(store: Store) -> None:
    with store.write() as conn:
        add_works(conn, [WorkIn(b"taken", "Taken", "text", source="s3://bucket/taken")])
    good = WorkIn(b"fine", "Fine", "text")
    _refused(
        store,
        ValidationError,
        "work 'Empty' has no content",
        lambda c: add_works(c, [good, WorkIn(b"", "Empty", "text")]),
    )
    _refused(
        store,
        ValidationError,
        "work 'Text' has no content",
        lambda c: add_works(c, [good, WorkIn("text", "Text", "text")]),
    )  # type: ignore[arg-type]
    _refused(
        store,
        ValidationError,
        "title .* contains control characters",
        lambda c: add_works(c, [good, WorkIn(b"x", "bell\x07", "text")]),
    )
    _refused(store, ValidationError, "kind is empty", lambda c: add_works(c, [good, WorkIn(b"x", "X", "  ")]))
    _refused(
        store,
        ConflictError,
        "source s3://bucket/taken is already registered",
        lambda c: add_works(c, [good, WorkIn(b"other", "Other", "text", source="s3://bucket/taken")]),
    )
    _refused(
        store,
        NotFoundError,
        "no person 999",
        lambda c: add_works(c, [good, WorkIn(b"x", "X", "text", rights_holder="person:999")]),
    )
    _refused(
        store,
        ValidationError,
        "payee 'someone' must be person:ID or name:ID",
        lambda c: add_works(c, [good, WorkIn(b"x", "X", "text", rights_holder="someone")]),
    )


def _world(store: Store) -> tuple[list[str], list[int], int]:
    with store.write() as conn:
        wids = add_works(conn, [WorkIn(f"work {i}".encode(), f"W{i}", "text") for i in range(3)])
        pids = add_people(conn, ["ana", "ben"])
        nid = name_ids(conn, ["Cleo"])["Cleo"]
    return wids, pids, nid


def test_credits_skip_repeats_and_keep_each_works_order(store: Store) -> None:
    (w0, w1, w2), (ana, ben), cleo = _world(store)
    batch = [
        CreditIn(w2, f"person:{ben}", "endcredits:composer", 3),
        CreditIn(w0, f"name:{cleo}", "endcredits:performer"),
        CreditIn(w2, f"person:{ana}", "endcredits:composer"),
        CreditIn(w0, f"person:{ana}", "endcredits:composer"),
        CreditIn(w2, f"person:{ben}", "endcredits:composer", 9),
    ]  # a repeat in the batch: the first one counts
    with store.write() as conn:
        assert add_credits(conn, batch) == 4
        assert add_credits(conn, batch[:2] + [CreditIn(w1, f"person:{ben}", "endcredits:performer")]) == 1
    with store.read() as conn:
        rows = conn.execute(
            select(works.c.id, credits.c.person_id, credits.c.name_id, credits.c.weight)
            .join(works, works.c.seq == credits.c.work_seq)
            .order_by(credits.c.id)
        ).all()
    by_work: dict[str, list[tuple[Any, ...]]] = {}
    for w, p, n, weight in rows:
        by_work.setdefault(w, []).append((p, n, weight))
    assert by_work == {
        w2: [(ben, None, 3), (ana, None, 1)],
        w0: [(None, cleo, 1), (ana, None, 1)],
        w1: [(ben, None, 1)],
    }


def test_bad_credits_are_refused_whole(store: Store) -> None:
    (w0, _, _), (ana, _), _ = _world(store)
    good = CreditIn(w0, f"person:{ana}", "endcredits:composer")
    _refused(
        store,
        NotFoundError,
        "credit names work nope, which is not registered",
        lambda c: add_credits(c, [good, CreditIn("nope", f"person:{ana}", "endcredits:composer")]),
    )
    _refused(
        store,
        NotFoundError,
        "no person 999",
        lambda c: add_credits(c, [good, CreditIn(w0, "person:999", "endcredits:vfx")]),
    )
    _refused(
        store,
        NotFoundError,
        "no name 999",
        lambda c: add_credits(c, [good, CreditIn(w0, "name:999", "endcredits:vfx")]),
    )
    _refused(
        store,
        ValidationError,
        "payee 'ana' must be person:ID or name:ID",
        lambda c: add_credits(c, [good, CreditIn(w0, "ana", "endcredits:vfx")]),
    )
    _refused(
        store,
        ValidationError,
        "role 'Composer' must be scheme:code",
        lambda c: add_credits(c, [good, CreditIn(w0, f"person:{ana}", "Composer")]),
    )
    _refused(
        store,
        ValidationError,
        "unknown role scheme 'acme'",
        lambda c: add_credits(c, [good, CreditIn(w0, f"person:{ana}", "acme:grip")]),
    )
    for weight in (0, -1, WEIGHT_MAX + 1, True, 1.5, "2"):
        _refused(
            store,
            ValidationError,
            f"credit weight must be an integer in 1..{WEIGHT_MAX}, got {weight!r}",
            lambda c, w=weight: add_credits(c, [good, CreditIn(w0, f"person:{ana}", "endcredits:vfx", w)]),
        )


def test_a_work_holds_at_most_credits_per_work_max(store: Store) -> None:
    (w0, _, _), (ana, _), _ = _world(store)
    with store.write() as conn:
        people = add_people(conn, [f"p{i}" for i in range(CREDITS_PER_WORK_MAX)])
        assert (
            add_credits(conn, [CreditIn(w0, f"person:{p}", "endcredits:composer") for p in people])
            == CREDITS_PER_WORK_MAX
        )
    _refused(
        store,
        ValidationError,
        f"work {w0} would have more than CREDITS_PER_WORK_MAX",
        lambda c: add_credits(c, [CreditIn(w0, f"person:{ana}", "endcredits:composer")]),
    )


def test_keys_pass_two_to_the_31_on_both_backends(store: Store) -> None:
    # People, works (their registration number) and credits are counted in billions: keys are 64-bit.
    start = 3_000_000_000
    with store.write() as conn:
        for table, column in (("people", "id"), ("works", "seq"), ("credits", "id")):
            if store.backend == "postgresql":
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), {start})"))
        if store.backend == "sqlite":  # the rowid continues after the highest one
            conn.execute(text(f"INSERT INTO people (id, handle, created_at) VALUES ({start}, 'seed', 'x')"))
            conn.execute(
                text(
                    f"INSERT INTO works (seq, id, title, kind, size_bytes, created_at) "
                    f"VALUES ({start}, '{'0' * 64}', 'seed', 'text', 1, 'x')"
                )
            )
        (person,) = add_people(conn, ["ana"])
        (work,) = add_works(conn, [WorkIn(b"a work", "A work", "text")])
        assert add_credits(conn, [CreditIn(work, f"person:{person}", "endcredits:composer")]) == 1
    assert person > 2**31
    with store.read() as conn:
        row = conn.execute(
            select(works.c.seq, credits.c.person_id)
            .join(credits, credits.c.work_seq == works.c.seq)
            .where(works.c.id == work)
        ).one()
    assert row.seq > 2**31 and row.person_id == person


def test_payee_routes_agree_whether_every_payee_is_a_name_or_not(store: Store) -> None:
    """Accruals route 10^5 names at once through a fast path (only names); a mixed list takes the general
    one. Both give the same route per payee, and both refuse a name or person that is not registered."""
    with store.write() as conn:
        ids = name_ids(conn, ["Ann", "Bo", "Cy", "Di"])
        ann, bo = add_people(conn, ["ann", "bo"])
        verify_person(conn, ann, verified_by="test")
        claim_name(conn, ids["Ann"], ann)  # claimed by a verified person: paid
        claim_name(conn, ids["Bo"], bo)  # claimed, not verified: escrow under the person
    names = [f"name:{ids[n]}" for n in ("Ann", "Bo", "Cy", "Di")]
    expected = {
        names[0]: ("payable", f"person:{ann}"),
        names[1]: ("escrow", f"person:{bo}"),
        names[2]: ("escrow", names[2]),
        names[3]: ("escrow", names[3]),
    }
    with store.read() as conn:
        assert payee_routes(conn, names) == expected
        mixed = payee_routes(conn, [*names, f"person:{ann}", f"person:{bo}", "work:abc"])
        assert {p: mixed[p] for p in names} == expected
        assert mixed[f"person:{ann}"] == ("payable", f"person:{ann}")
        assert mixed[f"person:{bo}"] == ("escrow", f"person:{bo}")
        assert mixed["work:abc"] == ("escrow", "work:abc")
        missing = max(ids.values()) + 1
        for payees in ([*names, f"name:{missing}"], [*names, f"name:{missing}", f"person:{ann}"]):
            with pytest.raises(NotFoundError, match=f"payee name:{missing} is not registered"):
                payee_routes(conn, payees)
        for bad in ("name:12a", "name:\ud800"):  # a lone surrogate is not text Arrow (or UTF-8) takes
            with pytest.raises(ValidationError, match="must be person:ID or name:ID"):
                payee_routes(conn, [*names, bad])
