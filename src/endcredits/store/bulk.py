"""Bulk reads and writes below SQLAlchemy's per-row layer, for the accrual hot path.

SQLite: one prepared statement and ``executemany``. PostgreSQL: ``COPY`` into the table (or into a
temporary table, then one ``UPDATE ... FROM`` for updates) and ``= ANY(array)`` for lookups.
Rows are tuples of plain Python values in the given column order; amounts are Python ints (they are
written as decimal text on SQLite, as NUMERIC on PostgreSQL — the ``Amount`` convention).
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from itertools import chain
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from endcredits.errors import ConflictError
from endcredits.limits import SQL_PARAMS_PER_STATEMENT_MAX

_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cycle collector for a bulk step, then restore it as it was.

    A bulk step builds 10^5-10^6 tuples, dicts and sets that hold no reference cycles, so the collector
    finds nothing to free in them, yet each full pass walks all of them: measured at 9.8 s of a 10^6-work
    import and manifest (69 passes). Reference counting still frees everything as usual; a cycle made
    meanwhile is collected by the first pass after the step."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def without_gc(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``fn`` inside ``gc_paused()``."""

    @wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with gc_paused():
            return fn(*args, **kwargs)

    return wrapper


@contextmanager
def sqlite_cache_at_least(conn: Connection, kib: int) -> Iterator[None]:
    """On SQLite, a page cache of at least ``kib`` KiB for this connection during a bulk step, then the
    one it had; on PostgreSQL nothing. A fold writes 10^6 account rows into three B-trees bigger than the
    store's 64 MiB cache: with 512 MiB the same inserts took a third less time (machine B)."""
    if _is_pg(conn):
        yield
        return
    before = int(fetch_all(conn, "PRAGMA cache_size")[0][0])
    current_kib = -before if before < 0 else before * 4  # a positive size counts pages (4 KiB here)
    if current_kib >= kib:
        yield
        return
    conn.exec_driver_sql(f"PRAGMA cache_size = -{int(kib)}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {before}")


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _raw(conn: Connection) -> Any:
    return conn.connection.driver_connection


def bulk_insert(conn: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows``; a row whose key is already in ``table`` raises ``ConflictError`` (either backend),
    and the caller's transaction then rolls back."""
    if not rows:
        return
    cols = ", ".join(columns)
    if _is_pg(conn):
        import psycopg

        block = _copy_text(rows, len(columns))
        try:
            with _raw(conn).cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                if block is not None:
                    copy.write(block)
                else:
                    for row in rows:
                        copy.write_row(row)
        except psycopg.errors.UniqueViolation as exc:
            raise ConflictError(f"a row is already in {table}: {str(exc).splitlines()[0]}") from None
        return
    marks = ", ".join("?" for _ in columns)
    try:
        conn.exec_driver_sql(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(rows))
    except IntegrityError as exc:
        if "UNIQUE" not in str(exc.orig):
            raise
        raise ConflictError(f"a row is already in {table}: {exc.orig}") from None


def insert_keys(conn: Connection, table: str, key_column: str, keys: Sequence[str], constants: dict[str, str]) -> None:
    """Insert one row per text key, every row with the same ``constants``; a key already in ``table``
    raises ``ConflictError``. SQLite takes the keys as one JSON array and inserts them in one statement,
    inside SQLite (no row-by-row binding in Python, which holds the GIL): 10^5 keys in half the time of
    ``executemany``. PostgreSQL: ``COPY``, as ``bulk_insert``."""
    if not keys:
        return
    names = list(constants)
    if _is_pg(conn):
        values = tuple(constants[n] for n in names)
        bulk_insert(conn, table, [key_column, *names], [(k, *values) for k in keys])
        return
    marks = ", ".join("?" for _ in names)
    sql = (
        f"INSERT INTO {table} ({', '.join([key_column, *names])}) "
        f"SELECT value{', ' if names else ''}{marks} FROM json_each(?)"
    )
    try:
        conn.exec_driver_sql(sql, (*[constants[n] for n in names], json.dumps(list(keys))))
    except IntegrityError as exc:
        if "UNIQUE" not in str(exc.orig):
            raise
        raise ConflictError(f"a row is already in {table}: {exc.orig}") from None


_COPY_SPECIAL = ("\\", "\t", "\n", "\r")


def _copy_column(values: Sequence[Any]) -> list[str] | None:
    """One column as COPY text fields, or None when it holds a type this fast path does not write."""
    kinds = set(map(type, values))
    if kinds <= {str}:
        texts = list(values)
        joined = "".join(texts)
        if any(c in joined for c in _COPY_SPECIAL):  # rare: escape value by value
            texts = [
                t.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r") for t in texts
            ]
        return texts
    if kinds <= {int}:
        return list(map(str, values))
    if kinds <= {bool}:
        return ["t" if v else "f" for v in values]
    if kinds <= {str, type(None)}:
        column = _copy_column([v for v in values if v is not None]) or []
        it = iter(column)
        return ["\\N" if v is None else next(it) for v in values]
    return None


class _Null(str):
    """NULL in a COPY row: formats as ``\\N``."""


_NULL = _Null("\\N")
_PLAIN_CELLS = frozenset({str, int, bool, type(None)})


def _copy_text(rows: Sequence[tuple[Any, ...]], width: int) -> str | None:
    """The rows as one block of COPY text (tab-separated, ``\\N`` for NULL, backslash escapes), or None
    when a value has a type this fast path does not write (the caller then writes row by row).

    Usually each row is formatted in one C-level ``%`` and the block is checked whole: if it holds
    exactly one tab between cells, one newline per row and one backslash per NULL, no value needed an
    escape. Otherwise the block is built a column at a time, escaping what needs it. Either way 10^5
    rows cost a few joins instead of 10^5 calls of psycopg's ``write_row``."""
    if not rows or not set(map(type, chain.from_iterable(rows))) <= _PLAIN_CELLS:
        return _copy_text_by_column(rows, width)
    nulls = 0
    if any(None in r for r in rows):
        nulls = sum(r.count(None) for r in rows)
        rows = [tuple(_NULL if v is None else v for v in r) if None in r else r for r in rows]
    line = "\t".join(["%s"] * width) + "\n"
    try:
        block = "".join(map(line.__mod__, rows))  # bool as True/False: PostgreSQL's boolean reads both
    except TypeError:  # a row of another width
        return None
    n = len(rows)
    if (
        block.count("\t") == n * (width - 1)
        and block.count("\n") == n
        and block.count("\\") == nulls
        and "\r" not in block
    ):
        return block
    return _copy_text_by_column([tuple(None if v is _NULL else v for v in r) for r in rows], width)


def _copy_text_by_column(rows: Sequence[tuple[Any, ...]], width: int) -> str | None:
    """``_copy_text`` a column at a time, escaping values that hold a backslash, tab or line break."""
    columns = list(zip(*rows)) if rows else []
    if len(columns) != width:
        return None
    texts = [_copy_column(c) for c in columns]
    if any(t is None for t in texts):
        return None
    return "\n".join(map("\t".join, zip(*texts))) + "\n"


def _pg_from_staged(
    conn: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]], statement: str
) -> None:
    """COPY ``rows`` into a temporary table of just these columns (their types, none of the table's
    constraints; one per (table, columns), emptied at commit), then run ``statement`` with ``{staged}``
    naming it."""
    cols = ", ".join(columns)
    tmp = f"_bulk_{table}_{hashlib.sha256(cols.encode()).hexdigest()[:8]}"
    with _raw(conn).cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {tmp} ON COMMIT DELETE ROWS AS SELECT {cols} FROM {table} WITH NO DATA"
        )
        cur.execute(f"TRUNCATE {tmp}")
        block = _copy_text(rows, len(columns))
        with cur.copy(f"COPY {tmp} ({cols}) FROM STDIN") as copy:
            if block is not None:
                copy.write(block)
            else:
                for row in rows:
                    copy.write_row(row)
        cur.execute(statement.replace("{staged}", tmp))


def bulk_update(
    conn: Connection, table: str, key: Sequence[str], columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Update existing rows (matched on ``key``) with the other ``columns``; rows hold every column."""
    if not rows:
        return
    values = [c for c in columns if c not in key]
    if _is_pg(conn):
        sets = ", ".join(f"{c} = s.{c}" for c in values)
        match = " AND ".join(f"t.{c} = s.{c}" for c in key)
        _pg_from_staged(
            conn, table, columns, rows, f"UPDATE {table} AS t SET {sets} FROM {{staged}} AS s WHERE {match}"
        )
        return
    index = {c: i for i, c in enumerate(columns)}
    order = [index[c] for c in values] + [index[c] for c in key]
    sets = ", ".join(f"{c} = ?" for c in values)
    match = " AND ".join(f"{c} = ?" for c in key)
    conn.exec_driver_sql(f"UPDATE {table} SET {sets} WHERE {match}", [tuple(r[i] for i in order) for r in rows])


def bulk_upsert(
    conn: Connection, table: str, key: Sequence[str], columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` (every column), or update the other ``columns`` of a row whose ``key`` is there
    already: one pass, without first reading which keys exist."""
    if not rows:
        return
    values = [c for c in columns if c not in key]
    cols = ", ".join(columns)
    conflict = f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in values)
    if _is_pg(conn):
        _pg_from_staged(
            conn, table, columns, rows, f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {{staged}} {conflict}"
        )
        return
    marks = ", ".join("?" for _ in columns)
    conn.exec_driver_sql(f"INSERT INTO {table} ({cols}) VALUES ({marks}) {conflict}", list(rows))


def fetch_all(conn: Connection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (DB-API parameters: ``?`` on SQLite, ``%s`` on PostgreSQL) as plain tuples, through
    the driver's cursor in the caller's transaction: no per-row wrapping, for results of 10^5 rows."""
    cur = _raw(conn).cursor()
    try:
        cur.execute(sql, tuple(params)) if params else cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()] if _is_pg(conn) else cur.fetchall()
    finally:
        cur.close()


def select_in(conn: Connection, sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` with ``{in}`` standing for "column IN (values)", in as few statements as allowed.

    Example: ``select_in(conn, "SELECT key, id FROM accounts WHERE key {in}", keys)``.
    """
    if not values:
        return []
    if _is_pg(conn):
        return fetch_all(conn, *_pg_any(sql, values))
    # One JSON array parameter instead of thousands of placeholders: SQLite parses it in one pass.
    # The raw cursor's rows are tuples already: SQLAlchemy's Row wrapping doubled the cost of 10^5 rows.
    payload = json.dumps(values if isinstance(values, list) else list(values))
    return fetch_all(conn, sql.replace("{in}", "IN (SELECT value FROM json_each(?))"), (payload,))


def select_joined(conn: Connection, sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` with ``{values}`` standing for a table ``v`` of one column ``value`` holding ``values``
    (distinct, all ints or all texts), to be joined on, e.g.
    ``select_joined(conn, "SELECT c.payee, c.subunits FROM {values} JOIN carries c ON c.payee = v.value", payees)``.

    For 10^5 values a join driven by the list probes the other table's index once per value; ``column
    IN (list)`` (``select_in``) first builds a temporary index of the list, 3x slower on SQLite."""
    if not values:
        return []
    if _is_pg(conn):
        array, params = _pg_array(values)
        return fetch_all(conn, sql.replace("{values}", f"unnest({array}) AS v(value)"), params)
    payload = json.dumps(values if isinstance(values, list) else list(values))
    return fetch_all(conn, sql.replace("{values}", "json_each(?) AS v"), (payload,))


_UNIT_SEPARATOR = "\x1f"


def _pg_any(sql: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """``{in}`` as ``= ANY(array)`` (see ``_pg_array``)."""
    array, params = _pg_array(values)
    return sql.replace("{in}", f"= ANY({array})"), params


def _pg_array(values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """An array expression for ``values`` sent as one text parameter that the server splits: psycopg
    dumps a Python list of 10^5 values element by element, 2-4x slower than the query itself. Integers
    go comma-separated; texts separated by U+001F, unless a value holds that character, in which case
    the list goes as a list."""
    types = set(map(type, values))  # in C: a generator over 10^5-10^6 values took most of an accrual's routing
    if types == {int} and -(1 << 63) <= min(values) and max(values) < (1 << 63):
        return "string_to_array(%s, ',')::bigint[]", (",".join(map(str, values)),)
    if types == {str}:
        joined = _UNIT_SEPARATOR.join(values)
        if "" not in values and joined.count(_UNIT_SEPARATOR) == len(values) - 1:  # string_to_array('') is empty
            return "string_to_array(%s, chr(31))", (joined,)
        return "%s::text[]", (list(values),)  # typed, so that unnest() knows the element type
    return "%s", (list(values),)


def amount_param(conn: Connection, value: int) -> Any:
    """An amount as the driver stores it in an ``Amount`` column."""
    return value if _is_pg(conn) else str(value)


def amount_params(conn: Connection, values: Sequence[int]) -> list[Any]:
    """``amount_param`` for many values at once."""
    return list(values) if _is_pg(conn) else [str(v) for v in values]


def chunks(items: Sequence[Any], size: int = SQL_PARAMS_PER_STATEMENT_MAX // 4) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
