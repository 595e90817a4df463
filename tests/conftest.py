"""Shared fixtures. Every storage test runs on SQLite and on PostgreSQL; PostgreSQL is never skipped:
if it is down the test fails and says how to start it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from endcredits.store.engine import Store, init_store

# Contact and payment details are sealed at rest with the operator's key (registry/private.py); the tests,
# and the processes they start, use this fixed test key unless one is set.
os.environ.setdefault("ENDCREDITS_SECRET_KEY", "dGVzdHMtb25seS1rZXktLW5ldmVyLWZvci1yZWFsLWQ=")

PG_ADMIN_URL = os.environ.get("ENDCREDITS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_schema_url(schema: str) -> str:
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str | None]:
    """None for SQLite (the data directory's file); a fresh schema for PostgreSQL, dropped afterwards."""
    if backend == "sqlite":
        yield None
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:  # noqa: BLE001 - say how to fix, never skip
        admin.dispose()
        pytest.fail(
            f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({type(exc).__name__}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[Store]:
    s = init_store(tmp_path / "data", db_url)
    try:
        yield s
    finally:
        s.dispose()
