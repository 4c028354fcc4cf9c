"""Responses input items: wire -> stored items -> engine messages.

A stored item is the wire "item resource" (``{"id": "msg_…", "type": "message", …}``): what
``input_items`` and conversation item lists return, and what a client may send back as
input. Turning stored items into chat messages is deterministic, and an assistant turn
(text, then its calls) renders as the one assistant message the model produced, so a
continued conversation renders to the same prompt tokens as before and the engine's
prefix cache is hit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from faceplate.engines.base import Message, ToolCall
from faceplate.errors import InvalidRequest
from faceplate.protocol.response_items import (
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputItem,
    ItemReference,
    MessageItem,
    ReasoningItem,
)
from faceplate.translate.responses import new_item_id

Item = dict[str, Any]
TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")


def _part(part: Any, param: str) -> dict[str, Any]:
    kind = part.type
    if kind == "input_text":
        return {"type": "input_text", "text": part.text}
    if kind == "output_text":
        return {"type": "output_text", "text": part.text, "annotations": [], "logprobs": []}
    if kind == "refusal":
        return {"type": "refusal", "refusal": part.refusal}
    raise InvalidRequest(
        f"This model does not accept '{kind}' content; only text parts (input_text, output_text) are supported.",
        param=f"{param}.type",
    )


def _content(content: str | list[Any], role: str, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if role == "assistant":
            return [{"type": "output_text", "text": content, "annotations": [], "logprobs": []}]
        return [{"type": "input_text", "text": content}]
    return [_part(p, f"{param}[{j}]") for j, p in enumerate(content)]


def _output(output: str | list[Any], param: str) -> str | list[dict[str, Any]]:
    return output if isinstance(output, str) else [_part(p, f"{param}[{j}]") for j, p in enumerate(output)]


def stored_item(item: InputItem, param: str, resolve: Callable[[str], Item | None]) -> Item:
    """One wire input item as the stored item resource (ids assigned where the client gave none).

    ``resolve`` finds a stored item for an ``item_reference``; a reference to nothing is a 400."""
    if isinstance(item, ItemReference):
        found = resolve(item.id)
        if found is None:
            raise InvalidRequest(f"Item with id '{item.id}' not found.", param=f"{param}.id")
        return found
    if isinstance(item, MessageItem):
        return {
            "id": item.id or new_item_id("msg"),
            "type": "message",
            "role": item.role,
            "status": "completed",
            "content": _content(item.content, item.role, f"{param}.content"),
        }
    if isinstance(item, FunctionCallItem):
        return {
            "id": item.id or new_item_id("fc"),
            "type": "function_call",
            "status": "completed",
            "call_id": item.call_id,
            "name": item.name,
            "arguments": item.arguments,
        }
    if isinstance(item, FunctionCallOutputItem | CustomToolCallOutputItem):
        prefix = "fco" if isinstance(item, FunctionCallOutputItem) else "ctco"
        out = {"id": item.id or new_item_id(prefix), "type": item.type, "call_id": item.call_id}
        out["output"] = _output(item.output, f"{param}.output")
        if isinstance(item, FunctionCallOutputItem):
            out["status"] = "completed"
        return out
    if isinstance(item, CustomToolCallItem):
        return {
            "id": item.id or new_item_id("ctc"),
            "type": "custom_tool_call",
            "status": "completed",
            "call_id": item.call_id,
            "name": item.name,
            "input": item.input,
        }
    assert isinstance(item, ReasoningItem)
    # Faceplate issues no encrypted reasoning, so any that comes back is dropped, never trusted.
    out = {"id": item.id or new_item_id("rs"), "type": "reasoning", "summary": list(item.summary)}
    if item.content is not None:
        out["content"] = list(item.content)
    return out


def _text(parts: str | list[dict[str, Any]]) -> str:
    if isinstance(parts, str):
        return parts
    return "".join(p.get("text", "") if p.get("type") in TEXT_PARTS else p.get("refusal", "") for p in parts)


def _custom_arguments(text: str) -> str:
    return json.dumps({"input": text}, ensure_ascii=False)


def messages(items: Sequence[Item], instructions: str | None = None) -> list[Message]:
    """Chat messages for stored items: developer is system; consecutive calls join the assistant turn before them."""
    out: list[Message] = [Message("system", instructions)] if instructions else []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            out.append(Message(role, _text(item["content"])))
        elif kind in ("function_call", "custom_tool_call"):
            args = item["arguments"] if kind == "function_call" else _custom_arguments(item["input"])
            call = ToolCall(item["call_id"], item["name"], args)
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                out[-1] = Message("assistant", last.content, name=last.name, tool_calls=(*last.tool_calls, call))
            else:
                out.append(Message("assistant", None, tool_calls=(call,)))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            out.append(Message("tool", _text(item["output"]), tool_call_id=item["call_id"]))
        # reasoning items carry nothing this model can read: accepted and left out of the prompt
    return out
