"""The conformance validator must be able to fail as well as pass."""

from __future__ import annotations

import base64
import copy
import struct
from typing import Any

import pytest

from tests import spec
from tests.spec import (
    validate,
    validate_chat_chunk,
    validate_chat_completion,
    validate_completion,
    validate_completion_chunk,
    validate_embeddings,
    validate_error,
    validate_model,
    validate_model_list,
)

CHAT: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}

CHUNK: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": "m",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
}

COMPLETION_CHUNK: dict[str, Any] = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1700000000,
    "model": "m",
    "choices": [{"index": 0, "text": "he", "logprobs": None, "finish_reason": None}],
}

ERROR: dict[str, Any] = {"error": {"message": "boom", "type": "invalid_request_error", "param": None, "code": None}}


def embeddings(vector: Any) -> dict[str, Any]:
    return {
        "object": "list",
        "model": "m",
        "data": [{"object": "embedding", "index": 0, "embedding": vector}],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


def with_(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Deep copy of ``body`` with dotted ``path`` set (``value=...`` deletes it)."""
    out = copy.deepcopy(body)
    *parents, last = path.split(".")
    node: Any = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


def test_chat_completion_passes() -> None:
    validate_chat_completion(CHAT)
    validate_chat_completion(CHAT, profile="strict")


def test_chat_completion_missing_logprobs_fails() -> None:
    with pytest.raises(AssertionError, match=r"\$\.choices\[0\].*'logprobs' is a required"):
        validate_chat_completion(with_(CHAT, "choices.0.logprobs", ...))


def test_chunk_null_finish_reason_passes_via_nullable_rewrite() -> None:
    validate_chat_chunk(CHUNK, profile="strict")
    # The published document alone (`nullable: true`) would reject it.
    assert (
        spec.raw_document()["components"]["schemas"]["CreateChatCompletionStreamResponse"]["properties"]["choices"]["items"][
            "properties"
        ]["finish_reason"]["nullable"]
        is True
    )


def test_chunk_bogus_finish_reason_fails() -> None:
    with pytest.raises(AssertionError, match=r"\$\.choices\[0\]\.finish_reason"):
        validate_chat_chunk(with_(CHUNK, "choices.0.finish_reason", "bogus"))


def test_chunk_usage_null_passes_strict() -> None:
    # `usage: {$ref, nullable: true}` -> anyOf[$ref, null]
    validate_chat_chunk({**CHUNK, "usage": None}, profile="strict")


def test_error_integer_code_fails_and_full_error_passes() -> None:
    validate_error(ERROR, profile="strict")
    validate_error(with_(ERROR, "error.code", "model_not_found"))
    with pytest.raises(AssertionError, match=r"\$\.error\.code"):
        validate_error(with_(ERROR, "error.code", 404))


def test_error_missing_param_fails() -> None:
    with pytest.raises(AssertionError, match="'param' is a required property"):
        validate_error(with_(ERROR, "error.param", ...))


def test_legacy_completion_chunk_null_finish_reason() -> None:
    validate_completion_chunk(COMPLETION_CHUNK)
    validate_completion_chunk(COMPLETION_CHUNK, profile="strict")
    with pytest.raises(AssertionError, match=r"finish_reason"):
        validate_completion(COMPLETION_CHUNK)
    validate_completion(with_(COMPLETION_CHUNK, "choices.0.finish_reason", "stop"))
    with pytest.raises(AssertionError):
        validate_completion_chunk(with_(COMPLETION_CHUNK, "choices.0.finish_reason", "bogus"))


def test_embeddings_float_list_and_base64() -> None:
    b64 = base64.b64encode(struct.pack("<3f", 0.1, -0.2, 0.3)).decode()
    validate_embeddings(embeddings([0.1, -0.2, 0.3]))
    validate_embeddings(embeddings(b64), profile="strict")
    with pytest.raises(AssertionError, match=r"\$\.data\[0\]\.embedding"):
        validate_embeddings(embeddings(0.5))
    with pytest.raises(AssertionError):
        validate_embeddings(embeddings("not base64!"))
    # The published schema itself only knows the float array.
    with pytest.raises(AssertionError):
        validate(embeddings(b64), "CreateEmbeddingResponse")


def test_models() -> None:
    model = {"id": "m", "object": "model", "created": 1700000000, "owned_by": "faceplate"}
    validate_model(model, profile="strict")
    validate_model_list({"object": "list", "data": [model]}, profile="strict")
    with pytest.raises(AssertionError, match="'owned_by' is a required"):
        validate_model({k: v for k, v in model.items() if k != "owned_by"})
    with pytest.raises(AssertionError, match=r"\$\.data\[0\]\.object"):
        validate_model_list({"object": "list", "data": [{**model, "object": "mdl"}]})


def test_strict_vs_lenient_on_optional_non_nullable_field() -> None:
    # CreateChatCompletionResponse.system_fingerprint is `{type: string}`, optional and not
    # nullable, yet OpenAI sends null for it.
    field = spec.raw_document()["components"]["schemas"]["CreateChatCompletionResponse"]["properties"]["system_fingerprint"]
    assert field.get("type") == "string" and "nullable" not in field
    body = {**CHAT, "system_fingerprint": None}
    validate_chat_completion(body)  # lenient (default)
    with pytest.raises(AssertionError, match=r"\$\.system_fingerprint"):
        validate_chat_completion(body, profile="strict")
    validate_chat_chunk({**CHUNK, "system_fingerprint": None})
    with pytest.raises(AssertionError, match=r"\$\.system_fingerprint"):
        validate_chat_chunk({**CHUNK, "system_fingerprint": None}, profile="strict")


def test_lenient_keeps_required_fields_non_null() -> None:
    with pytest.raises(AssertionError, match=r"\$\.model"):
        validate_chat_completion({**CHAT, "model": None})
    with pytest.raises(AssertionError, match=r"\$\.choices\[0\]\.finish_reason"):
        validate_chat_completion(with_(CHAT, "choices.0.finish_reason", None))


def test_discriminated_union_reports_the_selected_branch() -> None:
    event = {
        "type": "response.output_text.delta",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "x",
        "logprobs": [],
    }
    validate({**event, "sequence_number": 1}, "ResponseStreamEvent", profile="strict")
    with pytest.raises(AssertionError) as info:
        validate(event, "ResponseStreamEvent", profile="strict")
    msg = str(info.value)
    assert "'sequence_number' is a required property" in msg
    assert "ResponseTextDeltaEvent (by type='response.output_text.delta')" in msg
    with pytest.raises(AssertionError, match=r"no anyOf branch has type='response\.nope'"):
        validate({"type": "response.nope", "sequence_number": 1}, "ResponseStreamEvent")


def test_recursive_ref_is_checked() -> None:
    # CompoundFilter nests itself via 2019-09 `$recursiveRef`, rewritten to a real $ref.
    leaf = {"type": "eq", "key": "k", "value": "v"}
    validate({"type": "and", "filters": [leaf, {"type": "or", "filters": [leaf]}]}, "CompoundFilter", profile="strict")
    with pytest.raises(AssertionError):
        validate({"type": "and", "filters": [{"type": "or", "filters": "nope"}]}, "CompoundFilter", profile="strict")


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(KeyError):
        validate({}, "NoSuchSchema")
    with pytest.raises(ValueError):
        validate({}, "Model", profile="loose")  # type: ignore[arg-type]


def test_validators_and_document_are_cached() -> None:
    assert spec.validator("Model", "strict") is spec.validator("Model", "strict")
    assert spec.document("lenient") is spec.document("lenient")
    assert spec.validator("Model", "strict") is not spec.validator("Model", "lenient")


def test_no_nullable_keyword_survives_normalisation() -> None:
    seen: list[str] = []

    def visit(node: Any) -> Any:
        if "nullable" in node:
            seen.append(str(node)[:80])
        return node

    for schema in spec.document("strict")["components"]["schemas"].values():
        spec._walk(schema, visit)
    assert seen == []
