"""From a chat request's tools / tool choice / response format to prompt messages and one grammar.

Used by engines that generate under their own grammar (the local llama.cpp engine). The
plan says what the template renders (messages as plain dicts, tools for templates that
render them) and which constraint the output must match:

- tools with ``none`` (or no tools): no calls; ``response_format`` alone decides;
- ``required`` / a named function: calls only;
- ``auto``: calls, or an answer that is free text or, when ``response_format`` asks for JSON,
  JSON matching that format (the format is never dropped because tools are present).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from faceplate.engines.base import ChatRequest
from faceplate.errors import InvalidRequest
from faceplate.structured import constraints
from faceplate.structured.constraints import Constraint
from faceplate.structured.tools import messages_for_template


@dataclass(frozen=True)
class ChatPlan:
    messages: list[dict[str, Any]]
    template_tools: list[dict[str, Any]] | None  # for templates that render tools themselves
    constraint: Constraint | None
    tool_calls: bool  # the output may hold tool-call markup to parse into calls


def _with_system(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def plan(request: ChatRequest, *, template_supports_tools: bool) -> ChatPlan:
    messages = [m.as_dict() for m in request.messages]
    fmt = request.response_format
    schema: dict[str, Any] | None = None
    if fmt.type == "json_object":
        schema = {"type": "object"}
    elif fmt.type == "json_schema":
        schema = fmt.schema if fmt.schema is not None else {}
        if not isinstance(schema, dict):
            raise InvalidRequest("The JSON schema must be an object.", param=fmt.param)
        hint = f"Answer with a JSON object that matches this JSON schema:\n{json.dumps(schema, separators=(',', ':'))}"
        messages = _with_system(messages, hint)

    choice = request.tool_choice
    tools = list(request.tools) if choice.mode != "none" else []
    named = choice.name if choice.mode == "function" else None
    offered = [t for t in tools if named is None or t.name == named]
    if offered:
        constraint = constraints.tool_calls(
            offered,
            only=named,
            parallel=request.parallel_tool_calls and named is None,
            allow_text=choice.mode == "auto",
            text_schema=schema,
            param=request.tools_param,
        )
    elif fmt.type == "json_object":
        constraint = constraints.json_object()
    elif fmt.type == "json_schema":
        constraint = constraints.json_schema(schema, param=fmt.param)
    else:
        constraint = None

    prompt_messages = messages_for_template(messages, offered, template_supports_tools=template_supports_tools)
    template_tools = (
        [
            {"type": "function", "function": {"name": t.name, "description": t.description or "", "parameters": t.parameters}}
            for t in offered
        ]
        if template_supports_tools and offered
        else None
    )
    return ChatPlan(prompt_messages, template_tools, constraint, tool_calls=bool(offered))
