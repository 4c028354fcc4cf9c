"""Grammars for constrained decoding: response_format and tool calls, as llguidance grammars.

llguidance (the grammar engine inside llama.cpp's and vLLM's structured output) compiles
a JSON schema or a Lark grammar into a token mask per step. Grammars here are kept
*tight* so small models finish: no free whitespace in JSON, and tool calls in one
fixed compact shape. Compilation is bounded (llguidance parser limits + a size cap)
and a grammar that does not compile is a 400, never a 500 or a hang.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from llguidance import LLMatcher, LLParserLimits

from faceplate.engines.base import Tool
from faceplate.errors import InvalidRequest
from faceplate.structured.schema_bounds import tighten

MAX_SCHEMA_BYTES = 64 * 1024
TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"
# Compact JSON, no free whitespace: the model cannot ramble between tokens.
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
MAX_PARALLEL_CALLS = 4


@dataclass(frozen=True)
class Constraint:
    """A grammar the output must match: ``spec`` is an llguidance grammar (JSON-schema or Lark based).

    ``kind`` says what it came from (json_schema, json_object, tool_calls); ``param`` names the
    request field to blame if it cannot be compiled.
    """

    kind: str
    spec: str
    param: str = "response_format"


def _check_size(schema: Any, param: str) -> str:
    text = json.dumps(schema)
    if len(text) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(f"The schema is too large ({len(text)} bytes; the limit is {MAX_SCHEMA_BYTES}).", param=param)
    return text


def json_schema(schema: dict[str, Any] | None, *, param: str = "response_format.json_schema.schema") -> Constraint:
    schema = schema if schema is not None else {}
    if not isinstance(schema, dict):
        raise InvalidRequest("The JSON schema must be an object.", param=param)
    _check_size(schema, param)
    try:
        grammar = LLMatcher.grammar_from_json_schema(tighten(schema, param=param), overrides=JSON_OPTIONS)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"Invalid JSON schema: {exc}", param=param) from None
    return _checked(Constraint(kind="json_schema", spec=grammar, param=param))


def check_regex(pattern: str, *, param: str) -> None:
    """A regex grammar (a custom tool's), compiled on its own: a bad one is a 400 naming its field, not all of 'tools'."""
    try:
        grammar = LLMatcher.grammar_from_json_schema({"type": "string", "pattern": pattern}, overrides=JSON_OPTIONS)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        error = str(exc)
    else:
        error = _grammar_error(grammar)
    if error:
        raise InvalidRequest(f"Invalid regex grammar: {error}", param=param)


def json_object(depth: int = 2, items: int = 5, key_length: int = 24, string_length: int = 64) -> Constraint:
    """Any JSON object, written as a Lark grammar with explicit bounds.

    A free-form object is where small models ramble most (endless keys, giant strings), and
    JSON-schema keywords like ``maxProperties`` are not enforced by the grammar compiler, so the
    bounds are spelled out: nesting depth, members per object or array, key and string length.
    """
    rules = ["start: obj0"]
    for d in range(depth):
        inner = f"value{d + 1}" if d + 1 < depth else "scalar"
        rules.append(f'obj{d}: "{{" (pair{d} ("," pair{d}){{0,{items - 1}}})? "}}"')
        rules.append(f'pair{d}: KEY ":" {inner}')
        if d > 0:
            rules.append(f'arr{d}: "[" ({inner} ("," {inner}){{0,{items - 1}}})? "]"')
            rules.append(f"value{d}: obj{d} | arr{d} | scalar")
    rules += [
        'scalar: STRING | NUMBER | "true" | "false" | "null"',
        f'KEY: /"[A-Za-z_][A-Za-z0-9_]{{0,{key_length - 1}}}"/',
        f'STRING: /"([^"\\\\\\x00-\\x1f]|\\\\["\\\\\\/bfnrt]){{0,{string_length}}}"/',
        r"NUMBER: /-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?/",
    ]
    return _checked(Constraint(kind="json_object", spec="\n".join(rules), param="response_format"))


def _lark_str(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lark string literal


def _call_rule(i: int, tool: Tool) -> str:
    params = tighten(tool.parameters, param="tools") if tool.parameters else {"type": "object", "properties": {}}
    params["x-guidance"] = JSON_OPTIONS
    head = _lark_str(f'{{"name":"{tool.name}","arguments":')
    return f'call_{i}: {head} %json {json.dumps(params)} "}}"'


def tool_calls(
    tools: Sequence[Tool],
    *,
    only: str | None,
    parallel: bool,
    allow_text: bool,
    text_schema: dict[str, Any] | None = None,
    param: str = "tools",
) -> Constraint:
    """Calls as ``<tool_call>{"name":...,"arguments":{...}}</tool_call>``, one or several.

    ``only`` forces that function; ``allow_text`` (tool_choice auto) lets the answer be text
    instead: free text that must not start with ``<`` (so the two cannot be confused) or, when
    ``text_schema`` is given (response_format beside tools), JSON matching that schema.
    """
    chosen = [t for t in tools if only is None or t.name == only]
    for t in chosen:
        _check_size(t.parameters, param)
    rules = [_call_rule(i, t) for i, t in enumerate(chosen)]
    body = " | ".join(f"call_{i}" for i in range(len(chosen)))
    call = f"call: {_lark_str(TOOL_OPEN)} ({body}) {_lark_str(TOOL_CLOSE)}"
    calls = (
        "calls: call"
        if not parallel
        else "calls: " + " | ".join(" ".join(["call"] * k) for k in range(1, MAX_PARALLEL_CALLS + 1))
    )
    lines = ["start: calls | answer" if allow_text else "start: calls", calls, call, *rules]
    if allow_text and text_schema is not None:
        _check_size(text_schema, "response_format.json_schema.schema")
        answer = dict(tighten(text_schema))
        answer["x-guidance"] = JSON_OPTIONS
        lines.append(f"answer: %json {json.dumps(answer)}")
    elif allow_text:
        lines.append("answer: TEXT")
        lines.append(r"TEXT: /[^<\s][\s\S]*/")
    return _checked(Constraint(kind="tool_calls", spec="\n".join(lines), param=param))


# Bounds on compiling a grammar: a hostile schema fails fast instead of eating the CPU.
LIMITS = LLParserLimits(max_grammar_size=200_000, initial_lexer_fuel=2_000_000, max_lexer_states=100_000, verbose_errors=False)


@lru_cache(maxsize=256)
def _grammar_error(spec: str) -> str:
    return str(LLMatcher.validate_grammar(spec, None, limits=LIMITS))


def _checked(constraint: Constraint) -> Constraint:
    """Compile without a tokenizer (once per distinct grammar), so a bad schema is a 400 before anything runs."""
    error = _grammar_error(constraint.spec)
    if error:
        raise InvalidRequest(f"The schema could not be compiled into a grammar: {error}", param=constraint.param)
    return constraint


__all__ = ["check_regex", "json_schema", "json_object", "tool_calls", "Constraint", "TOOL_OPEN", "TOOL_CLOSE", "LIMITS"]
