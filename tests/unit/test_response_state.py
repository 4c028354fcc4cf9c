"""The Responses state machine on its own: one object and one event stream, built together."""

from __future__ import annotations

from typing import Any

from faceplate.engines.base import Finished, TextDelta, ToolCallDelta
from faceplate.translate.responses import ResponseState, output_text, response_usage
from tests import spec


def _state(**kw: Any) -> ResponseState:
    obj = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "model": "m",
        "output": [],
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "metadata": {},
        "temperature": 1.0,
        "top_p": 1.0,
        "usage": None,
    }
    return ResponseState(obj, **kw)


def _run(state: ResponseState, *events: Any) -> list[dict[str, Any]]:
    out = state.created() + state.in_progress()
    for ev in events:
        out += state.feed(ev)
    return out


def test_text_then_calls_each_item_closed_before_the_next_opens() -> None:
    s = _state()
    first = ToolCallDelta(0, 0, "call_a", "f", '{"x":')
    out = _run(s, TextDelta(0, "Let me check. "), first, ToolCallDelta(0, 0, arguments="1}"))
    out += _run_tail(s, ToolCallDelta(0, 1, "call_b", "f", "{}"), Finished(0, "tool_calls", 9))
    out += s.finish("tool_calls", response_usage(5, 9))
    for ev in out:
        spec.validate(ev, "ResponseStreamEvent")
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    opened = [e["output_index"] for e in out if e["type"] == "response.output_item.added"]
    closed = [e["output_index"] for e in out if e["type"] == "response.output_item.done"]
    assert opened == closed == [0, 1, 2]
    assert [i["type"] for i in s.obj["output"]] == ["message", "function_call", "function_call"]
    assert s.obj["output"][1]["arguments"] == '{"x":1}' and s.obj["output"][1]["call_id"] == "call_a"
    assert output_text(s.obj) == "Let me check. " and s.status == "completed"
    spec.validate(s.obj, "Response")


def _run_tail(state: ResponseState, *events: Any) -> list[dict[str, Any]]:
    return [ev for e in events for ev in state.feed(e)]


def test_calls_past_max_tool_calls_are_dropped() -> None:
    s = _state(max_tool_calls=1)
    second = ToolCallDelta(0, 1, "call_b", "g", "{}")
    _run(s, ToolCallDelta(0, 0, "call_a", "f", "{}"), second, ToolCallDelta(0, 1, arguments="x"))
    s.finish("tool_calls", response_usage(1, 1))
    assert [i["name"] for i in s.obj["output"]] == ["f"]


def test_a_custom_call_cut_at_the_limit_keeps_the_text_so_far() -> None:
    s = _state(custom_tools=frozenset({"patch"}))
    _run(s, ToolCallDelta(0, 0, "call_a", "patch", '{"input":"*** Begin'), ToolCallDelta(0, 0, arguments=" Pa\\"))
    out = s.finish("length", response_usage(1, 16))
    (item,) = s.obj["output"]
    assert item["type"] == "custom_tool_call" and item["input"] == "*** Begin Pa" and item["status"] == "incomplete"
    assert out[-1]["type"] == "response.incomplete" and s.obj["incomplete_details"] == {"reason": "max_output_tokens"}


def test_failure_and_cancel_close_the_open_item_and_end_the_stream() -> None:
    for end in ("fail", "cancel"):
        s = _state()
        _run(s, TextDelta(0, "half"))
        out = s.fail("boom") if end == "fail" else s.cancel()
        assert [e["type"] for e in out][-2:] == [
            "response.output_item.done",
            "response.failed" if end == "fail" else "response.incomplete",
        ]
        assert s.obj["output"][0]["status"] == "incomplete"
        assert s.status == ("failed" if end == "fail" else "cancelled")
        spec.validate(s.obj, "Response")
