"""From a chat request's tools / functions / response_format to prompt messages and a constraint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from faceplate.structured import constraints
from faceplate.structured.constraints import ToolSpec
from faceplate.engines.base import Constraint
from faceplate.errors import InvalidRequest
from faceplate.protocol.chat import (
    ChatCompletionRequest,
    NamedFunction,
    NamedToolChoice,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
)
from faceplate.structured.tools import messages_for_template

ToolsMode = Literal["tools", "functions"] | None


@dataclass(frozen=True)
class ChatPlan:
    messages: list[dict[str, Any]]
    template_tools: list[dict[str, Any]] | None  # for templates that render tools themselves
    constraint: Constraint | None
    tools_mode: ToolsMode  # how calls are reported: tool_calls, legacy function_call, or not at all


def _tool_specs(body: ChatCompletionRequest) -> tuple[list[ToolSpec], ToolsMode, Any, bool]:
    if body.tools:
        specs = [ToolSpec(t.function.name, t.function.description, t.function.parameters or {}) for t in body.tools]
        choice: Any = body.tool_choice if body.tool_choice is not None else "auto"
        return specs, "tools", choice, body.parallel_tool_calls is not False
    if body.functions:
        specs = [ToolSpec(f.name, f.description, f.parameters or {}) for f in body.functions]
        choice = body.function_call if body.function_call is not None else "auto"
        return specs, "functions", choice, False
    return [], None, "none", False


def _named(choice: Any) -> str | None:
    if isinstance(choice, NamedToolChoice):
        return choice.function.name
    if isinstance(choice, NamedFunction):
        return choice.name
    return None


def _mentions_json(messages: list[dict[str, Any]]) -> bool:
    return any("json" in (m.get("content") or "").lower() for m in messages)


def plan(body: ChatCompletionRequest, messages: list[dict[str, Any]], *, template_supports_tools: bool) -> ChatPlan:
    specs, mode, choice, parallel = _tool_specs(body)
    if len({s.name for s in specs}) != len(specs):
        raise InvalidRequest("Tool names must be unique.", param="tools" if mode == "tools" else "functions")
    named = _named(choice)
    param = "tool_choice" if mode == "tools" else "function_call"
    if named is not None and named not in {s.name for s in specs}:
        raise InvalidRequest(f"Invalid value for '{param}': no function named '{named}' was provided.", param=param)
    if choice == "none" or not specs:
        constraint = None
        mode = None
        specs_for_prompt: list[ToolSpec] = []
    else:
        specs_for_prompt = [s for s in specs if named is None or s.name == named]
        # A named choice means "call this function": one call, as OpenAI returns it.
        single = not parallel or named is not None
        constraint = constraints.tool_calls(specs_for_prompt, only=named, parallel=not single, allow_text=choice == "auto")

    fmt = body.response_format
    if isinstance(fmt, ResponseFormatJsonObject):
        if not _mentions_json(messages):
            raise InvalidRequest(
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                param="messages",
            )
        constraint = constraint or constraints.json_object()
    elif isinstance(fmt, ResponseFormatJsonSchema):
        schema = fmt.json_schema.schema_
        json_constraint = constraints.json_schema(schema)
        if constraint is None:
            constraint = json_constraint
            hint = f"Answer with a JSON object that matches this JSON schema:\n{json.dumps(schema, separators=(',', ':'))}"
            messages = _with_system(messages, hint)

    prompt_messages = messages_for_template(messages, specs_for_prompt, template_supports_tools=template_supports_tools)
    template_tools = (
        [
            {"type": "function", "function": {"name": s.name, "description": s.description or "", "parameters": s.parameters}}
            for s in specs_for_prompt
        ]
        if template_supports_tools and specs_for_prompt
        else None
    )
    return ChatPlan(prompt_messages, template_tools, constraint, mode)


def _with_system(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]
