"""Bulk lookups below SQLAlchemy (store.bulk.select_in) on both backends: every kind of value comes back
exactly, whichever way the values travel to the server."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from endcredits.store.bulk import fetch_all, select_in, sqlite_cache_at_least
from endcredits.store.engine import Store

TEXTS = ["plain", "with,comma", 'quo"te', "back\\slash", "{braces}", "tab\tand\nnewline", "ünïcödé", "NULL", " "]


@pytest.fixture
def table(store: Store) -> Store:
    with store.write() as conn:
        conn.execute(text("CREATE TABLE bulk_probe (k TEXT NOT NULL, n BIGINT NOT NULL)"))
        for i, k in enumerate([*TEXTS, "", "sep\x1fin", "other"]):
            conn.execute(text("INSERT INTO bulk_probe (k, n) VALUES (:k, :n)"), {"k": k, "n": i * 1_000_003})
    return store


@pytest.mark.parametrize(
    "values",
    [
        TEXTS,  # sent as one separated text
        [*TEXTS, "sep\x1fin"],  # a value holding the separator: sent as a list
        [""],
        ["", "plain"],  # the empty text: sent as a list
        ["absent", "plain"],
    ],
)
def test_texts_match_exactly(table: Store, values: list[str]) -> None:
    with table.read() as conn:
        got = sorted(r[0] for r in select_in(conn, "SELECT k FROM bulk_probe WHERE k {in}", values))
    with table.read() as conn:
        every = [r[0] for r in conn.execute(text("SELECT k FROM bulk_probe"))]
    assert got == sorted(v for v in every if v in values)


def test_integers_match_exactly_and_large_ones_do_not_break_the_lookup(table: Store) -> None:
    wanted = [0, 3 * 1_000_003, 5 * 1_000_003, 7]
    with table.read() as conn:
        got = sorted(r[0] for r in select_in(conn, "SELECT n FROM bulk_probe WHERE n {in}", wanted))
        assert got == [0, 3 * 1_000_003, 5 * 1_000_003]
        assert select_in(conn, "SELECT n FROM bulk_probe WHERE n {in}", []) == []
        assert [r[0] for r in select_in(conn, "SELECT n FROM bulk_probe WHERE n {in}", [(1 << 62), 0])] == [0]


@pytest.mark.parametrize(
    "rows",
    [
        [(t, i) for i, t in enumerate(TEXTS)],  # one COPY block, escaped where needed
        [("plain", 1), ("\\N", 2), ("a\\tb", 3), ("end\\", 4), (None, 5)],  # literal backslashes; NULL text
        [("x", None), ("y", 5)],  # a column mixing NULL and integers
        [("carriage\rreturn", 1), ("\\.", 2), ("two\t\ttabs", 3), (None, None), ("None", 4)],  # escaped by column
        [("big", (1 << 63) - 1), ("negative", -(1 << 63)), ("zero", 0)],
    ],
)
def test_bulk_insert_writes_every_value_exactly(store: Store, rows: list[tuple[str | None, int | None]]) -> None:
    from endcredits.store.bulk import bulk_insert

    with store.write() as conn:
        conn.execute(text("CREATE TABLE bulk_rows (k TEXT NULL, n BIGINT NULL)"))
        bulk_insert(conn, "bulk_rows", ["k", "n"], rows)
    with store.read() as conn:
        got = [(r[0], r[1]) for r in conn.execute(text("SELECT k, n FROM bulk_rows ORDER BY n"))]
    assert sorted(got, key=repr) == sorted(rows, key=repr)


def test_bulk_insert_writes_booleans_and_nulls_in_every_column(store: Store) -> None:
    from endcredits.store.bulk import bulk_insert

    rows = [(1, True, "a", None), (2, False, None, 7), (3, None, "\\N", -1)]
    with store.write() as conn:
        conn.execute(text("CREATE TABLE bulk_flags (i BIGINT NOT NULL, b BOOLEAN NULL, k TEXT NULL, n BIGINT NULL)"))
        bulk_insert(conn, "bulk_flags", ["i", "b", "k", "n"], rows)
    with store.read() as conn:
        got = [
            (r[0], None if r[1] is None else bool(r[1]), r[2], r[3])
            for r in conn.execute(text("SELECT i, b, k, n FROM bulk_flags ORDER BY i"))
        ]
    assert got == rows


@pytest.mark.parametrize(
    "values",
    [
        TEXTS,  # sent as one separated text
        [*TEXTS, "sep\x1fin"],  # a value holding the separator: sent as a list
        ["", "plain", "absent"],
    ],
)
def test_select_joined_matches_texts_exactly(table: Store, values: list[str]) -> None:
    from endcredits.store.bulk import select_joined

    with table.read() as conn:
        got = sorted(
            r[0] for r in select_joined(conn, "SELECT b.k FROM {values} JOIN bulk_probe b ON b.k = v.value", values)
        )
        every = [r[0] for r in conn.execute(text("SELECT k FROM bulk_probe"))]
        assert sorted(
            r[0]
            for r in select_joined(
                conn, "SELECT b.n FROM {values} JOIN bulk_probe b ON b.n = v.value", [0, 7, 3 * 1_000_003]
            )
        ) == [0, 3 * 1_000_003]
    assert got == sorted(v for v in every if v in values)


def test_bulk_upsert_inserts_new_keys_and_updates_known_ones(store: Store) -> None:
    from endcredits.store.bulk import bulk_insert, bulk_upsert

    with store.write() as conn:
        conn.execute(
            text(
                "CREATE TABLE upsert_probe (a TEXT NOT NULL, b TEXT NOT NULL, n BIGINT NOT NULL, "
                "keep TEXT NULL, PRIMARY KEY (a, b))"
            )
        )
        bulk_insert(conn, "upsert_probe", ["a", "b", "n", "keep"], [("x", "EUR", 1, "kept"), ("y", "EUR", 2, "kept")])
        bulk_upsert(
            conn,
            "upsert_probe",
            ["a", "b"],
            ["a", "b", "n"],
            [("x", "EUR", 10), ("x", "USD", 11), ('quo"te\ttab', "EUR", (1 << 63) - 1)],
        )
    with store.read() as conn:
        got = sorted(tuple(r) for r in conn.execute(text("SELECT a, b, n, keep FROM upsert_probe")))
    assert got == sorted(
        [
            ("x", "EUR", 10, "kept"),
            ("y", "EUR", 2, "kept"),
            ("x", "USD", 11, None),
            ('quo"te\ttab', "EUR", (1 << 63) - 1, None),
        ]
    )


def test_a_bulk_step_gets_a_larger_sqlite_cache_and_gives_it_back(store: Store) -> None:
    with store.write() as conn:
        sqlite = conn.dialect.name == "sqlite"
        before = fetch_all(conn, "PRAGMA cache_size")[0][0] if sqlite else None
        with sqlite_cache_at_least(conn, 300_000):
            if sqlite:
                assert fetch_all(conn, "PRAGMA cache_size")[0][0] == -300_000
        with sqlite_cache_at_least(conn, 16):  # already larger: left as it is
            if sqlite:
                assert fetch_all(conn, "PRAGMA cache_size")[0][0] == before
        if sqlite:
            assert fetch_all(conn, "PRAGMA cache_size")[0][0] == before
