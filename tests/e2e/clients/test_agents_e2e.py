"""``openai-agents`` on its Chat Completions model, tracing off (it would export to OpenAI's servers)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, set_tracing_disabled

from tests.e2e.clients.conftest import CHAT, KEY
from tests.e2e.clients.models import HI, City
from tests.serverproc import ServerProcess

set_tracing_disabled(True)


@pytest.fixture
async def model(server: ServerProcess) -> AsyncIterator[OpenAIChatCompletionsModel]:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120) as client:
        yield OpenAIChatCompletionsModel(model=CHAT, openai_client=client)


async def test_runner_run_text_agent(model: OpenAIChatCompletionsModel) -> None:
    agent = Agent(
        name="Assistant",
        instructions="You are a terse assistant.",
        model=model,
        model_settings=ModelSettings(max_tokens=32, temperature=0),
    )
    result = await Runner.run(agent, HI)
    assert isinstance(result.final_output, str) and result.final_output
    assert len(result.raw_responses) == 1
    assert result.raw_responses[0].usage.output_tokens > 0


async def test_runner_run_typed_output(model: OpenAIChatCompletionsModel) -> None:
    agent = Agent(
        name="Geographer",
        instructions="Answer with a city.",
        model=model,
        model_settings=ModelSettings(max_tokens=64, temperature=0),
        output_type=City,
    )
    result = await Runner.run(agent, "Name a city.")
    assert isinstance(result.final_output, City)
