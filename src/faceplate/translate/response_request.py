"""A Responses request's tools, tool choice, text format and sampling as engine-neutral values.

Function tools are strict by default (OpenAI echoes ``strict: true``); every call runs under
the grammar anyway. A ``custom`` (freeform) tool becomes a function whose one argument is the
text (``{"input": string}``, a regex grammar becoming its ``pattern``); its calls come back as
``custom_tool_call`` items with the bare text. Hosted tools Faceplate cannot run are a 400
naming ``tools[i].type``, unless the server was told to ignore them (Codex sends them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from faceplate.engines.base import ResponseFormat, SamplingParams, Tool, ToolChoice
from faceplate.errors import InvalidRequest
from faceplate.protocol.responses import (
    CreateResponseRequest,
    CustomTool,
    CustomToolFormatGrammar,
    FunctionTool,
    ResponseInputFields,
    TextFormatJsonObject,
    TextFormatJsonSchema,
    ToolChoiceAllowed,
    ToolChoiceCustom,
    ToolChoiceFunction,
)
from faceplate.structured.constraints import check_regex

log = logging.getLogger("faceplate.responses")

LOGPROBS_INCLUDE = "message.output_text.logprobs"
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ToolPlan:
    tools: tuple[Tool, ...]
    choice: ToolChoice
    parallel: bool
    custom: frozenset[str]  # names of freeform tools
    echo: list[dict[str, Any]]  # ``tools`` as the Response object shows them
    choice_echo: Any


def _custom_schema(tool: CustomTool, param: str, *, ignore_unsupported: bool) -> dict[str, Any]:
    text: dict[str, Any] = {"type": "string"}
    fmt = tool.format
    if isinstance(fmt, CustomToolFormatGrammar):
        if fmt.syntax == "regex":
            text["pattern"] = f"^(?:{fmt.definition})$"  # the whole input: a JSON Schema pattern alone matches anywhere
            check_regex(text["pattern"], param=f"{param}.format.definition")
        elif ignore_unsupported:  # Codex's apply_patch: free text rather than a refusal, said in the log
            log.warning("responses: custom tool %r: its %s grammar is not enforced (free text)", tool.name, fmt.syntax)
        else:
            raise InvalidRequest(
                f"Custom tool grammars of syntax '{fmt.syntax}' are not supported; use syntax 'regex' or format 'text'. "
                "(A server started with --responses-ignore-unsupported-tools runs such tools as free text instead.)",
                param=f"{param}.format.syntax",
            )
    return {"type": "object", "properties": {"input": text}, "required": ["input"], "additionalProperties": False}


def _named(tools: dict[str, tuple[Tool, str]], name: str, kind: str, param: str) -> str:
    if name not in tools or tools[name][1] != kind:
        raise InvalidRequest(f"Tool choice '{name}' not found in 'tools' parameter.", param=param)
    return name


def tool_plan(body: ResponseInputFields, *, ignore_unsupported: bool) -> ToolPlan:
    known: dict[str, tuple[Tool, str]] = {}
    echo: list[dict[str, Any]] = []
    for i, t in enumerate(body.tools or []):
        param = f"tools[{i}]"
        if isinstance(t, FunctionTool):
            tool = Tool(t.name, t.description, t.parameters if t.parameters is not None else EMPTY_PARAMETERS)
            shown = {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}
            shown["strict"] = True if t.strict is None else t.strict
        elif isinstance(t, CustomTool):
            tool = Tool(t.name, t.description, _custom_schema(t, param, ignore_unsupported=ignore_unsupported))
            shown = t.model_dump(exclude_none=True)
        else:
            if not ignore_unsupported:
                raise InvalidRequest(
                    f"Tool type '{t.type}' is not supported by this server: it runs function and custom tools only. "
                    "(A server started with --responses-ignore-unsupported-tools drops such tools instead.)",
                    param=f"{param}.type",
                )
            log.warning("responses: ignoring a %r tool this server cannot run", t.type)
            continue
        if t.name in known:
            raise InvalidRequest(f"Duplicate tool name '{t.name}'; tool names must be unique.", param=f"{param}.name")
        known[t.name] = (tool, t.type)
        echo.append(shown)
    custom = frozenset(n for n, (_, kind) in known.items() if kind == "custom")
    parallel = body.parallel_tool_calls is not False
    choice = body.tool_choice
    if choice is None or choice == "auto":
        mode_choice = ToolChoice("auto" if known else "none")
    elif isinstance(choice, str):
        if choice == "required" and not known:
            raise InvalidRequest("Tool choice 'required' needs at least one tool in 'tools'.", param="tool_choice")
        mode_choice = ToolChoice(choice)  # type: ignore[arg-type]
    elif isinstance(choice, ToolChoiceFunction | ToolChoiceCustom):
        kind = "function" if isinstance(choice, ToolChoiceFunction) else "custom"
        mode_choice = ToolChoice("function", _named(known, choice.name, kind, "tool_choice.name"))
    elif isinstance(choice, ToolChoiceAllowed):
        allowed = []
        for j, ref in enumerate(choice.tools):
            name = ref.get("name") if isinstance(ref, dict) else None
            if not isinstance(name, str) or name not in known:
                raise InvalidRequest(f"Allowed tool {ref!r} is not in 'tools'.", param=f"tool_choice.tools[{j}]")
            allowed.append(name)
        known = {n: v for n, v in known.items() if n in allowed}
        mode_choice = ToolChoice(choice.mode)
    else:
        if not ignore_unsupported:
            raise InvalidRequest(f"Tool choice type '{choice.type}' is not supported by this server.", param="tool_choice.type")
        mode_choice = ToolChoice("auto" if known else "none")
    choice_echo = choice if isinstance(choice, str) else choice.model_dump(exclude_none=True) if choice else "auto"
    if mode_choice.mode == "none":
        return ToolPlan((), ToolChoice("none"), parallel, custom, echo, choice_echo)
    return ToolPlan(tuple(t for t, _ in known.values()), mode_choice, parallel, custom, echo, choice_echo)


def text_format(body: ResponseInputFields) -> tuple[ResponseFormat, dict[str, Any]]:
    """The engine's response format, and ``text`` as the Response object echoes it."""
    fmt = body.text.format if body.text else None
    verbosity = body.text.verbosity if body.text and body.text.verbosity else "medium"
    if isinstance(fmt, TextFormatJsonSchema):
        shown = {"type": "json_schema", "name": fmt.name, "schema": fmt.schema_, "strict": bool(fmt.strict)}
        if fmt.description is not None:
            shown["description"] = fmt.description
        rf = ResponseFormat("json_schema", schema=fmt.schema_, name=fmt.name, strict=bool(fmt.strict), param="text.format.schema")
        return rf, {"format": shown, "verbosity": verbosity}
    if isinstance(fmt, TextFormatJsonObject):
        return ResponseFormat("json_object", param="text.format"), {"format": {"type": "json_object"}, "verbosity": verbosity}
    return ResponseFormat(), {"format": {"type": "text"}, "verbosity": verbosity}


def sampling(body: CreateResponseRequest) -> SamplingParams:
    logprobs = LOGPROBS_INCLUDE in (body.include or [])
    return SamplingParams(
        max_tokens=body.max_output_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_logprobs=(body.top_logprobs or 0) if logprobs else None,
    )
