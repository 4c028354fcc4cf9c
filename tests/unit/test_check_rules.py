"""Check judgements on canned replies: the documented deviations are named plainly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from faceplate.check.checks_api import error_envelope
from faceplate.check.checks_chat import _logprob_problem, pick_stop
from faceplate.check.contract import Contract
from faceplate.check.http import Reply
from faceplate.check.runner import Context, Fail


def _ctx() -> Context:
    models = Reply("GET", "/models", None, 200, "application/json", '{"object": "list", "data": []}')
    return Context(upstream=None, contract=Contract(), model="m", models=models)  # type: ignore[arg-type]


def _reply(status: int, body: Any) -> Reply:
    return Reply("POST", "/chat/completions", {"model": "m"}, status, "application/json", json.dumps(body))


OPENAI = {"error": {"message": "Missing messages", "type": "invalid_request_error", "param": "messages", "code": None}}


def test_openai_error_passes() -> None:
    assert error_envelope(_ctx(), _reply(400, OPENAI), 400)["param"] == "messages"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (400, {"object": "error", "message": "x", "type": "BadRequestError", "param": None, "code": 400}, "flat"),  # vLLM
        (400, {"error": {"code": 400, "message": "x", "type": "invalid_request_error"}}, "integer 400"),  # llama-server
        (422, {"error": "x", "error_type": "validation"}, "HTTP 422, expected 400 (OpenAI answers"),  # TGI
        (422, {"error": "x", "error_type": "validation"}, "bare string"),
        (422, {"detail": [{"loc": ["body", "messages"]}]}, "'error' is a required property"),  # a framework's default
        (200, {"id": "chatcmpl-1"}, "HTTP 200, expected 400"),
        (400, {"error": {"message": "x", "type": "t", "code": None}}, "'param' is a required property"),
    ],
)
def test_error_deviations(status: int, body: Any, reason: str) -> None:
    with pytest.raises(Fail) as info:
        error_envelope(_ctx(), _reply(status, body), 400)
    assert reason in info.value.reason
    assert info.value.evidence and info.value.evidence.startswith("sent POST /chat/completions")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1, 2, 3, 4", (" 3", 5)),  # ", " first occurs at 1: the middle pair that is new is taken
        ("1. 1\n2. ", ("\n2", 4)),
        ("abab", ("ba", 1)),  # "ab" at 2 first occurs at 0: scanned from the middle, then the start
        ("ab", None),
        ("", None),
        ("a   ", None),  # only whitespace pairs after the first character
    ],
)
def test_pick_stop(text: str, expected: tuple[str, int] | None) -> None:
    assert pick_stop(text) == expected
    if expected:
        stop, at = expected
        assert text.find(stop) == at and stop.strip()


def test_logprob_shape() -> None:
    good = {"token": "a", "logprob": -0.1, "bytes": [97], "top_logprobs": [{"token": "a", "logprob": -0.1, "bytes": [97]}] * 2}
    assert _logprob_problem(good, 2) is None
    assert _logprob_problem({**good, "bytes": None}, 2) is None  # the spec lets bytes be null
    assert "has no bytes" in str(_logprob_problem({k: v for k, v in good.items() if k != "bytes"}, 2))
    assert "1 entries, asked 2" in str(_logprob_problem({**good, "top_logprobs": good["top_logprobs"][:1]}, 2))
    assert "has no bytes" in str(_logprob_problem({**good, "top_logprobs": [{"token": "a", "logprob": -1}] * 2}, 2))
