"""End-to-end fixtures: one real server with the bundled models, the official SDK pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import openai
import pytest

from tests.conformance import ValidatingTransport
from tests.serverproc import ServerProcess, start_server
from tests.services import fresh_database

E2E_KEY = "sk-e2e-test-key-0123456789"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(["--api-key", E2E_KEY], log_dir=tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture
def transport() -> ValidatingTransport:
    return ValidatingTransport()


@pytest.fixture
def client(server: ServerProcess, transport: ValidatingTransport) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(
        base_url=server.base_url,
        api_key=E2E_KEY,
        http_client=httpx2.Client(transport=transport, timeout=120),
        max_retries=0,
        _strict_response_validation=True,
    )
    yield c
    c.close()


@pytest.fixture(scope="module")
def database_url(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one test module (the server is started by tests/services.py)."""
    with fresh_database(postgres_url) as url:
        yield url
