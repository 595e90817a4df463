"""Ledger fixtures: a factory for more stores on the same backend as ``store`` (for replays).

The PostgreSQL URL is the one the root conftest uses (``ENDCREDITS_TEST_PG``); PostgreSQL is never skipped."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from endcredits.store.engine import Store, init_store

StoreFactory = Callable[[], Store]


@pytest.fixture
def store_factory(backend: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """Each call makes a fresh, empty store on the test's backend; all are dropped after the test."""
    made: list[Store] = []
    schemas: list[str] = []
    admin_url = os.environ.get("ENDCREDITS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

    def make() -> Store:
        n = len(made)
        if backend == "sqlite":
            s = init_store(tmp_path / f"extra-{n}", None)
        else:
            schema = f"t_{uuid.uuid4().hex[:12]}"
            admin = create_engine(admin_url)
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            admin.dispose()
            schemas.append(schema)
            s = init_store(tmp_path / f"extra-{n}", f"{admin_url}?options=-csearch_path%3D{schema}")
        made.append(s)
        return s

    try:
        yield make
    finally:
        for s in made:
            s.dispose()
        if schemas:
            admin = create_engine(admin_url)
            with admin.begin() as conn:
                for schema in schemas:
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
