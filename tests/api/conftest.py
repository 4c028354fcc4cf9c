"""In-process API tests: the real app over httpx.ASGITransport, with the deterministic fake engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from faceplate.access.auth import Authenticator
from faceplate.app import create_app
from faceplate.config import Settings
from faceplate.engines.fake import FakeEngine
from faceplate.engines.registry import Registry
from faceplate.service.services import Services

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
