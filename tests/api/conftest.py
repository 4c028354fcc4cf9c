"""In-process API tests: the real app over httpx.ASGITransport, with the deterministic fake engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from faceplate.access.auth import Authenticator
from faceplate.app import create_app
from faceplate.config import Settings
from faceplate.engines.fake import FakeEngine
from faceplate.engines.registry import Registry
from faceplate.service.services import Services
from faceplate.store import Store
from faceplate.store.blobs import DirectoryBlobs

API_KEY = "sk-api-test"


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine("fake-model", n_ctx=512)


@pytest.fixture
def services(engine: FakeEngine) -> Services:
    return Services(settings=Settings(api_keys=[API_KEY]), registry=Registry([engine]), auth=Authenticator([API_KEY]))


@pytest.fixture
async def api(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers={"authorization": f"Bearer {API_KEY}"}
    ) as client:
        yield client


OTHER_KEY = "sk-api-other"


@pytest.fixture
def stored(engine: FakeEngine, tmp_path: Path) -> Iterator[Services]:
    """Services with a real SQLite store (responses, conversations, files' metadata), files' bytes in
    ``tmp_path/files``, and two keys that own separate objects."""
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    keys = [API_KEY, OTHER_KEY]
    blobs = DirectoryBlobs(tmp_path / "files")
    yield Services(
        settings=Settings(api_keys=keys), registry=Registry([engine]), auth=Authenticator(keys), store=store, blobs=blobs
    )
    store.close()


def client_for(services: Services, key: str = API_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)),
        base_url="http://test",
        headers={"authorization": f"Bearer {key}"},
    )


@pytest.fixture
async def rapi(stored: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(stored) as client:
        yield client
    await stored.runs.close()


@pytest.fixture
async def other(stored: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(stored, OTHER_KEY) as client:
        yield client
