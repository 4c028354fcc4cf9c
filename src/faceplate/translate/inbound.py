"""Wire -> engine: OpenAI chat and completion requests as engine-neutral requests.

Only cheap, structural work happens here (on the event loop): what needs the model's
vocabulary or grammar compiler happens in the engine's ``prepare``, off the loop.
"""

from __future__ import annotations

from typing import Any

from faceplate.engines.base import (
    ChatRequest,
    CompletionRequest,
    Message,
    ResponseFormat,
    SamplingParams,
    Tool,
    ToolCall,
    ToolChoice,
)
from faceplate.errors import InvalidRequest
from faceplate.protocol.chat import (
    ChatCompletionRequest,
    NamedFunction,
    NamedToolChoice,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    TextPart,
)
from faceplate.protocol.completions import CompletionRequest as WireCompletion
from faceplate.protocol.sampling import SamplingFields
from faceplate.translate.chat import ToolsMode


def _text_of(content: Any, param: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    parts = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            parts.append(part.text)
        elif getattr(part, "type", None) == "refusal":
            parts.append(part.refusal)
        else:
            raise InvalidRequest(
                f"This model does not accept '{part.type}' content; only text parts are supported.",
                param=f"{param}[{j}].type",
            )
    return "".join(parts)


def _message(msg: Any, i: int) -> Message:
    content = _text_of(msg.content, f"messages[{i}].content")
    if msg.role == "assistant":
        calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in msg.tool_calls or [])
        if msg.function_call is not None:
            calls += (ToolCall(f"call_{i}", msg.function_call.name, msg.function_call.arguments),)
        return Message("assistant", content, name=msg.name, tool_calls=calls)
    if msg.role == "tool":
        return Message("tool", content or "", tool_call_id=msg.tool_call_id)
    if msg.role == "function":  # legacy function result
        return Message("tool", content or "", name=msg.name, tool_call_id=f"call_{msg.name}")
    role = "system" if msg.role == "developer" else msg.role
    return Message(role, content or "", name=getattr(msg, "name", None))


def sampling(body: SamplingFields, *, max_tokens: int | None, top_logprobs: int | None) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=body.stop_list(),
        seed=body.seed,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        logit_bias=tuple((int(k), float(v)) for k, v in (body.logit_bias or {}).items()),
        top_logprobs=top_logprobs,
        top_k=body.top_k or 0,
        min_p=body.min_p or 0.0,
        repetition_penalty=body.repetition_penalty or 1.0,
    )


def _tools(body: ChatCompletionRequest) -> tuple[tuple[Tool, ...], ToolChoice, ToolsMode, bool]:
    if body.tools:
        tools = tuple(Tool(t.function.name, t.function.description, t.function.parameters or {}) for t in body.tools)
        choice, mode, param, parallel = body.tool_choice, "tools", "tool_choice", body.parallel_tool_calls is not False
    elif body.functions:
        tools = tuple(Tool(f.name, f.description, f.parameters or {}) for f in body.functions)
        choice, mode, param, parallel = body.function_call, "functions", "function_call", False
    else:
        if body.tool_choice not in (None, "none"):
            raise InvalidRequest(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice"
            )
        if body.function_call not in (None, "none"):
            raise InvalidRequest(
                "Invalid value for 'function_call': 'function_call' is only allowed when 'functions' are specified.",
                param="function_call",
            )
        return (), ToolChoice("none"), None, False
    if len({t.name for t in tools}) != len(tools):
        raise InvalidRequest("Tool names must be unique.", param=mode)
    if isinstance(choice, NamedToolChoice | NamedFunction):
        name = choice.function.name if isinstance(choice, NamedToolChoice) else choice.name
        if name not in {t.name for t in tools}:
            raise InvalidRequest(f"Invalid value for '{param}': no function named '{name}' was provided.", param=param)
        return tools, ToolChoice("function", name), mode, parallel  # type: ignore[return-value]
    return tools, ToolChoice(choice or "auto"), mode, parallel  # type: ignore[return-value]


def _response_format(body: ChatCompletionRequest) -> ResponseFormat:
    fmt = body.response_format
    if isinstance(fmt, ResponseFormatJsonObject):
        return ResponseFormat("json_object")
    if isinstance(fmt, ResponseFormatJsonSchema):
        schema = fmt.json_schema.schema_
        return ResponseFormat(
            "json_schema",
            schema=schema if schema is not None else {},
            name=fmt.json_schema.name,
            strict=bool(fmt.json_schema.strict),
            param="response_format.json_schema.schema",
        )
    return ResponseFormat()


def chat_request(body: ChatCompletionRequest, request_id: str, *, strict: bool = False) -> tuple[ChatRequest, ToolsMode]:
    """``strict``: OpenAI's refusals too, such as json_object without the word "JSON" (the grammar
    makes that rule unnecessary here, and clients written for other servers break on it)."""
    messages = tuple(_message(m, i) for i, m in enumerate(body.messages))
    mentions_json = any("json" in (m.content or "").lower() for m in messages)
    if strict and isinstance(body.response_format, ResponseFormatJsonObject) and not mentions_json:
        raise InvalidRequest(
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
            param="messages",
        )
    tools, choice, mode, parallel = _tools(body)
    request = ChatRequest(
        request_id=request_id,
        messages=messages,
        sampling=sampling(
            body, max_tokens=body.completion_limit(), top_logprobs=(body.top_logprobs or 0) if body.logprobs else None
        ),
        n=body.n or 1,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        response_format=_response_format(body),
        tools_param=mode or "tools",
        affinity=body.prompt_cache_key or body.safety_identifier or body.user,
    )
    return request, (mode if choice.mode != "none" else None)  # type: ignore[return-value]


def completion_requests(body: WireCompletion, request_id: str) -> list[CompletionRequest]:
    """One engine request per prompt. A null or empty prompt means "from the start of a document"."""
    if "prompt" not in body.model_fields_set:
        raise InvalidRequest("Missing required parameter: 'prompt'.", param="prompt")
    params = sampling(body, max_tokens=16 if body.max_tokens is None else body.max_tokens, top_logprobs=body.logprobs)
    n, echo = body.n or 1, bool(body.echo)
    return [
        CompletionRequest(request_id, p if isinstance(p, str) else tuple(p), params, n=n, echo=echo, affinity=body.user)
        for p in body.prompts()
    ]
