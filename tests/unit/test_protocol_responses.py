"""Responses / Conversations request bodies: what parses, and the OpenAI 400 (with param) for what does not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from faceplate.errors import InvalidRequest
from faceplate.protocol.common import parse_request
from faceplate.protocol.conversations import (
    MAX_CONVERSATION_ITEMS,
    CreateConversationItemsRequest,
    CreateConversationRequest,
    UpdateConversationRequest,
)
from faceplate.protocol.paging import Page, page_params
from faceplate.protocol.response_items import (
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputText,
    ItemReference,
    MessageItem,
    OutputText,
    ReasoningItem,
)
from faceplate.protocol.responses import (
    MAX_INPUT_ITEMS,
    ConversationRef,
    CreateResponseRequest,
    CustomTool,
    CustomToolFormatGrammar,
    FunctionTool,
    HostedTool,
    InputTokensRequest,
    TextFormatJsonSchema,
    ToolChoiceAllowed,
    ToolChoiceCustom,
    ToolChoiceFunction,
    ToolChoiceHosted,
)

USER = {"role": "user", "content": "hi"}


def parse(body: dict[str, Any], model: type[Any] = CreateResponseRequest, *, strict: bool = False) -> Any:
    return parse_request(json.dumps(body).encode(), model, endpoint="responses", strict=strict)


def refused(body: dict[str, Any], model: type[Any] = CreateResponseRequest, *, strict: bool = False) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse(body, model, strict=strict)
    assert info.value.status == 400
    return info.value


# ----------------------------------------------------------------------------- what parses


def test_string_input_is_one_user_message() -> None:
    body = parse({"model": "m", "input": "hello"})
    assert body.items() == [MessageItem(role="user", content="hello")]
    assert parse({"model": "m"}).items() == []


def test_message_without_type_is_a_message() -> None:
    (item,) = parse(
        {"model": "m", "input": [{"role": "developer", "content": [{"type": "input_text", "text": "be brief"}]}]}
    ).items()
    assert isinstance(item, MessageItem) and item.type is None and item.role == "developer"
    assert item.content == [InputText(type="input_text", text="be brief")]


def test_replayed_assistant_message_parses() -> None:
    replay = {
        "type": "message",
        "id": "msg_1",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "hi", "annotations": []}],
    }
    (item,) = parse({"model": "m", "input": [replay]}).items()
    assert isinstance(item, MessageItem) and item.id == "msg_1" and item.status == "completed"
    assert isinstance(item.content, list) and isinstance(item.content[0], OutputText)
    assert item.content[0].annotations == [] and item.content[0].logprobs is None


def test_reasoning_without_content_parses() -> None:
    (item,) = parse({"model": "m", "input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}).items()
    assert isinstance(item, ReasoningItem) and item.content is None and item.encrypted_content is None


def test_bare_id_is_an_item_reference() -> None:
    (item,) = parse({"model": "m", "input": [{"id": "msg_1"}]}).items()
    assert isinstance(item, ItemReference) and item.id == "msg_1" and item.type is None
    (typed,) = parse({"model": "m", "input": [{"type": "item_reference", "id": "msg_2"}]}).items()
    assert isinstance(typed, ItemReference) and typed.id == "msg_2"


def test_every_supported_item_type_parses() -> None:
    items = parse(
        {
            "model": "m",
            "input": [
                USER,
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "id": "fc_1", "status": "completed"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "x"}]},
                {"type": "custom_tool_call", "call_id": "c3", "name": "apply_patch", "input": "*** patch"},
                {"type": "custom_tool_call_output", "call_id": "c3", "output": "ok"},
            ],
        }
    ).items()
    kinds = [type(i) for i in items]
    assert kinds == [
        MessageItem,
        FunctionCallItem,
        FunctionCallOutputItem,
        FunctionCallOutputItem,
        CustomToolCallItem,
        CustomToolCallOutputItem,
    ]


def test_tools_and_tool_choices_are_picked_by_type() -> None:
    body = parse(
        {
            "model": "m",
            "tools": [
                {"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
                {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "x"}},
                {"type": "web_search"},
                {"type": "local_shell"},
            ],
            "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather"}]},
        }
    )
    assert [type(t) for t in body.tools] == [FunctionTool, CustomTool, HostedTool, HostedTool]
    assert isinstance(body.tools[1].format, CustomToolFormatGrammar)
    assert body.tools[2].type == "web_search"
    assert isinstance(body.tool_choice, ToolChoiceAllowed)
    choices = [parse({"model": "m", "tool_choice": c}).tool_choice for c in ("auto", {"type": "function", "name": "f"})]
    assert choices[0] == "auto" and isinstance(choices[1], ToolChoiceFunction)
    assert isinstance(parse({"model": "m", "tool_choice": {"type": "custom", "name": "f"}}).tool_choice, ToolChoiceCustom)
    hosted = parse({"model": "m", "tool_choice": {"type": "web_search_preview"}}).tool_choice
    assert isinstance(hosted, ToolChoiceHosted) and hosted.type == "web_search_preview"


def test_json_schema_format_and_conversation() -> None:
    body = parse(
        {
            "model": "m",
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
            "conversation": {"id": "conv_1"},
            "temperature": 1,  # an integer is a valid number
        }
    )
    assert isinstance(body.text.format, TextFormatJsonSchema) and body.text.format.schema_ == {"type": "object"}
    assert body.conversation == ConversationRef(id="conv_1") and body.conversation_id() == "conv_1"
    assert body.temperature == 1.0
    assert parse({"model": "m", "conversation": "conv_2"}).conversation_id() == "conv_2"
    assert parse({"model": "m"}).conversation_id() is None


def test_strict_mode_accepts_every_documented_field() -> None:
    codex_like = {
        "model": "m",
        "input": "hi",
        "instructions": "x",
        "store": False,
        "stream": True,
        "stream_options": {"include_obfuscation": False},
        "include": ["reasoning.encrypted_content", "message.output_text.logprobs"],
        "prompt_cache_key": "k",
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "codex_output_schema", "schema": {}, "strict": True}},
        "parallel_tool_calls": False,
        "max_output_tokens": 16,
        "top_logprobs": 20,
        "truncation": "disabled",
        "service_tier": "auto",
        "safety_identifier": "u",
    }
    assert parse(codex_like, strict=True).store is False
    assert parse({"personality": "friendly"}, InputTokensRequest, strict=True).model is None


# ----------------------------------------------------------------------------- what is refused, and where


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "Invalid value for 'input[0].role'"),
        (
            {"input": [USER, {"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[1].call_id",
            "Missing required parameter: 'input[1].call_id'.",
        ),
        (
            {"input": [{"type": "computer_call", "id": "cu_1"}]},
            "input[0].type",
            "'computer_call' is not supported by this server",
        ),
        ({"input": [USER, USER, USER, {"type": "bogus"}]}, "input[3].type", "Invalid value for 'input[3].type': 'bogus'"),
        ({"input": [{"content": "no role"}]}, "input[0].type", "without 'type'"),
        ({"input": [5]}, "input[0]", "expected an object"),
        ({"input": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}, "input[0].content[0].type", "'input_text'"),
        ({"input": [{"type": "reasoning"}]}, None, None),  # valid: id is optional in our model
        ({"tools": [{"type": "function"}]}, "tools[0].name", "Missing required parameter"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools[0].name", "Missing required parameter"),
        ({"tools": [{"type": "function", "name": "has space"}]}, "tools[0].name", "pattern"),
        ({"tools": [{"name": "f"}]}, "tools[0].type", "Missing required parameter: 'tools[0].type'."),
        ({"tools": ["web_search"]}, "tools[0]", "expected an object"),
        ({"tools": [{"type": "function", "name": "f", "parameters": {"type": "array"}}]}, "tools[0].parameters", "object"),
        (
            {"tools": [{"type": "custom", "name": "f", "format": {"type": "grammar", "syntax": "ebnf"}}]},
            "tools[0].format.syntax",
            "'lark' or 'regex'",
        ),
        ({"tool_choice": "sometimes"}, "tool_choice", "'none', 'auto' or 'required'"),
        ({"tool_choice": {"function": {"name": "f"}}}, "tool_choice.type", "Missing required parameter"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.name", "Missing required parameter"),
        ({"tool_choice": {"type": "allowed_tools", "mode": "none", "tools": []}}, "tool_choice.mode", None),
        (
            {"max_output_tokens": 5},
            "max_output_tokens",
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 5 instead.",
        ),
        ({"temperature": 2.5}, "temperature", "Expected a value <= 2, but got 2.5 instead."),
        ({"temperature": "1"}, "temperature", "Invalid type"),
        ({"top_p": -0.1}, "top_p", "below minimum value"),
        ({"top_logprobs": 21}, "top_logprobs", "Expected a value <= 20"),
        ({"max_tool_calls": 0}, "max_tool_calls", "Expected a value >= 1"),
        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata", "at most 16 properties, but got an object with 17"),
        ({"metadata": {"k" * 65: "v"}}, "metadata", "maximum length 64"),
        ({"metadata": {"k": "v" * 513}}, "metadata", "maximum length 512"),
        ({"metadata": {"k": 1}}, "metadata.k", "Invalid type"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema", "Missing required parameter"),
        ({"text": {"format": {"type": "json_schema", "name": "bad name", "schema": {}}}}, "text.format.name", "pattern"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type", "'json_schema'"),
        ({"include": ["everything"]}, "include[0]", "'reasoning.encrypted_content'"),
        ({"conversation": {}}, "conversation.id", "Missing required parameter: 'conversation.id'."),
        ({"conversation": 5}, "conversation", "Invalid type"),
        ({"truncation": "middle"}, "truncation", None),
        ({"safety_identifier": "x" * 65}, "safety_identifier", None),
    ],
)
def test_bad_bodies_get_a_400_naming_the_field(body: dict[str, Any], param: str | None, fragment: str | None) -> None:
    body = {"model": "m", **body}
    if param is None:
        parse(body)
        return
    err = refused(body)
    assert err.param == param, err.message
    if fragment is not None:
        assert fragment in err.message


def test_model_is_required_for_create_only() -> None:
    err = refused({"input": "hi"})
    assert err.param == "model" and err.message == "Missing required parameter: 'model'."
    assert refused({"model": None, "input": "hi"}).param == "model"
    assert parse({"input": "hi"}, InputTokensRequest).model is None


def test_unsupported_and_unknown_types_are_told_apart() -> None:
    known = refused({"model": "m", "input": [{"type": "mcp_call", "id": "x"}]})
    unknown = refused({"model": "m", "input": [{"type": "mcp_kall"}]})
    assert "not supported by this server" in known.message
    assert "not supported" not in unknown.message and "'function_call_output'" in unknown.message


def test_too_many_input_items_is_refused_before_items_are_validated() -> None:
    # Invalid items: if they were validated first, the error would name input[0], not input.
    err = refused({"model": "m", "input": [{"type": "bogus"}] * (MAX_INPUT_ITEMS + 1)})
    assert err.param == "input" and f"maximum length {MAX_INPUT_ITEMS}" in err.message
    assert len(parse({"model": "m", "input": [USER] * MAX_INPUT_ITEMS}).items()) == MAX_INPUT_ITEMS


def test_too_many_tools_is_refused() -> None:
    err = refused({"model": "m", "tools": [{"type": "function", "name": "f"}] * 129})
    assert err.param == "tools" and "maximum length 128" in err.message


def test_strict_mode_refuses_unknown_fields() -> None:
    body = {"model": "m", "input": "hi", "bogus": 1, "reasoning": {"effort": "low", "nope": 2}}
    err = refused(body, strict=True)
    assert err.message == "Unrecognized request argument supplied: bogus, reasoning.nope"
    assert parse(body).model_extra == {"bogus": 1}  # lenient: kept, logged, ignored


def test_input_tokens_takes_no_model_and_no_create_only_fields() -> None:
    assert parse({"input": "hi"}, InputTokensRequest).items() == [MessageItem(role="user", content="hi")]
    err = refused({"input": "hi", "max_output_tokens": 5}, InputTokensRequest, strict=True)
    assert "max_output_tokens" in err.message


# ----------------------------------------------------------------------------- conversations


def test_conversation_create_and_limits() -> None:
    assert parse({}, CreateConversationRequest).items is None
    made = parse({"items": [USER, {"id": "msg_1"}], "metadata": {"topic": "x"}}, CreateConversationRequest)
    assert [type(i) for i in made.items] == [MessageItem, ItemReference] and made.metadata == {"topic": "x"}
    err = refused({"items": [{"type": "bogus"}] * (MAX_CONVERSATION_ITEMS + 1)}, CreateConversationRequest)
    assert err.param == "items" and "maximum length 20, but got an array with length 21" in err.message
    assert refused({"metadata": {str(i): "v" for i in range(17)}}, CreateConversationRequest).param == "metadata"
    assert refused({"items": [{"type": "web_search_call"}]}, CreateConversationRequest).param == "items[0].type"


def test_conversation_update_requires_metadata() -> None:
    assert parse({"metadata": {"a": "b"}}, UpdateConversationRequest).metadata == {"a": "b"}
    assert refused({}, UpdateConversationRequest).message == "Missing required parameter: 'metadata'."
    assert refused({"metadata": {"a": "b" * 513}}, UpdateConversationRequest).param == "metadata"


def test_conversation_items_create_takes_1_to_20() -> None:
    assert len(parse({"items": [USER] * 20}, CreateConversationItemsRequest).items) == 20
    assert refused({"items": []}, CreateConversationItemsRequest).param == "items"
    assert refused({"items": [USER] * 21}, CreateConversationItemsRequest).param == "items"
    assert refused({}, CreateConversationItemsRequest).message == "Missing required parameter: 'items'."
    assert refused({"items": [USER, {"role": "user"}]}, CreateConversationItemsRequest).param == "items[1].content"


# ----------------------------------------------------------------------------- paging


def test_page_params_defaults_and_values() -> None:
    assert page_params({}) == Page(limit=20, order="desc", after=None)
    assert page_params({}, default_limit=5, default_order="asc") == Page(limit=5, order="asc", after=None)
    assert page_params({"limit": "100", "order": "asc", "after": "msg_1"}) == Page(limit=100, order="asc", after="msg_1")
    assert page_params({"after": ""}).after is None


@pytest.mark.parametrize(
    ("query", "param", "fragment"),
    [
        ({"limit": "0"}, "limit", "Expected a value >= 1, but got 0"),
        ({"limit": "101"}, "limit", "Expected a value <= 100, but got 101"),
        ({"limit": "-3"}, "limit", "below minimum"),
        ({"limit": "ten"}, "limit", "expected an integer"),
        ({"limit": "1.5"}, "limit", "expected an integer"),
        ({"limit": "1_0"}, "limit", "expected an integer"),
        ({"limit": "9" * 5000}, "limit", "above maximum"),
        ({"order": "newest"}, "order", "'asc' or 'desc'"),
    ],
)
def test_page_params_refusals(query: dict[str, str], param: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        page_params(query)
    assert info.value.param == param and fragment in info.value.message


def test_page_params_max_limit_is_configurable() -> None:
    assert page_params({"limit": "1000"}, max_limit=1000).limit == 1000
    with pytest.raises(InvalidRequest):
        page_params({"limit": "11"}, max_limit=10)
