"""The gateway's start-up capability probe of one upstream: what it really does, not what its kind promises.

A dozen tiny requests, all at once after GET /v1/models. Where a flag is exactly a conformance
check's verdict (n, logprobs, forced tool calls, json_schema, max_completion_tokens, the error
envelope) the probe runs that very check, so `faceplate check` and the gateway never disagree.
A failing request degrades its flag to False; only a server that gives no HTTP answer to
GET /v1/models, refuses the key there, or names no model to probe raises ``ProbeError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from faceplate.check import checks_api, checks_chat
from faceplate.check.contract import Contract
from faceplate.check.http import Reply, TransportError, Upstream, model_ids
from faceplate.check.runner import UNREADABLE, CheckFn, Context, Fail, Skip

MANY_N = 128  # OpenAI's own ceiling for n
T = TypeVar("T")


class ProbeError(Exception):
    """The upstream cannot be probed at all (no HTTP answer, or no model to probe)."""


@dataclass(frozen=True)
class UpstreamProbe:
    models: tuple[str, ...]  # ids GET /v1/models lists
    model: str  # the model probed: the one asked for, else the first listed
    chat: bool
    completions: bool
    embeddings: bool
    embedding_dimensions: int | None
    max_n: int  # 1 when n>1 is refused or ignored (the gateway fans out), else 128
    usage_always: bool  # streams carry usage unasked (llama-server): the gateway strips it
    stream_usage: bool  # stream_options.include_usage gets usage
    logprobs: bool
    tool_choice_forced: bool  # tool_choice "required" really gives a tool call
    tools: bool  # tools are accepted at all
    json_schema: bool
    max_completion_tokens: bool  # honoured; else the gateway sends max_tokens
    error_shape_ok: bool  # errors are already {"error": {message, type, param, code: str|null}}


async def _passes(check: CheckFn, ctx: Context) -> bool:
    try:
        await check(ctx)
        return True
    except (Fail, Skip, TransportError, *UNREADABLE):
        return False


async def _or(default: T, work: Callable[[], Awaitable[T]]) -> T:
    try:
        return await work()
    except (Fail, Skip, TransportError, *UNREADABLE):
        return default


def _first_choice(reply: Reply) -> dict[str, Any] | None:
    body = reply.body if reply.status == 200 else None
    choices = body.get("choices") if isinstance(body, dict) else None
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None


def _any_usage(reply: Reply) -> bool:
    return reply.status == 200 and any(isinstance(c, dict) and isinstance(c.get("usage"), dict) for c in reply.data)


async def _chat(ctx: Context) -> bool:
    return _first_choice(await checks_chat.chat_reply(ctx)) is not None


async def _completions(ctx: Context) -> bool:
    reply = await ctx.upstream.post("/completions", {"model": ctx.chat_model(), "prompt": "Hi", "max_tokens": 1})
    return _first_choice(reply) is not None


async def _embeddings(ctx: Context) -> int | None:
    """The probed model's embedding width, None when it does not embed."""
    reply = await ctx.upstream.post("/embeddings", {"model": ctx.chat_model(), "input": "x", "encoding_format": "float"})
    vector = reply.body["data"][0]["embedding"] if reply.status == 200 else None
    return len(vector) if isinstance(vector, list) and vector else None


async def _usage_always(ctx: Context) -> bool:
    return _any_usage(await checks_chat.plain_stream(ctx))


async def _stream_usage(ctx: Context) -> bool:
    return _any_usage(await checks_chat.usage_stream(ctx))


async def _tools(ctx: Context) -> tuple[bool, bool]:
    """(tools accepted, tool_choice "required" really forces a call)."""
    forced = await _passes(checks_chat.chat_tool_required, ctx)
    if forced or (await checks_chat.tool_reply(ctx, "tool-required", "required")).status == 200:
        return True, forced
    # "required" refused: tools may still work with "auto".
    return (await checks_chat.tool_reply(ctx, "tool-auto", "auto")).status == 200, False


async def probe(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    api_key: str | None = None,
    model: str | None = None,
    timeout: float = 30.0,
) -> UpstreamProbe:
    """Probe the OpenAI-compatible server at ``base_url`` (with or without ``/v1``)."""
    upstream = Upstream(session, base_url, api_key=api_key, timeout=timeout)
    try:
        listed = await upstream.get("/models")
    except TransportError as exc:
        raise ProbeError(f"cannot reach {upstream.base}: {exc}") from exc
    if listed.status in (401, 403):  # every flag would read False: a wrong key is not a missing capability
        raise ProbeError(f"{upstream.base}/models refused the key: HTTP {listed.status} {listed.text[:200]}")
    models = model_ids(listed)
    chosen = model or (models[0] if models else None)
    if chosen is None:
        raise ProbeError(f"{upstream.base}/models answered HTTP {listed.status} with no model, and no model was named")
    ctx = Context(upstream, Contract(), chosen, listed, key_given=api_key is not None)
    (
        chat,
        completions,
        dimensions,
        many,
        usage_always,
        stream_usage,
        logprobs,
        (tools, forced),
        json_schema,
        max_completion_tokens,
        error_shape_ok,
    ) = await asyncio.gather(
        _or(False, lambda: _chat(ctx)),
        _or(False, lambda: _completions(ctx)),
        _or(None, lambda: _embeddings(ctx)),
        _passes(checks_chat.chat_n, ctx),
        _or(False, lambda: _usage_always(ctx)),
        _or(False, lambda: _stream_usage(ctx)),
        _passes(checks_chat.chat_logprobs, ctx),
        _or((False, False), lambda: _tools(ctx)),
        _passes(checks_chat.chat_json_schema, ctx),
        _passes(checks_chat.chat_max_completion_tokens, ctx),
        _passes(checks_api.errors_missing_messages, ctx),
    )
    # Any chat request answered is chat served: one slow request on a loaded upstream must not cost the pool its chat.
    chat = chat or many or usage_always or stream_usage or logprobs or tools or json_schema or max_completion_tokens
    return UpstreamProbe(
        models=models,
        model=chosen,
        chat=chat,
        completions=completions,
        embeddings=dimensions is not None,
        embedding_dimensions=dimensions,
        max_n=MANY_N if many else 1,
        usage_always=usage_always,
        stream_usage=stream_usage,
        logprobs=logprobs,
        tool_choice_forced=forced,
        tools=tools,
        json_schema=json_schema,
        max_completion_tokens=max_completion_tokens,
        error_shape_ok=error_shape_ok,
    )
