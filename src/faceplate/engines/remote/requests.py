"""Engine requests -> the body an upstream gets, refusing what it cannot honour.

The upstream is always asked to stream (one parser for every reply, and a disconnect is seen
at once), with usage in the stream when it honours ``include_usage``. A parameter the
upstream would silently drop (Ollama's ``tool_choice``, llama-server's ``n``) is a 400 here,
or, for ``n``, fanned out by the engine; never quietly lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faceplate.engines.base import ChatRequest, CompletionRequest, SamplingParams
from faceplate.engines.remote.kinds import Kind
from faceplate.errors import InvalidRequest


@dataclass(frozen=True)
class Caps:
    """What one upstream honours: seeded by its kind, then set by the start-up probe."""

    chat: bool = True
    completions: bool = True
    embeddings: bool = True
    max_n: int = 128
    logprobs: bool = True
    tools: bool = True
    tool_choice_forced: bool = True
    json_schema: bool = True
    stream_usage: bool = True
    max_completion_tokens: bool = True
    embedding_dimensions: int | None = None

    @classmethod
    def seed(cls, kind: Kind) -> Caps:
        return cls(
            embeddings=kind.embeddings,
            max_n=kind.max_n,
            logprobs=kind.logprobs,
            tool_choice_forced=kind.tool_choice_forced,
            max_completion_tokens=kind.max_tokens_field == "max_completion_tokens",
        )

    def meet(self, other: Caps) -> Caps:
        """What every member of a pool honours (a request may land on any of them)."""
        return Caps(
            **{
                f: (min(getattr(self, f), getattr(other, f)) if f == "max_n" else getattr(self, f) and getattr(other, f))
                for f in self.__dataclass_fields__
                if f != "embedding_dimensions"
            },
            embedding_dimensions=self.embedding_dimensions or other.embedding_dimensions,
        )


def _unsupported(what: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"The server behind this model does not support {what}.", param=param, code="unsupported_parameter")


def _sampling(body: dict[str, Any], s: SamplingParams, kind: Kind, caps: Caps, *, chat: bool) -> None:
    if s.max_tokens is not None:
        body["max_completion_tokens" if chat and caps.max_completion_tokens else "max_tokens"] = s.max_tokens
    body["temperature"] = s.temperature
    body["top_p"] = s.top_p
    if s.stop:
        body["stop"] = list(s.stop)
    if s.seed is not None:
        body["seed"] = s.seed
    if s.presence_penalty:
        body["presence_penalty"] = s.presence_penalty
    if s.frequency_penalty:
        body["frequency_penalty"] = s.frequency_penalty
    if s.logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in s.logit_bias}
    extras = {"top_k": s.top_k or None, "min_p": s.min_p or None, "ignore_eos": s.ignore_eos or None}
    extras["repetition_penalty"] = s.repetition_penalty if s.repetition_penalty != 1.0 else None
    for name, value in extras.items():
        if value is None:
            continue
        if name not in kind.extras:
            raise _unsupported(f"'{name}'", name)
        body[kind.renames.get(name, name)] = value
    if s.top_logprobs is not None:
        if not caps.logprobs:
            raise _unsupported("logprobs", "logprobs")
        if chat:
            body["logprobs"] = True
            body["top_logprobs"] = s.top_logprobs
        else:
            body["logprobs"] = s.top_logprobs


def _stream(body: dict[str, Any], caps: Caps) -> None:
    body["stream"] = True
    if caps.stream_usage:
        body["stream_options"] = {"include_usage": True}


def _tools(body: dict[str, Any], req: ChatRequest, caps: Caps) -> None:
    mode = req.tool_choice.mode
    if not req.tools or mode == "none":
        return  # no tools offered: every server honours that, which "none" means
    if not caps.tools:
        raise _unsupported("tools", req.tools_param)
    if mode in ("required", "function") and not caps.tool_choice_forced:
        raise _unsupported(f"tool_choice '{mode}' (it would ignore it and maybe answer in text)", "tool_choice")
    body["tools"] = [
        {"type": "function", "function": {"name": t.name, "description": t.description or "", "parameters": t.parameters}}
        for t in req.tools
    ]
    body["tool_choice"] = {"type": "function", "function": {"name": req.tool_choice.name}} if mode == "function" else mode
    if not req.parallel_tool_calls:
        body["parallel_tool_calls"] = False


def _response_format(body: dict[str, Any], req: ChatRequest, caps: Caps) -> None:
    fmt = req.response_format
    if fmt.type == "text":
        return
    if not caps.json_schema:
        raise _unsupported("structured outputs", "response_format")
    if fmt.type == "json_object":
        body["response_format"] = {"type": "json_object"}
        return
    schema = {"name": fmt.name or "response", "schema": fmt.schema or {}, "strict": fmt.strict}
    body["response_format"] = {"type": "json_schema", "json_schema": schema}


def chat_body(req: ChatRequest, model: str, n: int, kind: Kind, caps: Caps) -> dict[str, Any]:
    """The upstream's /v1/chat/completions body for ``n`` choices of ``req``."""
    if not caps.chat:
        raise InvalidRequest("The server behind this model does not serve chat completions.", code="model_not_supported")
    body: dict[str, Any] = {"model": model, "messages": [m.as_dict() for m in req.messages]}
    if n > 1:
        body["n"] = n
    _sampling(body, req.sampling, kind, caps, chat=True)
    _tools(body, req, caps)
    _response_format(body, req, caps)
    _stream(body, caps)
    return body


def completion_body(req: CompletionRequest, model: str, n: int, kind: Kind, caps: Caps) -> dict[str, Any]:
    """The upstream's /v1/completions body. Echo is added here, never asked of the upstream."""
    if not caps.completions:
        raise InvalidRequest("The server behind this model does not serve completions.", code="model_not_supported")
    if req.echo and not isinstance(req.prompt, str):
        raise _unsupported("echo with a token-id prompt", "echo")
    body: dict[str, Any] = {"model": model, "prompt": req.prompt if isinstance(req.prompt, str) else list(req.prompt)}
    if n > 1:
        body["n"] = n
    _sampling(body, req.sampling, kind, caps, chat=False)
    _stream(body, caps)
    return body
