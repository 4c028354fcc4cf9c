"""The Responses / Conversations validators and their routing: each must be able to fail as well as pass."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests import spec
from tests.conformance import _ValidatingStream, schema_for
from tests.unit.test_spec import with_

MESSAGE: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "status": "completed",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}],
}

USAGE: dict[str, Any] = {
    "input_tokens": 5,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": 1,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 6,
}

# What OpenAI sends for a finished text answer, every echo field included.
RESPONSE: dict[str, Any] = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1700000000,
    "status": "completed",
    "completed_at": 1700000001,
    "background": False,
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "model": "m",
    "output": [MESSAGE],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "service_tier": "default",
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [{"type": "function", "name": "f", "description": None, "parameters": {"type": "object"}, "strict": True}],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": USAGE,
    "metadata": {},
}


def events() -> list[dict[str, Any]]:
    """A text answer's stream, in OpenAI's order, with sequence numbers from 0."""
    started = {**RESPONSE, "status": "in_progress", "output": [], "usage": None, "completed_at": None}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    out: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": {**MESSAGE, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0, "part": part},
        {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "Hello",
            "logprobs": [],
        },
        {
            "type": "response.output_text.done",
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "text": "Hello",
            "logprobs": [],
        },
        {"type": "response.output_item.done", "output_index": 0, "item": MESSAGE},
        {"type": "response.completed", "response": RESPONSE},
    ]
    return [{**e, "sequence_number": i} for i, e in enumerate(out)]


USER_ITEM: dict[str, Any] = {
    "id": "msg_0",
    "type": "message",
    "role": "user",
    "status": "completed",
    "content": [{"type": "input_text", "text": "hi"}],
}

ITEM_LIST: dict[str, Any] = {"object": "list", "data": [USER_ITEM], "first_id": "msg_0", "last_id": "msg_0", "has_more": False}

CONVERSATION: dict[str, Any] = {"id": "conv_1", "object": "conversation", "created_at": 1700000000, "metadata": {"topic": "x"}}


# ----------------------------------------------------------------------------- validators


def test_a_correct_response_passes_in_both_profiles() -> None:
    for profile in spec.PROFILES:
        spec.validate_response(RESPONSE, profile)


@pytest.mark.parametrize("field", ["usage", "user"])
def test_null_usage_and_user_pass_only_leniently(field: str) -> None:
    body = with_(RESPONSE, field, None)  # OpenAI itself sends both
    spec.validate_response(body)
    with pytest.raises(AssertionError, match=f"\\$.{field}"):
        spec.validate_response(body, "strict")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("usage.input_tokens_details.cache_write_tokens", ...),  # SDK 3.x requires it
        ("status", "done"),
        ("output.0.content.0.annotations", ...),
        ("tools", ...),
        ("object", "chat.completion"),
    ],
)
def test_a_wrong_response_is_refused_leniently(path: str, value: Any) -> None:
    with pytest.raises(AssertionError):
        spec.validate_response(with_(RESPONSE, path, value))


def test_failed_response_error_code_is_a_closed_enum() -> None:
    failed = {**RESPONSE, "status": "failed", "output": [], "usage": None}
    spec.validate_response({**failed, "error": {"code": "server_error", "message": "boom"}})
    # Context overflow has no code here: it must be a 400 before the stream, not a failed response.
    with pytest.raises(AssertionError):
        spec.validate_response({**failed, "error": {"code": "context_length_exceeded", "message": "too long"}})


def test_stream_events_pass_and_each_can_fail() -> None:
    for event in events():
        spec.validate_response_event(event)
    added, delta = events()[2], events()[4]
    with pytest.raises(AssertionError):
        spec.validate_response_event(with_(delta, "logprobs", ...))
    with pytest.raises(AssertionError):
        spec.validate_response_event(with_(added, "item.content", "no"))
    with pytest.raises(AssertionError):
        spec.validate_response_event({**delta, "type": "response.output_text.deltas"})


@pytest.mark.parametrize("seq", [..., "3", True, 1.5])
def test_stream_events_need_an_integer_sequence_number(seq: Any) -> None:
    event = with_(events()[4], "sequence_number", seq)
    with pytest.raises(AssertionError):
        spec.validate_response_event(event)


def test_item_list_conversation_and_small_bodies() -> None:
    spec.validate_response_item_list(ITEM_LIST)
    spec.validate_conversation_item_list(ITEM_LIST)
    spec.validate_conversation_item(ITEM_LIST["data"][0])
    spec.validate_conversation(CONVERSATION)
    spec.validate_conversation_deleted({"id": "conv_1", "object": "conversation.deleted", "deleted": True})
    spec.validate_input_tokens({"object": "response.input_tokens", "input_tokens": 7})
    bad = [
        (spec.validate_response_item_list, with_(ITEM_LIST, "has_more", ...)),
        (spec.validate_conversation_item_list, with_(ITEM_LIST, "object", "page")),
        (spec.validate_conversation_item, {"type": "message", "role": "user"}),
        (spec.validate_conversation, with_(CONVERSATION, "created_at", 1.5)),
        (spec.validate_conversation_deleted, {"id": "conv_1", "object": "conversation", "deleted": True}),
        (spec.validate_input_tokens, {"object": "response.input_tokens", "input_tokens": "7"}),
    ]
    for check, body in bad:
        with pytest.raises(AssertionError):
            check(body)


# ----------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("method", "path", "streaming", "expected"),
    [
        ("POST", "/v1/responses", False, spec.validate_response),
        ("POST", "/v1/responses", True, spec.validate_response_event),
        ("GET", "/v1/responses/resp_1", False, spec.validate_response),
        ("GET", "/v1/responses/resp_1?stream=true", True, spec.validate_response_event),
        ("POST", "/v1/responses/resp_1/cancel", False, spec.validate_response),
        ("GET", "/v1/responses/resp_1/input_items?limit=2", False, spec.validate_response_item_list),
        ("POST", "/v1/responses/input_tokens", False, spec.validate_input_tokens),
        ("DELETE", "/v1/responses/resp_1", False, None),
        ("POST", "/v1/conversations", False, spec.validate_conversation),
        ("GET", "/v1/conversations/conv_1", False, spec.validate_conversation),
        ("POST", "/v1/conversations/conv_1", False, spec.validate_conversation),
        ("DELETE", "/v1/conversations/conv_1", False, spec.validate_conversation_deleted),
        ("GET", "/v1/conversations/conv_1/items", False, spec.validate_conversation_item_list),
        ("POST", "/v1/conversations/conv_1/items", False, spec.validate_conversation_item_list),
        ("GET", "/v1/conversations/conv_1/items/msg_1", False, spec.validate_conversation_item),
        ("DELETE", "/v1/conversations/conv_1/items/msg_1", False, spec.validate_conversation),
        ("POST", "/v1/batches", False, spec.validate_batch),
        ("GET", "/v1/batches?limit=2", False, spec.validate_batch_list),
        ("GET", "/v1/batches/batch_1", False, spec.validate_batch),
        ("POST", "/v1/batches/batch_1/cancel", False, spec.validate_batch),
        # The routes that were there before keep their validators.
        ("POST", "/v1/chat/completions", True, spec.validate_chat_chunk),
        ("POST", "/v1/completions", False, spec.validate_completion),
        ("POST", "/v1/embeddings", False, spec.validate_embeddings),
        ("GET", "/v1/models", False, spec.validate_model_list),
        ("GET", "/v1/models/m", False, spec.validate_model),
    ],
)
def test_schema_for_routes(method: str, path: str, streaming: bool, expected: Any) -> None:
    assert schema_for(method, path, 200, streaming) is expected
    assert schema_for(method, path, 404, streaming) is spec.validate_error


class _Chunks:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Any:
        return iter(self.chunks)

    def close(self) -> None:
        pass


def _sse(frames: list[tuple[str | None, dict[str, Any]]]) -> list[Any]:
    raw = b"".join(((f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n").encode() for name, data in frames)
    log: list[Any] = []
    stream = _ValidatingStream(_Chunks([raw[:7], raw[7:]]), spec.validate_response_event, log)  # type: ignore[arg-type]
    list(stream)
    return log


def test_validating_stream_checks_event_names_against_types() -> None:
    good = events()
    assert _sse([(e["type"], e) for e in good]) == good
    assert _sse([(None, e) for e in good]) == good  # no event line: nothing to compare
    wrong = copy.deepcopy(good)
    with pytest.raises(AssertionError, match="differs from the data's type"):
        _sse([("response.completed", wrong[4])])
    with pytest.raises(AssertionError):
        _sse([("response.output_text.delta", with_(wrong[4], "sequence_number", ...))])
