"""Opening storage: a database that is not ours is refused, an uninitialised one says to run init,
init is idempotent, and the migrations build exactly ``schema.metadata`` on both backends."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from endcredits.errors import StoreError
from endcredits.store.engine import SQLITE_FILE, Store, head_revision, init_store, open_store
from endcredits.store.schema import metadata
from helpers_money import EXTERNAL, people, row_counts


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    junk = os.urandom(4096)
    (data / SQLITE_FILE).write_bytes(junk)
    for opener in (init_store, open_store):
        with pytest.raises(
            StoreError, match=re.escape(f"{data / SQLITE_FILE} is not an endcredits database (not a SQLite file)")
        ):
            opener(data, None)
    assert (data / SQLITE_FILE).read_bytes() == junk  # left exactly as it was


def _foreign(backend: str, data: Path, db_url: str | None, statements: list[str]) -> None:
    if backend == "sqlite":
        data.mkdir()
        with sqlite3.connect(data / SQLITE_FILE) as conn:
            for s in statements:
                conn.execute(s)
    else:
        engine = create_engine(db_url or "")
        with engine.begin() as conn:
            for s in statements:
                conn.execute(text(s))
        engine.dispose()


def test_a_database_with_foreign_tables_is_refused(backend: str, tmp_path: Path, db_url: str | None) -> None:
    data = tmp_path / "data"
    _foreign(
        backend,
        data,
        db_url,
        ["CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO customers VALUES (1, 'keep me')"],
    )
    for opener in (init_store, open_store):
        with pytest.raises(
            StoreError,
            match=re.escape(
                "is not an endcredits database (it has tables ['customers'] "
                "and no endcredits marker): choose another --data or --db"
            ),
        ):
            opener(data, db_url)
    # A marker table that names another application is refused too (PostgreSQL: the same schema, emptied).
    _foreign(
        backend,
        tmp_path / "other",
        db_url,
        (["DROP TABLE customers"] if backend == "postgresql" else [])
        + [
            "CREATE TABLE endcredits_meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)",
            "INSERT INTO endcredits_meta VALUES ('application', 'other-app')",
        ],
    )
    with pytest.raises(StoreError, match="database is not an endcredits database \\(application='other-app'\\)"):
        init_store(tmp_path / "other", db_url)


def test_an_uninitialised_store_says_to_run_init(backend: str, tmp_path: Path, db_url: str | None) -> None:
    data = tmp_path / "never-initialised"
    if backend == "sqlite":
        with pytest.raises(
            StoreError, match=re.escape(f"no endcredits database in {data}: run `endcredits --data {data} init` first")
        ):
            open_store(data, None)
        assert not data.exists()
    else:
        with pytest.raises(
            StoreError,
            match=re.escape(
                f"database schema is at None, this endcredits needs {head_revision()!r}: run `endcredits init`"
            ),
        ):
            open_store(data, db_url)


def test_init_twice_keeps_the_data_and_open_checks_the_revision(store: Store, db_url: str | None) -> None:
    people(store, "alice")
    before = row_counts(store)
    again = init_store(store.data_dir, db_url)
    try:
        assert row_counts(again) == before
        with again.read() as conn:
            assert conn.execute(
                text("SELECT value FROM endcredits_meta WHERE key = 'application'")
            ).scalars().all() == ["endcredits"]
    finally:
        again.dispose()
    opened = open_store(store.data_dir, db_url)
    try:
        assert row_counts(opened) == before
    finally:
        opened.dispose()
    # A schema at another revision is refused with the way out.
    with store.write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    with pytest.raises(
        StoreError, match=re.escape(f"database schema is at 'f00d', this endcredits needs {head_revision()!r}")
    ):
        open_store(store.data_dir, db_url)


def test_the_migrations_build_exactly_the_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert differences == []


def test_a_store_at_0001_upgrades_and_reads_its_accrual_rows_beside_segments(
    backend: str, tmp_path: Path, db_url: str | None
) -> None:
    """Before 0002 an accrual's legs were rows; after it, a segment. A store upgraded in place keeps both,
    and every reader and verify adds them together."""
    from alembic import command

    from endcredits.ledger import TransferRequest
    from endcredits.ledger.accrue import accrue
    from endcredits.ledger.records import account_balances, accrued_by_account, post_transfer
    from endcredits.ledger.verify import verify
    from endcredits.store.engine import _alembic_config, _make_engine, resolve_location
    from helpers_money import agreement, on_time, register_model, usage

    data, url = resolve_location(tmp_path / "old", db_url)
    data.mkdir(parents=True)
    engine = _make_engine(url)
    with engine.begin() as conn:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("INSERT INTO endcredits_meta (key, value) VALUES ('application', 'endcredits')"))
    engine.dispose()
    upgraded = init_store(data, db_url)
    try:
        (a,) = people(upgraded, "a")
        register_model(upgraded)
        with upgraded.write() as conn:  # an accrual as 0001 stored it: legs rows
            post_transfer(
                conn,
                TransferRequest(
                    "old/EUR/2026-01", "accrual", "EUR", {f"payable:person:{a}:EUR": 700, "pool:EUR": -700}
                ),
            )
        accrue(
            upgraded,
            usage([("o1", 1000, on_time(1), [(f"person:{a}", 1)])]),
            agreement(pool_rate="1"),
            event_id="new",
            source=EXTERNAL,
        )
        with upgraded.read() as conn:
            assert account_balances(conn)[f"payable:person:{a}:EUR"] == 1700
            assert accrued_by_account(conn, currency="EUR", period="2026-01") == {
                f"payable:person:{a}:EUR": 1700,
                "pool:EUR": -1700,
            }
        report = verify(upgraded)
        assert report.ok, report.problems
    finally:
        upgraded.dispose()


def test_head_revision_read_off_the_files_is_alembics_head() -> None:
    """``open_store`` reads the head off the migration files without importing Alembic; it must agree."""
    from alembic.script import ScriptDirectory

    from endcredits.store.engine import _alembic_config

    assert head_revision() == ScriptDirectory.from_config(_alembic_config()).get_current_head()
