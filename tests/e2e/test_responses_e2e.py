"""The Responses and Conversations APIs with the official SDK against `faceplate serve` and the bundled model.

Every JSON body and SSE event is validated against OpenAI's spec by the client's transport, and
the SDK runs with strict response validation. The 135M model's answers are poor: these tests
check structure, statuses, ids and what the grammar guarantees (schemas), never its wisdom.

One server for this module, with two API keys, so that ownership (another key sees nothing)
can be checked on the same server.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any, Literal

import httpx2
import jsonschema
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel

from tests.conformance import ValidatingTransport
from tests.e2e.conftest import E2E_KEY
from tests.e2e.keys_helpers import CHAT, chat_only
from tests.serverproc import ServerProcess, start_server

MODEL = CHAT
OTHER_KEY = "sk-e2e-other-key-0123456789"
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
SHORT = {"instructions": "Answer in one word.", "input": "What is the capital of France?"}
LONG_STORY = "Write a very long story about a dragon, a knight and a princess, with many chapters."

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": WEATHER_SCHEMA,
    "strict": True,
}


class Verdict(BaseModel):
    """Short by construction: the grammar allows only a few tokens, so a response always completes."""

    answer: Literal["yes", "no"]
    confident: bool


VERDICT_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "name": "verdict",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}, "confident": {"type": "boolean"}},
        "required": ["answer", "confident"],
        "additionalProperties": False,
    },
}
VERDICT_ASK = "Is Paris the capital of France?"


class City(BaseModel):
    name: str
    population: int


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """This module's server (it overrides the session one, so ``client`` uses it): the chat model, two keys."""
    srv = start_server([*chat_only(), "--api-key", E2E_KEY, "--api-key", OTHER_KEY], log_dir=tmp_path_factory.mktemp("responses"))
    yield srv
    srv.stop()


@pytest.fixture
def other(server: ServerProcess) -> Iterator[openai.OpenAI]:
    """The official client with the second key: another owner on the same server."""
    c = openai.OpenAI(
        base_url=server.base_url,
        api_key=OTHER_KEY,
        http_client=httpx2.Client(transport=ValidatingTransport(), timeout=120),
        max_retries=0,
        _strict_response_validation=True,
    )
    yield c
    c.close()


@pytest.fixture(scope="module")
def weather_call(server: ServerProcess) -> Response:
    """A stored response whose only output is a forced ``get_weather`` call (shared by the tool tests)."""
    with openai.OpenAI(
        base_url=server.base_url,
        api_key=E2E_KEY,
        http_client=httpx2.Client(transport=ValidatingTransport(), timeout=120),
        max_retries=0,
        _strict_response_validation=True,
    ) as c:
        return c.responses.create(
            model=MODEL,
            instructions="Use the tools.",
            input="What is the weather in Paris?",
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            tool_choice="required",
            max_output_tokens=48,
            temperature=0,
        )


def check_stream(events: list[ResponseStreamEvent]) -> Response:
    """The invariants of one complete stream, as the SDKs rely on them; returns the terminal event's response."""
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    terminal = [e for e in events if e.type in TERMINAL]
    assert terminal == [events[-1]], [e.type for e in events]
    for ev in events:
        if ev.type == "response.output_item.added":
            item = ev.item
            if item.type == "message":
                assert item.content == []
            elif item.type == "function_call":
                assert item.arguments == ""
    final: Response = events[-1].response  # type: ignore[union-attr]
    done = [e.item for e in events if e.type == "response.output_item.done"]  # type: ignore[union-attr]
    assert done == final.output  # what was streamed is what the object holds: ids, call ids, texts, statuses
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert deltas == final.output_text
    return final


def _finish_by_polling(client: openai.OpenAI, rid: str, timeout: float = 90) -> Response:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        obj = client.responses.retrieve(rid)
        seen.append(obj.status)
        if obj.status not in ("queued", "in_progress"):
            return obj
        assert time.monotonic() < deadline, f"still {obj.status} after {timeout}s: {seen}"
        time.sleep(0.1)


# -- create, stream, parse


def test_create_text(client: openai.OpenAI) -> None:
    r = client.responses.create(model=MODEL, **SHORT, max_output_tokens=16, temperature=0, metadata={"case": "text"})
    assert r.id.startswith("resp_") and r.object == "response" and r.model == MODEL
    assert r.status in ("completed", "incomplete")
    if r.status == "incomplete":
        assert r.incomplete_details is not None and r.incomplete_details.reason == "max_output_tokens"
    assert r.metadata == {"case": "text"} and r.instructions == SHORT["instructions"]
    assert r.store is True and r.background is False and r.previous_response_id is None
    (msg,) = r.output
    assert msg.type == "message" and msg.id.startswith("msg_") and msg.role == "assistant"
    assert r.output_text and r.output_text == "".join(p.text for p in msg.content if p.type == "output_text")
    assert r.usage is not None and r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 16
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r._request_id


def test_stream_helper_gives_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=MODEL, input=VERDICT_ASK, text_format=Verdict, max_output_tokens=32, temperature=0
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert final.status == "completed" and final.id == events[0].response.id  # type: ignore[union-attr]
    assert isinstance(final.output_parsed, Verdict)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert text == final.output_text and Verdict.model_validate_json(text) == final.output_parsed


def test_create_stream_events_follow_the_protocol(client: openai.OpenAI) -> None:
    with client.responses.create(model=MODEL, **SHORT, max_output_tokens=16, temperature=0, stream=True) as stream:
        events = list(stream)
    final = check_stream(events)
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert final.status in ("completed", "incomplete") and final.usage is not None
    assert client.responses.retrieve(final.id) == final  # the stored object is what the stream ended with


def test_function_call_arguments_match_the_tool_schema(weather_call: Response) -> None:
    assert weather_call.status == "completed"
    assert weather_call.tool_choice == "required" and weather_call.tools[0].name == "get_weather"  # type: ignore[union-attr]
    calls = [o for o in weather_call.output if o.type == "function_call"]
    assert calls and [o.type for o in weather_call.output][-len(calls) :] == ["function_call"] * len(calls)
    for call in calls:
        assert call.name == "get_weather" and call.call_id and call.id and call.id.startswith("fc_")
        jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)


def test_a_custom_tool_call_matches_its_regex_grammar(client: openai.OpenAI) -> None:
    pin = {"type": "grammar", "syntax": "regex", "definition": "[0-9]{4}"}
    tool = {"type": "custom", "name": "unlock", "description": "Unlock the door with a PIN", "format": pin}
    made = client.responses.create(
        model=MODEL,
        input="Unlock the door.",
        tools=[tool],  # type: ignore[list-item]
        tool_choice={"type": "custom", "name": "unlock"},
        max_output_tokens=48,
        temperature=0,
    )
    (call,) = [o for o in made.output if o.type == "custom_tool_call"]
    assert call.name == "unlock" and call.call_id and re.fullmatch("[0-9]{4}", call.input), call.input


def test_function_call_streams_argument_deltas(client: openai.OpenAI) -> None:
    with client.responses.create(
        model=MODEL,
        input="What is the weather in Rome?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=48,
        temperature=0,
        stream=True,
    ) as stream:
        events = list(stream)
    final = check_stream(events)
    (call,) = [o for o in final.output if o.type == "function_call"]
    jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")  # type: ignore[union-attr]
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert deltas == done.arguments == call.arguments  # type: ignore[union-attr]


def _call(response: Response) -> Any:
    return next(o for o in response.output if o.type == "function_call")


RESULT = '{"temperature": 21, "unit": "celsius"}'


def _round_trip(weather_call: Response) -> tuple[list[Any], list[Any]]:
    """The tool's result for the chain, and the same turn as stateless input items (minus the old instructions)."""
    call = _call(weather_call)
    result = {"type": "function_call_output", "call_id": call.call_id, "output": RESULT}
    stateless = [
        {"role": "user", "content": "What is the weather in Paris?"},
        call.model_dump(exclude_none=True),  # the call exactly as it came back, id and status included
        result,
    ]
    return [result], stateless


def test_tool_round_trip_with_previous_response_id(client: openai.OpenAI, weather_call: Response) -> None:
    chained, stateless = _round_trip(weather_call)
    r = client.responses.create(
        model=MODEL,
        previous_response_id=weather_call.id,
        input=chained,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="none",
        max_output_tokens=16,
        temperature=0,
    )
    assert r.previous_response_id == weather_call.id and r.status in ("completed", "incomplete")
    assert [o.type for o in r.output] == ["message"] and r.output_text
    # the prompt was the first turn (its input and the call, not its instructions) and the result
    same = client.responses.input_tokens.count(
        model=MODEL,
        input=stateless,
        tools=[WEATHER_TOOL],
        tool_choice="none",  # type: ignore[arg-type]
    )
    assert r.usage is not None and r.usage.input_tokens == same.input_tokens
    alone = client.responses.input_tokens.count(model=MODEL, input=RESULT, tools=[WEATHER_TOOL], tool_choice="none")  # type: ignore[list-item]
    assert r.usage.input_tokens > alone.input_tokens


def test_tool_round_trip_stateless(client: openai.OpenAI, weather_call: Response) -> None:
    chained, stateless = _round_trip(weather_call)
    r = client.responses.create(
        model=MODEL,
        input=stateless,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="none",
        store=False,
        max_output_tokens=16,
        temperature=0,
    )
    assert r.store is False and [o.type for o in r.output] == ["message"] and r.output_text
    same = client.responses.input_tokens.count(
        model=MODEL,
        previous_response_id=weather_call.id,
        input=chained,
        tools=[WEATHER_TOOL],
        tool_choice="none",  # type: ignore[arg-type]
    )
    assert r.usage is not None and r.usage.input_tokens == same.input_tokens
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)  # store: false is never kept
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model=MODEL, previous_response_id=r.id, input="And tomorrow?", max_output_tokens=16)
    assert bad.value.code == "previous_response_not_found"  # nor chained from


def test_parse_with_a_pydantic_text_format(client: openai.OpenAI) -> None:
    r = client.responses.parse(
        model=MODEL, input="Name a big city and its population.", text_format=City, max_output_tokens=48, temperature=0
    )
    assert r.status == "completed"
    assert isinstance(r.output_parsed, City)
    assert r.text is not None and r.text.format is not None and r.text.format.type == "json_schema"
    assert City.model_validate_json(r.output_text) == r.output_parsed  # the bare JSON document, no prose


# -- state: chains, stored objects


def test_a_chain_reuses_the_prefix_cache(client: openai.OpenAI) -> None:
    one = client.responses.create(model=MODEL, input="Tell me about Paris.", max_output_tokens=16, temperature=0)
    two = client.responses.create(
        model=MODEL, previous_response_id=one.id, input="And about Rome?", max_output_tokens=16, temperature=0
    )
    assert two.previous_response_id == one.id and two.status in ("completed", "incomplete")
    assert one.usage is not None and two.usage is not None
    assert two.usage.input_tokens > one.usage.input_tokens + one.usage.output_tokens  # turn one is in the prompt
    # turn two's prompt starts with turn one's, rendered from the stored items: its tokens come from the cache
    assert two.usage.input_tokens_details.cached_tokens >= one.usage.input_tokens
    assert client.responses.input_items.list(two.id).data[0].content[0].text == "And about Rome?"  # type: ignore[union-attr]


def test_retrieve_input_items_and_delete(client: openai.OpenAI, transport: ValidatingTransport) -> None:
    inputs: list[Any] = [{"role": "user", "content": f"Message number {i}."} for i in range(3)]
    made = client.responses.create(model=MODEL, input=inputs, max_output_tokens=16, temperature=0)
    assert client.responses.retrieve(made.id) == made

    def texts(items: Any) -> list[str]:
        return [i.content[0].text for i in items]

    desc = client.responses.input_items.list(made.id)
    assert texts(desc.data) == [f"Message number {i}." for i in (2, 1, 0)]  # newest first by default
    assert all(i.type == "message" and i.id for i in desc.data) and not desc.has_more
    assert desc.first_id == desc.data[0].id and desc.last_id == desc.data[-1].id
    asc = client.responses.input_items.list(made.id, order="asc")
    assert texts(asc.data) == [f"Message number {i}." for i in range(3)]
    assert [i.id for i in asc.data] == [i.id for i in reversed(desc.data)]

    before = len(transport.responses)
    paged = list(client.responses.input_items.list(made.id, limit=1, order="asc"))  # the SDK pages with after=
    assert [i.id for i in paged] == [i.id for i in asc.data]
    pages = [b for b in transport.responses[before:] if isinstance(b, dict) and b.get("object") == "list"]
    assert [len(p["data"]) for p in pages] == [1, 1, 1] and [p["has_more"] for p in pages] == [True, True, False]

    assert client.responses.delete(made.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made.id)


def test_input_tokens_count_matches_create(client: openai.OpenAI, weather_call: Response) -> None:
    counted = client.responses.input_tokens.count(
        model=MODEL,
        instructions="Use the tools.",
        input="What is the weather in Paris?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
    )  # the request that made weather_call, counted and not run
    assert counted.object == "response.input_tokens"
    assert weather_call.usage is not None and counted.input_tokens == weather_call.usage.input_tokens
    bare = client.responses.input_tokens.count(model=MODEL, input="What is the weather in Paris?")
    assert 0 < bare.input_tokens < counted.input_tokens  # the tools are part of the prompt
    chained = client.responses.input_tokens.count(model=MODEL, previous_response_id=weather_call.id, input="Thanks.")
    assert chained.input_tokens > bare.input_tokens  # the stored turn is counted too


# -- conversations


def test_conversation_lifecycle(client: openai.OpenAI) -> None:
    conv = client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "My name is Ada."}], metadata={"topic": "names"}
    )
    assert conv.id.startswith("conv_") and conv.object == "conversation" and conv.metadata == {"topic": "names"}
    first = client.responses.create(model=MODEL, conversation=conv.id, input="Hello!", max_output_tokens=16, temperature=0)
    second = client.responses.create(
        model=MODEL, conversation={"id": conv.id}, input="What is my name?", max_output_tokens=16, temperature=0
    )
    assert first.conversation is not None and first.conversation.id == conv.id
    assert second.conversation is not None and second.conversation.id == conv.id
    assert first.usage is not None and second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens  # turn one was in it

    items = list(client.conversations.items.list(conv.id, order="asc"))
    assert [(i.type, i.role) for i in items] == [  # type: ignore[union-attr]
        ("message", "user"),
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
    ]
    assert [i.content[0].text for i in items[:2]] == ["My name is Ada.", "Hello!"]  # type: ignore[union-attr]
    assert items[3].content[0].text == "What is my name?"  # type: ignore[union-attr]
    assert items[2].id == first.output[0].id and items[4].id == second.output[0].id
    assert items[2].content[0].text == first.output_text and items[4].content[0].text == second.output_text  # type: ignore[union-attr]
    newest = client.conversations.items.list(conv.id, limit=2)  # desc by default
    assert [i.id for i in newest.data] == [items[4].id, items[3].id] and newest.has_more
    paged = list(client.conversations.items.list(conv.id, limit=2, order="asc"))  # the SDK pages on last_id
    assert [i.id for i in paged] == [i.id for i in items]

    added = client.conversations.items.create(conv.id, items=[{"type": "message", "role": "user", "content": "Remember this."}])
    (new,) = added.data
    assert new.type == "message" and new.id and added.first_id == added.last_id == new.id
    got = client.conversations.items.retrieve(new.id, conversation_id=conv.id)
    assert got.id == new.id and got.content[0].text == "Remember this."  # type: ignore[union-attr]
    assert list(client.conversations.items.list(conv.id, order="asc"))[-1].id == new.id
    after_delete = client.conversations.items.delete(new.id, conversation_id=conv.id)
    assert after_delete.id == conv.id and after_delete.object == "conversation"
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(new.id, conversation_id=conv.id)
    assert [i.id for i in client.conversations.items.list(conv.id, order="asc")] == [i.id for i in items]

    updated = client.conversations.update(conv.id, metadata={"topic": "greetings"})
    assert updated.metadata == {"topic": "greetings"} and updated.created_at == conv.created_at
    assert client.conversations.retrieve(conv.id).metadata == {"topic": "greetings"}
    gone = client.conversations.delete(conv.id)
    assert gone.id == conv.id and gone.deleted is True and gone.object == "conversation.deleted"
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, conversation=conv.id, input="x", max_output_tokens=16)
    assert client.responses.retrieve(first.id).status == first.status  # the responses outlive the conversation


def test_a_tool_round_trip_inside_a_conversation(client: openai.OpenAI) -> None:
    conv = client.conversations.create()
    asked = client.responses.create(
        model=MODEL,
        conversation=conv.id,
        input="What is the weather in Paris?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
        max_output_tokens=48,
        temperature=0,
    )
    call = _call(asked)
    answered = client.responses.create(
        model=MODEL,
        conversation=conv.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": RESULT}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="none",
        max_output_tokens=16,
        temperature=0,
    )
    assert [o.type for o in answered.output] == ["message"]
    items = list(client.conversations.items.list(conv.id, order="asc"))
    assert [i.type for i in items] == ["message", "function_call", "function_call_output", "message"]
    assert items[1].id == call.id and items[1].call_id == items[2].call_id == call.call_id  # type: ignore[union-attr]
    assert items[3].id == answered.output[0].id
    (given,) = client.responses.input_items.list(answered.id).data
    assert given.type == "function_call_output" and given.id == items[2].id
    got = client.conversations.items.retrieve(items[2].id, conversation_id=conv.id)
    assert got.type == "function_call_output" and got.output == RESULT  # type: ignore[union-attr]


# -- background


def test_background_is_polled_to_completion(client: openai.OpenAI) -> None:
    made = client.responses.create(
        model=MODEL, input=VERDICT_ASK, text={"format": VERDICT_FORMAT}, max_output_tokens=32, temperature=0, background=True
    )  # type: ignore[call-overload]
    assert made.background is True and made.status in ("queued", "in_progress") and made.output == []
    done = _finish_by_polling(client, made.id)
    assert done.status == "completed" and done.completed_at is not None and done.usage is not None
    assert isinstance(Verdict.model_validate_json(done.output_text), Verdict)
    again = client.responses.cancel(made.id)  # cancelling a finished response returns it as it is
    assert again.status == "completed" and again == done


def test_cancel_a_running_background_response(client: openai.OpenAI) -> None:
    made = client.responses.create(model=MODEL, input=LONG_STORY, max_output_tokens=1000, temperature=0, background=True)
    deadline = time.monotonic() + 30
    while (now := client.responses.retrieve(made.id)).status == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert now.status == "in_progress"
    cancelled = client.responses.cancel(made.id)
    assert cancelled.status == "cancelled" and cancelled.id == made.id
    assert cancelled.usage is None or cancelled.usage.output_tokens < 1000
    assert client.responses.cancel(made.id).status == "cancelled"  # idempotent
    stored = client.responses.retrieve(made.id)
    assert stored.status == "cancelled" and stored == cancelled


def test_background_stream_resumes_where_it_was_dropped(client: openai.OpenAI) -> None:
    stream = client.responses.create(
        model=MODEL,
        input=VERDICT_ASK,
        text={"format": VERDICT_FORMAT},  # type: ignore[typeddict-item]
        max_output_tokens=32,
        temperature=0,
        background=True,
        stream=True,
    )
    seen: list[ResponseStreamEvent] = []
    for ev in stream:
        seen.append(ev)
        if len(seen) == 5:
            break
    stream.close()  # the client drops; a background response goes on
    rid = seen[0].response.id  # type: ignore[union-attr]
    n = seen[-1].sequence_number
    assert [e.sequence_number for e in seen] == list(range(5))

    with client.responses.retrieve(rid, stream=True, starting_after=n) as resumed:
        rest = list(resumed)
    assert rest[0].sequence_number == n + 1
    final = check_stream(seen + rest)
    assert final.status == "completed" and isinstance(Verdict.model_validate_json(final.output_text), Verdict)
    assert client.responses.retrieve(rid) == final

    # the SDK's helper: it replays from the start and drops what it already has
    with client.responses.stream(response_id=rid, starting_after=n) as helper:
        again = list(helper)
        helper_final = helper.get_final_response()
    assert [e.sequence_number for e in again] == [e.sequence_number for e in rest]
    assert again[-1].type == "response.completed" and helper_final.id == rid
    assert helper_final.output_text == final.output_text

    with client.responses.retrieve(rid, stream=True) as replay:  # after the end, the whole stream, same numbers
        assert [e.sequence_number for e in replay] == list(range(len(seen) + len(rest)))


# -- errors: every one a 4xx JSON body before any stream


def _expect(exc: pytest.ExceptionInfo[openai.APIStatusError], status: int, code: str | None, param: str | None) -> None:
    e = exc.value
    assert e.status_code == status and (e.code, e.param) == (code, param), (e.status_code, e.code, e.param, e.message)


def test_bad_state_requests(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model=MODEL, input="x", previous_response_id="resp_unknown", max_output_tokens=16)
    _expect(bad, 400, "previous_response_not_found", "previous_response_id")
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model=MODEL, input="x", previous_response_id="resp_unknown", conversation="conv_x")
    assert bad.value.param in ("previous_response_id", "conversation")
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model=MODEL, input="x", background=True, store=False)
    assert bad.value.param in ("background", "store")
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model=MODEL, input="x", tools=[{"type": "web_search"}], stream=True)
    _expect(bad, 400, None, "tools[0].type")
    with pytest.raises(openai.NotFoundError) as nf:
        client.responses.create(model=MODEL, input="x", conversation="conv_unknown")
    assert nf.value.param == "conversation"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_unknown")
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve("conv_unknown")


def test_context_overflow_is_a_400_before_any_event(client: openai.OpenAI, transport: ValidatingTransport) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model=MODEL, input="word " * 20000, max_output_tokens=16, stream=True)
    _expect(bad, 400, "context_length_exceeded", "input")
    assert not [b for b in transport.responses if isinstance(b, dict) and "sequence_number" in b]


def test_another_key_sees_nothing(client: openai.OpenAI, other: openai.OpenAI) -> None:
    mine = client.responses.create(model=MODEL, **SHORT, max_output_tokens=16, temperature=0)
    conv = client.conversations.create(items=[{"type": "message", "role": "user", "content": "private"}])
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.cancel(mine.id)
    with pytest.raises(openai.BadRequestError) as bad:
        other.responses.create(model=MODEL, input="x", previous_response_id=mine.id, max_output_tokens=16)
    _expect(bad, 400, "previous_response_not_found", "previous_response_id")
    with pytest.raises(openai.NotFoundError):
        other.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        other.conversations.items.list(conv.id)
    with pytest.raises(openai.NotFoundError):
        other.conversations.delete(conv.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model=MODEL, input="x", conversation=conv.id, max_output_tokens=16)
    # and the owner still has both, untouched
    assert client.responses.retrieve(mine.id) == mine
    assert [i.content[0].text for i in client.conversations.items.list(conv.id)] == ["private"]  # type: ignore[union-attr]
