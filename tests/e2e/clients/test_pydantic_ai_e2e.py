"""``pydantic-ai`` through its OpenAI provider, pointed at the server."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator

import httpx2
import pytest
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings

from tests.e2e.clients.conftest import CHAT, KEY
from tests.e2e.clients.models import HI, City
from tests.serverproc import ServerProcess


@pytest.fixture
def model(server: ServerProcess) -> Iterator[OpenAIChatModel]:
    http = httpx2.AsyncClient(timeout=120)
    yield OpenAIChatModel(CHAT, provider=OpenAIProvider(base_url=server.base_url, api_key=KEY, http_client=http))
    # run_sync runs on an event loop that pydantic-ai keeps as this thread's current loop, and the
    # client's pooled connections live on it: close them there, then the loop.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = asyncio.get_event_loop()
    loop.run_until_complete(http.aclose())
    loop.close()
    asyncio.set_event_loop(None)


def test_run_sync_text(model: OpenAIChatModel) -> None:
    agent = Agent(model, instructions="Be terse.", model_settings=ModelSettings(max_tokens=32, temperature=0))
    result = agent.run_sync(HI)
    assert isinstance(result.output, str) and result.output
    assert result.usage.output_tokens > 0


def test_run_sync_output_type(model: OpenAIChatModel) -> None:
    agent = Agent(model, output_type=City, model_settings=ModelSettings(max_tokens=64, temperature=0))
    result = agent.run_sync("Name a city.")
    assert isinstance(result.output, City)
