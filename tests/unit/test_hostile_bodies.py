"""Hostile request bodies: lone surrogates and oversized arrays are 400s naming the field, never 500s."""

from __future__ import annotations

import json
from typing import Any

import pytest

from faceplate.errors import InvalidRequest
from faceplate.protocol import chat, common, completions
from faceplate.protocol.chat import ChatCompletionRequest
from faceplate.protocol.common import parse_request
from faceplate.protocol.completions import CompletionRequest
from faceplate.protocol.embeddings import EmbeddingRequest


def refused(raw: bytes, model: type[Any], endpoint: str) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_request(raw, model, endpoint=endpoint)
    err = info.value
    assert err.status == 400
    # The error itself must be sendable: UTF-8 encodable, with no surrogate copied into it.
    json.dumps(err.body(), ensure_ascii=False).encode("utf-8")
    return err


# -- lone surrogates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (rb'{"model":"m","messages":[{"role":"user","content":"hi \ud800 there"}]}', "messages[0].content"),
        (
            rb'{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"\uDC00"}]}',
            "messages[1].content",
        ),
        (
            rb'{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x\udfff"}]}]}',
            "messages[0].content[0].text",
        ),
        (rb'{"model":"m","messages":[{"role":"user","content":"ok"}],"user":"\ud83d"}', "user"),
        (rb'{"model":"m","messages":[{"role":"user","content":"ok"}],"metadata":{"k":"\ud800"}}', "metadata.k"),
    ],
)
def test_chat_lone_surrogate_is_a_400_naming_the_field(raw: bytes, param: str) -> None:
    err = refused(raw, ChatCompletionRequest, "chat")
    assert err.param == param and "surrogate" in err.message


def test_completions_lone_surrogate() -> None:
    assert refused(rb'{"model":"m","prompt":"\ud800"}', CompletionRequest, "completions").param == "prompt"
    assert refused(rb'{"model":"m","prompt":["a","\udbff"]}', CompletionRequest, "completions").param == "prompt[1]"


def test_embeddings_lone_surrogate() -> None:
    assert refused(rb'{"model":"m","input":["a","b","\ud800"]}', EmbeddingRequest, "embeddings").param == "input[2]"
    assert refused(rb'{"model":"m","input":"\udc00"}', EmbeddingRequest, "embeddings").param == "input"


def test_surrogates_in_keys_and_raw_bytes_too() -> None:
    err = refused(
        rb'{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":{"\ud800":"v"}}', ChatCompletionRequest, "chat"
    )
    assert err.param == "metadata"
    top = refused(rb'{"model":"m","input":"x","\udfff":1}', EmbeddingRequest, "embeddings")
    assert top.param is None
    # UTF-8-encoded surrogate bytes: json decodes them with surrogatepass, so they must be caught as well.
    raw = '{"model":"m","prompt":"a\ud800"}'.encode("utf-8", "surrogatepass")
    assert refused(raw, CompletionRequest, "completions").param == "prompt"
    utf16 = '{"model":"m","prompt":"\udc00"}'.encode("utf-16", "surrogatepass")
    assert refused(utf16, CompletionRequest, "completions").param == "prompt"


def test_surrogate_pairs_are_fine() -> None:
    body = parse_request(rb'{"model":"m","prompt":"smile \ud83d\ude00"}', CompletionRequest, endpoint="completions")
    assert body.prompt == "smile \U0001f600"


def test_ordinary_bodies_are_not_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(data: Any) -> None:
        raise AssertionError("searched a body with no surrogate escape")

    monkeypatch.setattr(common, "_check_surrogates", must_not_run)
    body = parse_request('{"model":"m","prompt":"caf\u00e9 \\n \\u00e9"}'.encode(), CompletionRequest, endpoint="completions")
    assert body.prompt == "caf\u00e9 \n \u00e9"


def test_deeply_nested_surrogate_is_found_without_recursion() -> None:
    depth = 500
    raw = b'{"model":"m","input":"x","extra":' + b"[" * depth + b'"\\ud800"' + b"]" * depth + b"}"
    err = refused(raw, EmbeddingRequest, "embeddings")
    assert err.param == "extra" + "[0]" * depth


# -- array caps ------------------------------------------------------------------------------


def test_completions_prompt_array_is_capped() -> None:
    limit = 2048
    too_many = json.dumps({"model": "m", "prompt": ["p"] * (limit + 1)}).encode()
    err = refused(too_many, CompletionRequest, "completions")
    assert err.param == "prompt"
    assert err.message == (
        "Invalid 'prompt': array too long. Expected an array with maximum length 2048, but got an array with length 2049 instead."
    )
    arrays = json.dumps({"model": "m", "prompt": [[1, 2]] * (limit + 5)}).encode()
    assert refused(arrays, CompletionRequest, "completions").param == "prompt"
    ok = parse_request(json.dumps({"model": "m", "prompt": ["p"] * limit}).encode(), CompletionRequest, endpoint="c")
    assert len(ok.prompts()) == limit
    one_long_prompt = parse_request(json.dumps({"model": "m", "prompt": [7] * 5000}).encode(), CompletionRequest, endpoint="c")
    assert len(one_long_prompt.prompts()) == 1  # a flat token array is one prompt, whatever its length
    assert limit == completions.MAX_PROMPTS


def test_chat_messages_are_capped() -> None:
    limit = 2048
    msgs = [{"role": "user", "content": "hi"}] * (limit + 1)
    err = refused(json.dumps({"model": "m", "messages": msgs}).encode(), ChatCompletionRequest, "chat")
    assert err.param == "messages"
    assert "array too long" in err.message and "maximum length 2048" in err.message and "length 2049" in err.message
    ok = parse_request(json.dumps({"model": "m", "messages": msgs[:limit]}).encode(), ChatCompletionRequest, endpoint="chat")
    assert len(ok.messages) == limit
    assert limit == chat.MAX_MESSAGES


# -- what a param may name -------------------------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": "f"}}]


@pytest.mark.parametrize(
    ("extra", "param", "fragment"),
    [
        # A union member's class name (NamedToolChoice) is not a field a client sent.
        ({"tool_choice": 5}, "tool_choice", "Invalid value for 'tool_choice'"),
        ({"tool_choice": {}}, "tool_choice.type", "Missing required parameter: 'tool_choice.type'"),
        ({"tool_choice": {"type": "function", "name": "f"}}, "tool_choice.function", "'tool_choice.function'"),
        ({"function_call": {}}, "function_call.name", "'function_call.name'"),
        # Not an object where an object picked by 'type' or 'role' belongs: the field itself, not its 'type'.
        ({"response_format": "json"}, "response_format", "Invalid type for 'response_format': expected an object"),
        ({"messages": ["hi"]}, "messages[0]", "Invalid type for 'messages[0]': expected an object, but got a string"),
        ({"messages": [{"role": "user", "content": [5]}]}, "messages[0].content[0]", "expected an object"),
    ],
)
def test_a_param_names_the_field_sent(extra: dict[str, Any], param: str, fragment: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS, **extra}
    err = refused(json.dumps(body).encode(), ChatCompletionRequest, "chat")
    assert err.param == param and fragment in err.message
    assert not any(name in err.message for name in ("NamedToolChoice", "NamedFunction"))


@pytest.mark.parametrize("key", ["9" * 5000, "-1", "1.5", "²", "1_0", " 7", ""])
def test_a_logit_bias_key_that_is_no_token_id_is_a_plain_400(key: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {key: 1}}
    err = refused(json.dumps(body).encode(), ChatCompletionRequest, "chat")
    assert err.param == "logit_bias" and "is not a token id" in err.message and len(err.message) < 200
    assert "sys." not in err.message  # not Python's int-conversion limit, quoted


@pytest.mark.parametrize(("raw", "kind"), [(b"null", "null"), (b"[1]", "an array"), (b'"x"', "a string"), (b"1.5", "a decimal")])
def test_a_body_that_is_no_object_is_named_in_json_terms(raw: bytes, kind: str) -> None:
    err = refused(raw, ChatCompletionRequest, "chat")
    assert err.param is None and err.message == f"Invalid type for the request body: expected an object, but got {kind} instead."
