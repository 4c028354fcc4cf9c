"""Chat and legacy completions for a principal, metered, with no HTTP in sight.

    reply = await chat(services, principal, body)     # body: the parsed wire request
    async for chunk in reply.chunks(): ...            # or: obj = await reply.collect()

Order matters: model access, then the rate-limit admission with a cheap token estimate
(so a key over its requests-per-minute costs nothing), then the engine's ``prepare`` (the
template, tokenizer and grammar, in the bounded CPU pool), then queueing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faceplate.access.auth import Principal
from faceplate.engines.base import ChatEngine, ChatRequest, Prepared
from faceplate.errors import InvalidRequest
from faceplate.protocol.chat import ChatCompletionRequest
from faceplate.protocol.completions import CompletionRequest
from faceplate.service.generation import Reply, open_streams
from faceplate.service.metering import Meter, status_of
from faceplate.service.services import Services
from faceplate.translate.chat import ChatTranslator
from faceplate.translate.common import Translator, new_id
from faceplate.translate.completions import CompletionTranslator
from faceplate.translate.inbound import chat_request, completion_requests

MAX_CHOICES = 128  # prompts x n in one request, as OpenAI caps n


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """A cheap guess (about four characters a token) used only to admit; usage settles to the real count."""
    chars = sum(len(m.content or "") + sum(len(c.arguments) for c in m.tool_calls) for m in request.messages)
    return chars // 4 + 4 * len(request.messages)


def _completion_budget(services: Services, max_tokens: int | None, choices: int) -> int:
    return choices * (max_tokens if max_tokens is not None else services.settings.token_reservation)


async def _metered_reply(
    meter: Meter,
    engine: ChatEngine,
    prepare: Callable[[], Awaitable[list[Prepared]]],
    translator: Callable[[list[Prepared]], Translator],
    *,
    n: int,
    completion: int,
    explicit: bool,
    include_usage: bool,
) -> Reply:
    """Prepare (in the CPU pool), reserve with the real prompt, queue; any failure settles the meter."""
    try:
        prepared = await prepare()
        prompt_tokens = sum(p.prompt_tokens for p in prepared)
        await meter.reserve(prompt_tokens, completion, explicit=explicit)
        streams = await open_streams(engine, prepared)
        return Reply(meter, streams, translator(prepared), n=n, prompt_tokens=prompt_tokens, include_usage=include_usage)
    except BaseException as exc:
        await meter.finish(status_of(exc), 0, 0)
        raise


def _include_usage(body: ChatCompletionRequest | CompletionRequest) -> bool:
    return bool(body.stream and body.stream_options and body.stream_options.include_usage)


async def chat(services: Services, principal: Principal, body: ChatCompletionRequest, *, strict: bool = False) -> Reply:
    """``strict``: OpenAI's own refusals too (compatibility policy; the wire parse already applied it)."""
    engine = services.chat_engine(principal, body.model)
    rid = new_id("chatcmpl")
    request, tools_mode = chat_request(body, rid, strict=strict)
    meter = services.meter(principal, "/v1/chat/completions", body.model)
    explicit = request.sampling.max_tokens is not None
    completion = _completion_budget(services, request.sampling.max_tokens, request.n)
    await meter.admit(estimate_prompt_tokens(request), completion, explicit=explicit)

    async def prepare() -> list[Prepared]:
        return [await engine.prepare_chat(request, services.cpu)]

    def translator(prepared: list[Prepared]) -> Translator:
        return ChatTranslator(
            rid, body.model, request.n, bool(body.logprobs), include_usage=_include_usage(body), tools_mode=tools_mode
        )

    return await _metered_reply(
        meter,
        engine,
        prepare,
        translator,
        n=request.n,
        completion=completion,
        explicit=explicit,
        include_usage=_include_usage(body),
    )


async def completion(services: Services, principal: Principal, body: CompletionRequest) -> Reply:
    engine = services.chat_engine(principal, body.model)
    rid = new_id("cmpl")
    requests = completion_requests(body, rid)
    n = body.n or 1
    if len(requests) * n > MAX_CHOICES or len(requests) > engine.max_jobs:
        limit = min(MAX_CHOICES // n, engine.max_jobs)
        raise InvalidRequest(
            f"Too many completions in one request: {len(requests)} prompts x n={n}. "
            f"This model accepts at most {limit} prompts per request at n={n}.",
            param="prompt",
        )
    meter = services.meter(principal, "/v1/completions", body.model)
    explicit = body.max_tokens is not None
    completion = _completion_budget(services, requests[0].sampling.max_tokens, n * len(requests))
    await meter.admit(sum(len(r.prompt) // 4 + 1 for r in requests), completion, explicit=explicit)

    async def prepare() -> list[Prepared]:
        return [await engine.prepare_completion(r, services.cpu) for r in requests]

    def translator(prepared: list[Prepared]) -> Translator:
        echo = [p.echo_text for p in prepared for _ in range(n)]
        return CompletionTranslator(rid, body.model, body.logprobs is not None, _include_usage(body), echo)

    return await _metered_reply(
        meter, engine, prepare, translator, n=n, completion=completion, explicit=explicit, include_usage=_include_usage(body)
    )
