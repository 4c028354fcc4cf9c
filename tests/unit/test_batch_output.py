"""Batch output and error file lines: the three shapes, their ids, and the JSONL encoding."""

from __future__ import annotations

import json
import re

import pytest

from faceplate.errors import InvalidRequest
from faceplate.service.batch_output import dumps_line, failure_line, new_request_id, success_line, unrun_line

ID = re.compile(r"batch_req_[0-9a-f]{32}")


def test_success_line() -> None:
    body = {"id": "chatcmpl-1", "object": "chat.completion", "choices": []}
    line = success_line("r1", 200, "req_abc", body)
    assert ID.fullmatch(line.pop("id"))
    assert line == {
        "custom_id": "r1",
        "response": {"status_code": 200, "request_id": "req_abc", "body": body},
        "error": None,
    }
    assert list(success_line("r1", 200, "req_abc", body)) == ["id", "custom_id", "response", "error"]


def test_failure_line_nests_the_error_body_under_response() -> None:
    err = InvalidRequest("Invalid value for 'temperature'.", param="temperature").body()
    line = failure_line("r2", 400, "req_x", err)
    assert ID.fullmatch(line.pop("id"))
    assert line == {
        "custom_id": "r2",
        "response": {"status_code": 400, "request_id": "req_x", "body": err},
        "error": None,
    }
    # What clients read.
    assert line["response"]["body"]["error"]["message"] == "Invalid value for 'temperature'."
    assert line["response"]["body"]["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("code", ["batch_cancelled", "batch_expired", "request_timeout"])
def test_unrun_line(code: str) -> None:
    line = unrun_line("r3", code, "This request was not executed.")  # type: ignore[arg-type]
    assert ID.fullmatch(line.pop("id"))
    assert line == {"custom_id": "r3", "response": None, "error": {"code": code, "message": "This request was not executed."}}


def test_ids_are_fresh() -> None:
    ids = {new_request_id() for _ in range(100)} | {
        success_line("a", 200, "r", {})["id"],
        unrun_line("a", "batch_expired", "m")["id"],
    }
    assert len(ids) == 102
    assert all(ID.fullmatch(i) for i in ids)


def test_dumps_line_is_compact_utf8_and_one_line() -> None:
    obj = {"custom_id": "é", "response": {"body": {"text": "日本\nline\u2028x\u2029y\x85z"}}, "error": None}
    out = dumps_line(obj)
    assert out.endswith(b"\n") and out.count(b"\n") == 1
    text = out.decode("utf-8")
    assert len(text.splitlines()) == 1  # U+2028, U+2029 and U+0085 escaped
    assert "日本" in text and "é" in text  # not \\u escapes
    assert ", " not in text and ": " not in text
    assert json.loads(out) == obj
    expected = '{"custom_id":"é","response":{"body":{"text":"日本\\nline\\u2028x\\u2029y\\u0085z"}},"error":null}\n'
    assert out == expected.encode("utf-8")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_dumps_line_refuses_nan(bad: float) -> None:
    with pytest.raises(ValueError):
        dumps_line({"x": bad})


def test_dumps_line_refuses_a_lone_surrogate() -> None:
    with pytest.raises(ValueError):
        dumps_line({"x": "\ud800"})


def test_round_trip_of_every_shape() -> None:
    for line in (
        success_line("a", 200, "req_1", {"data": [1.5, None, True]}),
        failure_line("b", 500, "req_2", {"error": {"message": "m", "type": "server_error", "param": None, "code": None}}),
        unrun_line("c", "request_timeout", "timed out"),
    ):
        assert json.loads(dumps_line(line)) == line
