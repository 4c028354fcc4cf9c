"""Upstream error bodies -> Faceplate's error tree: OpenAI's envelope, a string-or-null code, the right status."""

from __future__ import annotations

import json
from typing import Any

import pytest

from faceplate.engines.remote.replies import error_from, retryable
from faceplate.errors import FaceplateError, InvalidRequest, Overloaded, UpstreamFailed


def assert_envelope(err: FaceplateError) -> dict[str, Any]:
    body = err.body()
    json.dumps(body)
    assert list(body) == ["error"]
    e = body["error"]
    assert set(e) == {"message", "type", "param", "code"}
    assert isinstance(e["message"], str) and e["message"]
    assert isinstance(e["type"], str) and e["type"]
    assert e["param"] is None or isinstance(e["param"], str)
    assert e["code"] is None or isinstance(e["code"], str)
    return e


def test_vllm_bare_error_with_integer_code() -> None:
    body = {
        "object": "error",
        "message": "temperature must be non-negative",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    err = error_from(400, body)
    assert isinstance(err, InvalidRequest) and err.status == 400
    assert assert_envelope(err) == {
        "message": "temperature must be non-negative",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_wrapped_error_keeps_string_param_and_code() -> None:
    body = {"error": {"message": "bad temp", "type": "BadRequestError", "param": "temperature", "code": "400"}}
    e = assert_envelope(error_from(400, body))
    assert (e["param"], e["code"]) == ("temperature", None)  # a digit string is no code
    body = {"error": {"message": "nope", "type": "invalid_request_error", "param": 3, "code": "invalid_value"}}
    e = assert_envelope(error_from(400, body))
    assert (e["param"], e["code"]) == (None, "invalid_value")


def test_tgi_validation_422_is_a_400() -> None:
    body = {"error": "Input validation error: `temperature` must be strictly positive", "error_type": "validation"}
    err = error_from(422, body)
    assert isinstance(err, InvalidRequest) and err.status == 400
    e = assert_envelope(err)
    assert e["message"] == body["error"] and e["code"] is None


@pytest.mark.parametrize(
    "body",
    [
        {
            "object": "error",
            "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",
            "code": 400,
        },
        {"error": {"message": "The input (5000 tokens) is longer than the model's context length (4096 tokens).", "code": 400}},
        {
            "error": {
                "code": 400,
                "message": "request (5000 tokens) exceeds the available context size (4096 tokens), try increasing it",
                "type": "exceed_context_size_error",
            }
        },
        {"error": "prompt is too long", "error_type": "validation"},
    ],
)
def test_context_length_messages_get_their_code(body: dict[str, Any]) -> None:
    err = error_from(400, body)
    e = assert_envelope(err)
    assert err.status == 400 and (e["code"], e["param"]) == ("context_length_exceeded", "messages")


def test_other_400_has_no_context_code() -> None:
    assert error_from(400, {"error": {"message": "bad tool schema", "code": 400}}).code is None


@pytest.mark.parametrize("status", [429, 503])
def test_overload_is_a_503_with_retry_after(status: int) -> None:
    err = error_from(status, {"error": {"message": "busy", "type": "rate_limit", "code": 429}}, retry_after=2.5)
    assert isinstance(err, Overloaded) and err.status == 503
    assert err.headers["retry-after"] == "3"
    assert "busy" in assert_envelope(err)["message"]
    assert error_from(status, None).headers["retry-after"] == "1"


@pytest.mark.parametrize("status", [401, 403, 404, 500, 502])
def test_gateway_side_failures_are_502(status: int) -> None:
    err = error_from(status, {"error": {"message": "Invalid API key", "type": "auth", "code": "invalid_api_key"}})
    assert isinstance(err, UpstreamFailed) and err.status == 502
    e = assert_envelope(err)
    assert str(status) in e["message"] and e["code"] == "upstream_error"  # not the upstream's own 401 code


@pytest.mark.parametrize(
    ("body", "needle"),
    [(None, "no body"), ([1, 2], "[1, 2]"), ({"detail": [{"loc": ["body", "n"], "msg": "bad"}]}, "bad"), ({"error": {}}, "{}")],
)
def test_odd_bodies_still_make_an_envelope(body: Any, needle: str) -> None:
    for status in (400, 500):
        e = assert_envelope(error_from(status, body))
        assert needle in e["message"]


def test_retryable_statuses() -> None:
    assert [s for s in (400, 401, 404, 408, 422, 429, 500, 502, 503, 504) if retryable(s)] == [429, 500, 502, 503, 504]
