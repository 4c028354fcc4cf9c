"""Fixtures shared by every test folder: throwaway PostgreSQL and Redis (tests/services.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services import mark_service_tests, pg_database, postgres_url, redis_clean, redis_url

__all__ = ["pg_database", "postgres_url", "redis_clean", "redis_url"]


PROCESS_FOLDERS = [Path(__file__).parent / name for name in ("e2e", "browser")]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_service_tests(items)
    for item in items:  # tests that start a real server process: `-m "not e2e"` leaves them out
        if any(folder in Path(str(item.fspath)).parents for folder in PROCESS_FOLDERS):
            item.add_marker(pytest.mark.e2e)
