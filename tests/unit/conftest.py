"""The store on SQLite and, where the PostgreSQL service is up, on PostgreSQL: one fixture pair for every store test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faceplate.store import Store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'faceplate.db'}"  # a folder that does not exist yet
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.close()
