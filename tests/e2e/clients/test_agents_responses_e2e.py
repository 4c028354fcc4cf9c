"""``openai-agents`` on its default model, ``OpenAIResponsesModel`` (the Responses API), tracing off.

The SDK's defaults are pointed at the server the way an app does it:
``set_default_openai_client(AsyncOpenAI(base_url=..., api_key=...))`` and
``set_default_openai_api("responses")``; an agent is then given only a model name. The
defaults are global, so the fixture puts the previous ones back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx2
import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIConversationsSession,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models import _openai_shared
from pydantic import BaseModel

from tests.e2e.clients.conftest import CHAT, KEY
from tests.serverproc import ServerProcess

set_tracing_disabled(True)


class Recorder(httpx2.AsyncBaseTransport):
    """Keeps every POST /v1/responses body the SDK sends."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.bodies: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST" and request.url.path.endswith("/responses"):
            self.bodies.append(json.loads(request.content))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(server: ServerProcess, recorder: Recorder) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=server.base_url,
        api_key=KEY,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=recorder, timeout=120),
    ) as c:
        saved = (_openai_shared.get_default_openai_client(), _openai_shared.get_use_responses_by_default())
        set_default_openai_client(c, use_for_tracing=False)
        set_default_openai_api("responses")
        try:
            yield c
        finally:
            _openai_shared.set_default_openai_client(saved[0])  # type: ignore[arg-type]
            _openai_shared.set_use_responses_by_default(saved[1])


async def test_an_agent_calls_its_tool_and_answers(client: openai.AsyncOpenAI, recorder: Recorder) -> None:
    calls: list[str] = []

    # The tiny model calls a tool whenever it may, so after its one call the tool is switched off
    # (the SDK's is_enabled) and the second turn can only answer from the tool's result.
    @function_tool(is_enabled=lambda _ctx, _agent: not calls)
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        calls.append(city)
        return f"It is sunny and 21 degrees Celsius in {city}."

    agent = Agent(
        name="Weather",
        instructions="You answer questions about the weather.",
        model=CHAT,  # a name: the default provider makes it an OpenAIResponsesModel on the default client
        tools=[get_weather],
        # tool_choice="required" for the first turn; the SDK resets it once a tool was used
        # (reset_tool_choice, the default), so the loop can end with a text answer
        model_settings=ModelSettings(tool_choice="required", max_tokens=48, temperature=0),
    )
    assert agent.reset_tool_choice is True
    result = await Runner.run(agent, "What is the weather in Paris?", max_turns=3)

    assert len(calls) == 1 and calls[0]  # the tool really ran, once
    assert isinstance(result.final_output, str) and result.final_output.strip()
    assert len(result.raw_responses) == 2 and len(recorder.bodies) == 2
    first, second = recorder.bodies
    assert first["model"] == CHAT and first["tool_choice"] == "required"
    assert [t["name"] for t in first["tools"]] == ["get_weather"]
    assert second.get("tool_choice") in (None, "auto")  # reset after the tool was used
    sent = second["input"]  # the whole turn goes back as input items, matched on call_id
    (call,) = [i for i in sent if i.get("type") == "function_call"]
    (output,) = [i for i in sent if i.get("type") == "function_call_output"]
    assert output["call_id"] == call["call_id"] and "sunny" in output["output"]
    assert json.loads(call["arguments"]) == {"city": calls[0]}
    assert call["call_id"] == result.raw_responses[0].output[0].call_id  # type: ignore[union-attr]
    kinds = [type(item).__name__ for item in result.new_items]
    assert kinds == ["ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"]


async def test_the_default_model_is_the_responses_model(client: openai.AsyncOpenAI) -> None:
    from agents.models.multi_provider import MultiProvider

    model = MultiProvider().get_model(CHAT)
    assert isinstance(model, OpenAIResponsesModel)


class Reply(BaseModel):
    """The session agent's output: short by construction, so every turn completes (the SDK raises on incomplete)."""

    understood: bool
    mood: Literal["happy", "neutral", "sad"]


async def test_a_conversations_session_keeps_history_across_runs(client: openai.AsyncOpenAI, recorder: Recorder) -> None:
    session = OpenAIConversationsSession(openai_client=client)
    agent = Agent(
        name="Assistant",
        instructions="You are a terse assistant.",
        model=CHAT,
        output_type=Reply,
        model_settings=ModelSettings(max_tokens=32, temperature=0),
    )
    first = await Runner.run(agent, "My name is Ada.", session=session)
    assert isinstance(first.final_output, Reply)
    assert recorder.bodies[0]["text"]["format"]["type"] == "json_schema"
    after_one = await session.get_items()
    assert [(i.get("type"), i.get("role")) for i in after_one] == [("message", "user"), ("message", "assistant")]
    assert _text(after_one[0]) == "My name is Ada."
    assert Reply.model_validate_json(_text(after_one[1])) == first.final_output

    recorder.bodies.clear()
    second = await Runner.run(agent, "What is my name?", session=session)
    assert isinstance(second.final_output, Reply)
    (body,) = recorder.bodies
    texts = [_text(i) for i in body["input"]]
    assert texts == [_text(i) for i in after_one] + ["What is my name?"]  # the history went back in, then the question

    items = await session.get_items()
    assert [i["id"] for i in items[:2]] == [i["id"] for i in after_one]
    assert [i.get("role") for i in items] == ["user", "assistant", "user", "assistant"]
    assert _text(items[2]) == "What is my name?"
    assert Reply.model_validate_json(_text(items[3])) == second.final_output
    listed = [i async for i in client.conversations.items.list(session.session_id, order="asc")]
    assert [i.id for i in listed] == [i["id"] for i in items]

    popped = await session.pop_item()
    assert popped is not None and popped["id"] == items[-1]["id"]
    assert [i["id"] for i in await session.get_items()] == [i["id"] for i in items[:3]]
    cid = session.session_id
    await session.clear_session()
    with pytest.raises(openai.NotFoundError):
        await client.conversations.retrieve(cid)


def _text(item: Any) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [])
