"""Fixtures shared by every test folder: throwaway PostgreSQL and Redis (tests/services.py)."""

from __future__ import annotations

import pytest

from tests.services import mark_service_tests, pg_database, postgres_url, redis_clean, redis_url

__all__ = ["pg_database", "postgres_url", "redis_clean", "redis_url"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_service_tests(items)
