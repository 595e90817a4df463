"""Fixtures of the portal tests: the seeded world (``portal_world``) on both backends, and a test client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from portal_world import Seeded, TestClient, seed

from endcredits.service import create_app
from endcredits.store.engine import Store


@pytest.fixture
def seeded(store: Store) -> Seeded:
    return seed(store)


@pytest.fixture
def client(seeded: Seeded) -> Iterator[TestClient]:
    with TestClient(create_app(seeded.store)) as c:
        yield c
