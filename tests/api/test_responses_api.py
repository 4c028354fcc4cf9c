"""POST /v1/responses in process (fake engine): objects, event streams, tools, formats, errors.

Every body and event is validated against OpenAI's spec; streams are checked for the
invariants the SDKs rely on (sequence numbers, empty opened items, one terminal event).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from faceplate.engines.base import ChatRequest
from faceplate.engines.fake import FakeEngine
from faceplate.service.services import Services
from tests import spec
from tests.api.conftest import client_for

CALL = '<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>'
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def sse(body: str) -> list[dict[str, Any]]:
    """Events, checking that each ``event:`` line names its data's type and that no [DONE] is sent."""
    out = []
    for block in body.split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln and not ln.startswith(":")]
        if not lines:
            continue
        name = next(ln[6:].strip() for ln in lines if ln.startswith("event:"))
        data = json.loads("\n".join(ln[5:].lstrip() for ln in lines if ln.startswith("data:")))
        assert data["type"] == name
        out.append(data)
    return out


def check_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The invariants of one complete stream; returns the terminal event's response."""
    for ev in events:
        spec.validate(ev, "ResponseStreamEvent")
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    terminal = [e for e in events if e["type"] in ("response.completed", "response.incomplete", "response.failed")]
    assert terminal == [events[-1]]
    for ev in events:
        if ev["type"] == "response.output_item.added":
            item = ev["item"]
            assert item.get("content", []) == [] if item["type"] == "message" else item.get("arguments", "") == ""
    final = events[-1]["response"]
    done_items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done_items == final["output"]  # what was streamed is what the object holds
    texts = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert texts == "".join(p["text"] for i in final["output"] if i["type"] == "message" for p in i["content"])
    return final


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine("fake-model", n_ctx=4096)  # fake tokens are bytes: tool prompts are long


class Spy:
    """Records the engine requests (messages, tools, format) the service builds."""

    def __init__(self, engine: FakeEngine) -> None:
        self.requests: list[ChatRequest] = []
        real = engine.prepare_chat

        async def prepare(request: ChatRequest, cpu: Any) -> Any:
            self.requests.append(request)
            return await real(request, cpu)

        engine.prepare_chat = prepare  # type: ignore[method-assign]


async def test_a_text_response_is_stored_and_retrieved_as_created(rapi: httpx.AsyncClient) -> None:
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "hello", "metadata": {"k": "v"}})
    assert r.status_code == 200, r.text
    obj = r.json()
    spec.validate(obj, "Response")
    assert obj["status"] == "completed" and obj["object"] == "response" and obj["metadata"] == {"k": "v"}
    assert obj["id"].startswith("resp_") and obj["output"][0]["id"].startswith("msg_")
    part = obj["output"][0]["content"][0]
    assert part["type"] == "output_text" and part["text"] and part["annotations"] == [] and part["logprobs"] == []
    usage = obj["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert "x-request-id" in r.headers
    got = await rapi.get(f"/v1/responses/{obj['id']}")
    assert got.status_code == 200 and got.json() == obj


async def test_the_stream_and_the_stored_object_agree(rapi: httpx.AsyncClient) -> None:
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "hi", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in r.text
    events = sse(r.text)
    final = check_stream(events)
    types = [e["type"] for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert (await rapi.get(f"/v1/responses/{final['id']}")).json() == final


async def test_hitting_max_output_tokens_ends_incomplete(rapi: httpx.AsyncClient) -> None:
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "hi", "max_output_tokens": 16, "stream": True})
    final = check_stream(sse(r.text))
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"


async def test_a_function_call_streams_as_an_item_with_argument_deltas(rapi: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = [CALL]
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "weather?", "tools": [WEATHER], "stream": True})
    events = sse(r.text)
    final = check_stream(events)
    (call,) = final["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["status"] == "completed"
    assert json.loads(call["arguments"]) == {"city": "Paris"} and call["call_id"] and call["id"].startswith("fc_")
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    (done,) = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert deltas == done["arguments"] == call["arguments"] and done["name"] == "get_weather"
    assert not [e for e in events if e["type"].startswith("response.content_part")]
    assert final["tools"][0]["strict"] is True  # OpenAI's default for Responses function tools


async def test_the_tool_round_trip_continues_the_chain(rapi: httpx.AsyncClient, engine: FakeEngine) -> None:
    spy = Spy(engine)
    engine.script = [CALL]
    first = (
        await rapi.post(
            "/v1/responses", json={"model": "fake-model", "instructions": "be terse", "input": "weather?", "tools": [WEATHER]}
        )
    ).json()
    call = first["output"][0]
    engine.script = ["It is sunny."]
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": '{"temp": 21}'}
    r = await rapi.post(
        "/v1/responses", json={"model": "fake-model", "previous_response_id": first["id"], "input": [output], "tools": [WEATHER]}
    )
    assert r.status_code == 200, r.text
    spec.validate(r.json(), "Response")
    msgs = spy.requests[-1].messages
    assert [m.role for m in msgs] == ["user", "assistant", "tool"]  # the old instructions are not carried over
    assert msgs[1].tool_calls[0].id == call["call_id"] and msgs[2].tool_call_id == call["call_id"]
    assert r.json()["output"][0]["content"][0]["text"] == "It is sunny."


async def test_a_stateless_round_trip_sends_the_call_back_as_input(rapi: httpx.AsyncClient, engine: FakeEngine) -> None:
    spy = Spy(engine)
    engine.script = ["ok"]
    items = [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "21C"},
        {"type": "reasoning", "id": "rs_1", "summary": []},  # accepted without content, left out of the prompt
    ]
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": items, "tools": [WEATHER], "store": False})
    assert r.status_code == 200, r.text
    assert [m.role for m in spy.requests[-1].messages] == ["user", "assistant", "tool"]
    assert (await rapi.get(f"/v1/responses/{r.json()['id']}")).status_code == 404  # store: false is never kept


async def test_text_format_json_schema_reaches_the_engine_and_is_echoed(rapi: httpx.AsyncClient, engine: FakeEngine) -> None:
    spy = Spy(engine)
    engine.script = ['{"name": "Ada"}']
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": False}
    fmt = {"type": "json_schema", "name": "person", "schema": schema, "strict": True}
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "who?", "text": {"format": fmt}})
    assert r.status_code == 200, r.text
    rf = spy.requests[-1].response_format
    assert rf.type == "json_schema" and rf.schema == schema and rf.strict
    assert r.json()["text"]["format"] == fmt
    assert json.loads(r.json()["output"][0]["content"][0]["text"]) == {"name": "Ada"}


async def test_custom_tools_return_the_bare_input(rapi: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = ['<tool_call>{"name":"apply_patch","arguments":{"input":"*** Begin Patch"}}</tool_call>']
    tool = {"type": "custom", "name": "apply_patch", "description": "Apply a patch"}
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "patch it", "tools": [tool], "stream": True})
    events = sse(r.text)
    final = check_stream(events)
    (call,) = final["output"]
    assert call["type"] == "custom_tool_call" and call["input"] == "*** Begin Patch" and call["name"] == "apply_patch"
    (done,) = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
    assert done["input"] == "*** Begin Patch"


async def test_tools_this_server_cannot_run_are_a_clean_400_unless_ignored(stored: Services, engine: FakeEngine) -> None:
    tools = [WEATHER, {"type": "web_search"}]
    async with client_for(stored) as api:
        r = await api.post("/v1/responses", json={"model": "fake-model", "input": "x", "tools": tools})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools[1].type"
    spec.validate(r.json(), "ErrorResponse")
    stored.settings = stored.settings.model_copy(update={"responses_ignore_unsupported_tools": True})
    async with client_for(stored) as api:
        r = await api.post("/v1/responses", json={"model": "fake-model", "input": "x", "tools": tools})
    assert r.status_code == 200, r.text
    assert [t["type"] for t in r.json()["tools"]] == ["function"]


async def test_custom_tool_grammars_regex_is_enforced_lark_refused_unless_ignored(stored: Services, engine: FakeEngine) -> None:
    spy = Spy(engine)
    regex = {"type": "custom", "name": "code", "format": {"type": "grammar", "syntax": "regex", "definition": "[0-9]{4}"}}
    lark = {"type": "custom", "name": "patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
    async with client_for(stored) as api:
        r = await api.post("/v1/responses", json={"model": "fake-model", "input": "x", "tools": [regex], "store": False})
        assert r.status_code == 200, r.text
        assert spy.requests[-1].tools[0].parameters["properties"]["input"]["pattern"] == "^(?:[0-9]{4})$"
        r = await api.post("/v1/responses", json={"model": "fake-model", "input": "x", "tools": [lark]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "tools[0].format.syntax"
    stored.settings = stored.settings.model_copy(update={"responses_ignore_unsupported_tools": True})
    async with client_for(stored) as api:
        r = await api.post("/v1/responses", json={"model": "fake-model", "input": "x", "tools": [lark], "store": False})
    assert r.status_code == 200, r.text
    assert spy.requests[-1].tools[0].parameters["properties"]["input"] == {"type": "string"}


@pytest.mark.parametrize(
    ("definition", "fragment"),
    [("(unclosed", "unclosed group"), ("[z-a]", "invalid character class range"), ("[a&&b]", "empty")],
)
async def test_a_custom_tool_regex_that_cannot_compile_is_a_400_naming_it(
    rapi: httpx.AsyncClient, definition: str, fragment: str
) -> None:
    tool = {"type": "custom", "name": "code", "format": {"type": "grammar", "syntax": "regex", "definition": definition}}
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "x", "tools": [WEATHER, tool], "stream": True})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json"), r.text
    spec.validate(r.json(), "ErrorResponse")
    assert r.json()["error"]["param"] == "tools[1].format.definition"
    assert r.json()["error"]["message"].startswith("Invalid regex grammar: ") and fragment in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"previous_response_id": "resp_nope"}, "previous_response_id", "previous_response_not_found"),
        ({"previous_response_id": "resp_x", "conversation": "conv_x"}, "conversation", None),
        ({"background": True, "store": False}, "background", None),
        ({"tool_choice": {"type": "function", "name": "missing"}, "tools": [WEATHER]}, "tool_choice.name", None),
        ({"tool_choice": "required"}, "tool_choice", None),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]}, None, None),
        ({"input": [{"type": "item_reference", "id": "msg_missing"}]}, "input[0].id", None),
    ],
)
async def test_bad_requests_are_4xx_json_before_any_stream(
    rapi: httpx.AsyncClient, body: dict[str, Any], param: str | None, code: str | None
) -> None:
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "x", "stream": True, **body})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    spec.validate(r.json(), "ErrorResponse")
    err = r.json()["error"]
    if param is not None:
        assert err["param"] == param
    else:
        assert err["param"] and err["param"].startswith("input[0].content[0]")
    assert err["code"] == code


async def test_context_overflow_is_a_400_naming_input(rapi: httpx.AsyncClient) -> None:
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "word " * 1000, "stream": True})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert r.json()["error"]["param"] == "input"


async def test_truncation_auto_drops_the_oldest_items(rapi: httpx.AsyncClient, engine: FakeEngine) -> None:
    spy = Spy(engine)
    items = [{"role": "user", "content": f"turn {i} " + "x" * 1000} for i in range(8)]
    body = {"model": "fake-model", "input": items, "truncation": "auto", "max_output_tokens": 16}
    r = await rapi.post("/v1/responses", json=body)
    assert r.status_code == 200, r.text
    kept = spy.requests[-1].messages
    assert 0 < len(kept) < 8 and kept[-1].content == items[-1]["content"]


async def test_a_failure_mid_stream_still_ends_with_a_terminal_event(rapi: httpx.AsyncClient, engine: FakeEngine) -> None:
    real = engine.generate

    def failing(prepared: Any, priority: Any = "interactive") -> Any:
        async def events() -> Any:
            n = 0
            async for ev in real(prepared, priority):
                yield ev
                n += 1
                if n == 3:
                    raise RuntimeError("the engine broke")

        return events()

    engine.generate = failing  # type: ignore[method-assign]
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "hi", "stream": True})
    events = sse(r.text)
    final = check_stream(events)
    assert events[-1]["type"] == "response.failed" and final["status"] == "failed"
    assert final["error"]["code"] == "server_error" and "broke" not in final["error"]["message"]
    assert (await rapi.get(f"/v1/responses/{final['id']}")).json() == final


async def test_input_tokens_counts_what_create_would_send(rapi: httpx.AsyncClient) -> None:
    r = await rapi.post("/v1/responses/input_tokens", json={"model": "fake-model", "input": "hello there"})
    assert r.status_code == 200, r.text
    spec.validate(r.json(), "TokenCountsResource")
    created = (await rapi.post("/v1/responses", json={"model": "fake-model", "input": "hello there"})).json()
    assert r.json()["input_tokens"] == created["usage"]["input_tokens"]


async def test_logprobs_are_given_when_included(rapi: httpx.AsyncClient) -> None:
    body = {"model": "fake-model", "input": "hi", "top_logprobs": 2, "include": ["message.output_text.logprobs"]}
    r = await rapi.post("/v1/responses", json={**body, "stream": True})
    events = sse(r.text)
    final = check_stream(events)
    lps = final["output"][0]["content"][0]["logprobs"]
    assert lps and len(lps[0]["top_logprobs"]) == 2 and "bytes" in lps[0]
