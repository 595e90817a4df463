"""Opening the database: the embedded SQLite file in a data directory, or PostgreSQL by URL; and times.

The data directory and the SQLite file are created private (``store.files``). Every time is parsed and
stored as UTC text inside the window of ``limits.TIME_YEAR_MIN``..``TIME_YEAR_MAX``.

``init_store`` creates or upgrades the schema through Alembic; ``open_store`` refuses a database that
is not ours or is behind the code's schema, and says how to fix it. Only ``init_store`` imports Alembic
(0.3 s): opening reads the revisions itself, so a command that only reads starts fast.
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.exc import DatabaseError, OperationalError

from endcredits.errors import StoreError, ValidationError
from endcredits.limits import TIME_YEAR_MAX, TIME_YEAR_MIN
from endcredits.store.files import create_private_file, private_dir
from endcredits.store.schema import APPLICATION_ID, meta

if TYPE_CHECKING:
    from alembic.config import Config

DATA_ENV = "ENDCREDITS_DATA"
DB_ENV = "ENDCREDITS_DB"
DEFAULT_DATA_DIR = Path("endcredits-data")
SQLITE_FILE = "endcredits.sqlite3"
_MIGRATIONS = Path(__file__).parent / "migrations"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_PG_WRITE_LOCK = 0x656E6463  # "endc": one writer at a time keeps the audit chain linear
_PG_NAMED_LOCKS = 0x6E616D65  # "name": the class of ``Store.lock``'s two-key locks (a space of their own)


def utc_now() -> str:
    """The current time as the ISO-8601 UTC text stored in every time column."""
    return format_time(dt.datetime.now(dt.UTC))


_TIME_FORM = "ISO-8601 with a timezone such as 2026-11-21T12:00:00Z"
_TIME_WINDOW = f"years {TIME_YEAR_MIN}..{TIME_YEAR_MAX} UTC"


def _in_window(value: dt.datetime, shown: str) -> dt.datetime:
    """``value`` (aware) in UTC, or ``ValidationError`` when it lies outside the years TIME_YEAR_MIN..MAX."""
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:  # year 1 minus an offset, or year 9999 plus one, leaves datetime's range
        utc = None
    if utc is None or not TIME_YEAR_MIN <= utc.year <= TIME_YEAR_MAX:
        raise ValidationError(f"time {shown} is outside the accepted window: give a time in {_TIME_WINDOW}")
    return utc


def format_time(value: dt.datetime) -> str:
    """The stored text of an aware time: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, inside the time window."""
    if not isinstance(value, dt.datetime):
        raise ValidationError(f"time {value!r:.60} must be a datetime with a timezone, in UTC")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"time {value.isoformat()} has no timezone: give it in UTC, such as 2026-11-21T00:00:00Z")
    utc = _in_window(value, value.isoformat())
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S.%f}Z"  # %Y does not pad years below 1000 on every libc


def parse_time(text_value: str) -> dt.datetime:
    """Parse ISO-8601 text with a timezone (``Z`` or an offset); a date alone means midnight UTC. The time
    must lie in the years ``TIME_YEAR_MIN``..``TIME_YEAR_MAX`` (UTC)."""
    if not isinstance(text_value, str):
        raise ValidationError(f"time {text_value!r:.60} must be text: {_TIME_FORM}")
    t = text_value.strip()
    shown = repr(t) if len(t) <= 60 else repr(t[:60]) + "..."
    try:
        if not (t.isascii() and t.isprintable()):  # fromisoformat skips a NUL before the zone
            raise ValueError(t)
        if len(t) == 10:
            value = dt.datetime.fromisoformat(t).replace(tzinfo=dt.UTC)
        else:
            value = dt.datetime.fromisoformat(t)
    except ValueError:
        raise ValidationError(f"malformed time {shown}: write {_TIME_FORM}, in {_TIME_WINDOW}") from None
    if value.tzinfo is None:
        raise ValidationError(f"time {shown} has no timezone: add Z for UTC ({_TIME_FORM})")
    return _in_window(value, shown)


def normalize_time(text_value: str) -> str:
    """``parse_time`` then ``format_time``: the stored text of a time given as text."""
    return format_time(parse_time(text_value))


def parse_period(text_value: str) -> str:
    """A period ``YYYY-MM`` (month 01..12, year in the time window), or a one-line ``ValidationError``."""
    t = text_value if isinstance(text_value, str) else ""
    if (
        len(t) != 7
        or t[4] != "-"
        or not (t[:4] + t[5:]).isascii()
        or not (t[:4] + t[5:]).isdigit()
        or not 1 <= int(t[5:]) <= 12
        or not TIME_YEAR_MIN <= int(t[:4]) <= TIME_YEAR_MAX
    ):
        shown = repr(text_value) if not isinstance(text_value, str) or len(text_value) <= 60 else repr(t[:60])
        raise ValidationError(
            f"period {shown} must be YYYY-MM, a month 01..12 of a year {TIME_YEAR_MIN}..{TIME_YEAR_MAX}, "
            "such as 2026-03"
        )
    return t


@dataclass(frozen=True)
class Store:
    """An open database plus the data directory that holds evidence, payout files and models."""

    engine: Engine
    data_dir: Path

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self, *, beside_others: bool = False) -> Iterator[Connection]:
        """One database transaction for a write; writers are serialized so the audit chain stays linear.

        ``beside_others``: on PostgreSQL, a write that may run beside other such writes (it shares the
        write lock, so no serialized writer runs meanwhile); before it writes anything that needs order
        (an audit entry, a transfer), it takes ``lock(conn, name)``. On SQLite every writer is serialized."""
        # An execution option belongs to this Connection, unlike conn.info, which stays with the pooled
        # DBAPI connection and would turn later reads into write-locking transactions.
        with self.engine.connect().execution_options(endcredits_write=True) as conn, conn.begin():
            if self.backend == "postgresql":
                how = "pg_advisory_xact_lock_shared" if beside_others else "pg_advisory_xact_lock"
                conn.execute(text(f"SELECT {how}(:k)"), {"k": _PG_WRITE_LOCK})
            yield conn

    def lock(self, conn: Connection, name: str) -> None:
        """Inside a ``write(beside_others=True)`` transaction, wait until no other transaction holds
        ``name``, and hold it until this one ends (PostgreSQL; on SQLite the transaction already holds the
        only write lock). Lock names in a fixed order: ``NAME_LOCK_BATCH`` ones before ``ACCRUAL_LOCK``."""
        if self.backend == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:c, hashtext(:n))"), {"c": _PG_NAMED_LOCKS, "n": name})

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only view; on PostgreSQL one snapshot (REPEATABLE READ), so verify and statements see
        the ledger as of one moment even while batches commit (SQLite reads are one snapshot anyway)."""
        with self.engine.connect() as conn:
            if self.backend == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def resolve_location(data_dir: str | Path | None, db_url: str | None) -> tuple[Path, str]:
    """The data directory and database URL from flags, then environment, then defaults."""
    data = Path(data_dir or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR)
    url = db_url or os.environ.get(DB_ENV) or ""
    if not url:
        url = f"sqlite:///{(data / SQLITE_FILE).resolve()}"
    elif url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    elif not url.startswith(("sqlite:///", "postgresql+psycopg://")):
        raise ValidationError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST/DB")
    return data, url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's transaction control the BEGIN (pysqlite's legacy mode would defer it).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = FULL")
    cur.execute("PRAGMA busy_timeout = 30000")
    # 64 MiB of page cache: a batch touches ~10^5 index pages; the default 2 MiB spills constantly.
    cur.execute("PRAGMA cache_size = -65536")
    cur.execute("PRAGMA temp_store = MEMORY")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # A writer takes the write lock up front, so it never fails half-way on a busy database.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("endcredits_write") else "BEGIN")


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)


@functools.cache
def head_revision() -> str:
    """The newest migration's revision: the one no other revises, read off the ``revision`` and
    ``down_revision`` lines of the migration files (Alembic's own answer, checked by a test)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in sorted((_MIGRATIONS / "versions").glob("*.py")):
        found = {k: ast.literal_eval(v) for k, v in _REVISION_LINE.findall(path.read_text(encoding="utf-8"))}
        if not isinstance(found.get("revision"), str):
            raise StoreError(f"migration {path.name} names no revision: reinstall endcredits")
        revisions.add(found["revision"])
        down = found.get("down_revision")
        revised.update([down] if isinstance(down, str) else down or ())
    heads = sorted(revisions - revised)
    if len(heads) != 1:
        raise StoreError(f"the installed migrations have heads {heads}, not one: reinstall endcredits")
    return heads[0]


def _check_sqlite_file(url: str) -> None:
    path = Path(url.removeprefix("sqlite:///"))
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as f:
            if f.read(16) != _SQLITE_MAGIC:
                raise StoreError(f"{path} is not an endcredits database (not a SQLite file): choose another --data")


def _current_state(conn: Connection) -> tuple[bool, str | None]:
    """(is ours, alembic revision). A database with foreign tables and no marker is not ours."""
    tables = set(inspect(conn).get_table_names())
    if not tables:
        return True, None
    if meta.name not in tables:
        raise StoreError(
            f"database {conn.engine.url.render_as_string(hide_password=True)} is not an endcredits database "
            f"(it has tables {sorted(tables)[:3]} and no endcredits marker): choose another --data or --db"
        )
    app = conn.execute(select(meta.c.value).where(meta.c.key == "application")).scalar()
    if app != APPLICATION_ID:
        raise StoreError(f"database is not an endcredits database (application={app!r})")
    if "alembic_version" not in tables:
        return True, None
    versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(versions) > 1:
        raise StoreError(f"database is at several schema revisions {sorted(versions)}: run `endcredits init`")
    return True, versions[0] if versions else None


def init_store(data_dir: str | Path | None = None, db_url: str | None = None) -> Store:
    """Create the data directory and the schema, or upgrade an older endcredits schema. Idempotent."""
    data, url = resolve_location(data_dir, db_url)
    private_dir(data)
    _check_sqlite_file(url)
    if url.startswith("sqlite:///"):
        # Created 0600 before SQLite opens it: SQLite gives its -wal, -shm and -journal files the mode of
        # the database file, so the names in them stay private too.
        db_file = Path(url.removeprefix("sqlite:///"))
        if db_file.name != ":memory:" and db_file.parent.is_dir():
            create_private_file(db_file)
    engine = _make_engine(url)
    from alembic import command

    try:
        with engine.begin() as conn:
            _current_state(conn)
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            if conn.execute(select(meta.c.value).where(meta.c.key == "application")).scalar() is None:
                conn.execute(meta.insert(), [{"key": "application", "value": APPLICATION_ID}])
    except (OperationalError, DatabaseError) as exc:
        engine.dispose()
        raise StoreError(f"cannot initialise the database at {url}: {exc.orig}") from None
    except BaseException:
        engine.dispose()
        raise
    return Store(engine=engine, data_dir=data)


def open_store(data_dir: str | Path | None = None, db_url: str | None = None) -> Store:
    """Open an initialised store; refuse one that is missing, foreign, or at another schema version."""
    data, url = resolve_location(data_dir, db_url)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise StoreError(f"no endcredits database in {data}: run `endcredits --data {data} init` first")
    _check_sqlite_file(url)
    engine = _make_engine(url)
    try:
        with engine.connect() as conn:
            _, revision = _current_state(conn)
    except (OperationalError, DatabaseError) as exc:
        engine.dispose()
        raise StoreError(f"cannot open the database at {url}: {exc.orig}") from None
    except BaseException:
        engine.dispose()
        raise
    if revision != head_revision():
        engine.dispose()
        raise StoreError(
            f"database schema is at {revision!r}, this endcredits needs {head_revision()!r}: run `endcredits init`"
        )
    return Store(engine=engine, data_dir=data)
