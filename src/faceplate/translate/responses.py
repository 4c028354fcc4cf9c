"""Engine events -> a Responses API event stream and the Response object, from one state machine.

``ResponseState`` holds the Response object and appends to it as events arrive; every
stream event is built from that same object (deep-copied when emitted, so a buffered or
replayed event never changes afterwards). Streamed items and the final object therefore
carry the same ids, call ids, texts and statuses, and the stored object is exactly what
``response.completed`` carried.

Invariants the SDKs rely on: ``sequence_number`` from 0 without gaps; items open empty
(``content: []``, ``arguments: ""``) and each closes before the next opens; ``output_index``
follows the order of the ``added`` events; every stream ends with exactly one terminal event
(completed, incomplete or failed).
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from faceplate.engines.base import Finished, GenerationEvent, TextDelta, TokenLogprob, ToolCallDelta
from faceplate.translate.common import finite

TERMINAL = frozenset({"completed", "incomplete", "failed", "cancelled"})
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def new_item_id(prefix: str) -> str:
    """OpenAI-shaped ids: ``resp_…``, ``msg_…``, ``fc_…`` (opaque, nothing encoded in them)."""
    return f"{prefix}_{uuid.uuid4().hex}"


def response_usage(input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _logprob(lp: TokenLogprob, *, with_bytes: bool) -> dict[str, Any]:
    def one(token: str, logprob: float, raw: tuple[int, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {"token": token, "logprob": finite(logprob)}
        if with_bytes:
            out["bytes"] = list(raw)
        return out

    head = one(lp.token, lp.logprob, lp.bytes)
    head["top_logprobs"] = [one(t.token, t.logprob, t.bytes) for t in lp.top]
    return head


@dataclass
class _Open:
    """The output item being written now."""

    index: int
    item: dict[str, Any]
    args: list[str] = field(default_factory=list)  # function / custom call arguments so far


@dataclass
class ResponseState:
    """One response: its object, and the events that build it.

    ``obj`` starts as the echo of the request (status ``queued`` or ``in_progress``,
    ``output: []``); ``custom_tools`` are the names whose calls are freeform
    (``custom_tool_call`` items with the text in ``input``); ``max_tool_calls`` drops calls
    past the cap, as OpenAI ignores them.
    """

    obj: dict[str, Any]
    logprobs: bool = False
    custom_tools: frozenset[str] = frozenset()
    max_tool_calls: int | None = None
    seq: int = 0
    _open: _Open | None = None
    _calls: dict[int, int | None] = field(default_factory=dict)  # engine call index -> output index (None: dropped)
    _text_logprobs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.obj["id"])

    @property
    def status(self) -> str:
        return str(self.obj["status"])

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    def _event(self, type_: str, **fields: Any) -> dict[str, Any]:
        ev = {"type": type_, "sequence_number": self.seq, **fields}
        self.seq += 1
        return ev

    def _response_event(self, type_: str) -> dict[str, Any]:
        return self._event(type_, response=self.snapshot())

    # -- lifecycle

    def created(self) -> list[dict[str, Any]]:
        """The opening events: ``response.created`` (and ``response.queued`` for a queued background response)."""
        out = [self._response_event("response.created")]
        if self.status == "queued":
            out.append(self._response_event("response.queued"))
        return out

    def in_progress(self) -> list[dict[str, Any]]:
        self.obj["status"] = "in_progress"
        return [self._response_event("response.in_progress")]

    def feed(self, ev: GenerationEvent) -> list[dict[str, Any]]:
        if isinstance(ev, TextDelta):
            return self._text(ev)
        if isinstance(ev, ToolCallDelta):
            return self._call(ev)
        assert isinstance(ev, Finished)
        return []  # the caller ends the response with ``finish``, once usage is known

    def finish(self, reason: str, usage: dict[str, Any]) -> list[dict[str, Any]]:
        """The end of generation: close the open item, then completed, or incomplete when cut at the token limit."""
        incomplete = reason == "length"
        out = self._close("incomplete" if incomplete else "completed")
        self.obj["usage"] = usage
        if incomplete:
            self.obj["status"] = "incomplete"
            self.obj["incomplete_details"] = {"reason": "max_output_tokens"}
            out.append(self._response_event("response.incomplete"))
        else:
            self.obj["status"] = "completed"
            self.obj["completed_at"] = int(time.time())
            out.append(self._response_event("response.completed"))
        return out

    def fail(self, message: str, usage: dict[str, Any] | None = None, code: str = "server_error") -> list[dict[str, Any]]:
        """A failure after the stream began: ``response.failed`` (the code must be in OpenAI's closed enum)."""
        out = self._close("incomplete")
        self.obj["status"] = "failed"
        self.obj["error"] = {"code": code, "message": message}
        if usage is not None:
            self.obj["usage"] = usage
        out.append(self._response_event("response.failed"))
        return out

    def cancel(self, usage: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Stopped on request (cancel, or the client left): status ``cancelled``.

        The spec has no ``response.cancelled`` event; the stream ends with ``response.incomplete``
        carrying the cancelled object, so a follower still sees a terminal event."""
        out = self._close("incomplete")
        self.obj["status"] = "cancelled"
        if usage is not None:
            self.obj["usage"] = usage
        out.append(self._response_event("response.incomplete"))
        return out

    # -- output items

    def _add(self, item: dict[str, Any]) -> tuple[_Open, dict[str, Any]]:
        index = len(self.obj["output"])
        self.obj["output"].append(item)
        self._open = _Open(index, item)
        return self._open, self._event("response.output_item.added", output_index=index, item=copy.deepcopy(item))

    def _text(self, ev: TextDelta) -> list[dict[str, Any]]:
        if not ev.text:
            return []
        out: list[dict[str, Any]] = []
        current = self._open
        if current is None or current.item["type"] != "message":
            out += self._close("completed")
            item = {"id": new_item_id("msg"), "type": "message", "status": "in_progress", "role": "assistant", "content": []}
            current, added = self._add(item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            self._text_logprobs = []
            out += [
                added,
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=current.index,
                    content_index=0,
                    part=copy.deepcopy(part),
                ),
            ]
        part = current.item["content"][0]
        part["text"] += ev.text
        deltas: list[dict[str, Any]] = []
        if self.logprobs:
            part["logprobs"].extend(_logprob(lp, with_bytes=True) for lp in ev.logprobs)
            deltas = [_logprob(lp, with_bytes=False) for lp in ev.logprobs]
            self._text_logprobs.extend(deltas)
        out.append(
            self._event(
                "response.output_text.delta",
                item_id=current.item["id"],
                output_index=current.index,
                content_index=0,
                delta=ev.text,
                logprobs=deltas,
            )
        )
        return out

    def _call(self, ev: ToolCallDelta) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if ev.call not in self._calls:
            out += self._close("completed")
            kept = sum(1 for v in self._calls.values() if v is not None)
            if self.max_tool_calls is not None and kept >= self.max_tool_calls:
                self._calls[ev.call] = None
                return out
            name = ev.name or ""
            call_id = ev.id or new_item_id("call")
            if name in self.custom_tools:
                item = {"id": new_item_id("ctc"), "type": "custom_tool_call", "status": "in_progress"}
                item.update(call_id=call_id, name=name, input="")
            else:
                item = {"id": new_item_id("fc"), "type": "function_call", "status": "in_progress"}
                item.update(call_id=call_id, name=name, arguments="")
            current, added = self._add(item)
            self._calls[ev.call] = current.index
            out.append(added)
        index = self._calls[ev.call]
        current = self._open
        if index is None or current is None or current.index != index or not ev.arguments:
            return out
        current.args.append(ev.arguments)
        if current.item["type"] == "function_call":
            current.item["arguments"] += ev.arguments
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=current.item["id"],
                    output_index=index,
                    delta=ev.arguments,
                )
            )
        return out  # a custom call's input is sent whole when it closes: it is a JSON string until then

    def _close(self, status: str) -> list[dict[str, Any]]:
        current, self._open = self._open, None
        if current is None:
            return []
        item, index = current.item, current.index
        out: list[dict[str, Any]] = []
        if item["type"] == "message":
            part = item["content"][0]
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out.append(self._event("response.output_text.done", **common, text=part["text"], logprobs=self._text_logprobs))
            out.append(self._event("response.content_part.done", **common, part=copy.deepcopy(part)))
        elif item["type"] == "function_call":
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        else:
            item["input"] = _custom_input("".join(current.args))
            common = {"item_id": item["id"], "output_index": index}
            if item["input"]:
                out.append(self._event("response.custom_tool_call_input.delta", **common, delta=item["input"]))
            out.append(self._event("response.custom_tool_call_input.done", **common, input=item["input"]))
        item["status"] = status
        out.append(self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item)))
        return out


def _custom_input(arguments: str) -> str:
    """A custom tool runs under the JSON schema ``{"input": string}``; its call carries the bare string,
    also when it was cut short (at the token limit): then the text generated so far."""
    for text in (arguments, arguments + '"}', arguments[:-1] + '"}', arguments + "}"):  # whole; cut inside the string
        try:
            parsed = json.loads(text)
        except ValueError:
            continue
        if isinstance(parsed, dict) and isinstance(parsed.get("input"), str):
            return str(parsed["input"])
    return ""


def output_text(obj: dict[str, Any]) -> str:
    """What the SDK's ``Response.output_text`` computes: every output_text part, joined."""
    return "".join(
        part.get("text", "")
        for item in obj.get("output", [])
        if item.get("type") == "message"
        for part in item.get("content", [])
        if part.get("type") == "output_text"
    )
