"""Chat and legacy completions for a principal, metered, with no HTTP in sight.

    reply = await chat(services, principal, body)     # body: the parsed wire request
    async for chunk in reply.chunks(): ...            # or: obj = await reply.collect()

Order matters: model access, then the rate-limit admission with a cheap token estimate
(so a key over its requests-per-minute costs nothing), then the engine's ``prepare`` (the
template, tokenizer and grammar, in the bounded CPU pool), then queueing.
"""

from __future__ import annotations

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


async def _prepared_reply(
    meter: Meter,
    engine: ChatEngine,
    prepared: list[Prepared],
    translator: Translator,
    *,
    n: int,
    completion: int,
    explicit: bool,
    include_usage: bool,
) -> Reply:
    """Reserve with the real prompt, then queue (the callers settle the meter on failure)."""
    prompt_tokens = sum(p.prompt_tokens for p in prepared)
    await meter.reserve(prompt_tokens, completion, explicit=explicit)
    streams = await open_streams(engine, prepared)
    return Reply(meter, streams, translator, n=n, prompt_tokens=prompt_tokens, include_usage=include_usage)


async def chat(services: Services, principal: Principal, body: ChatCompletionRequest) -> Reply:
    principal.check_model(body.model)
    engine = services.registry.chat(body.model)
    rid = new_id("chatcmpl")
    request, tools_mode = chat_request(body, rid)
    meter = services.meter(principal, "/v1/chat/completions", body.model)
    explicit = request.sampling.max_tokens
    completion = _completion_budget(services, explicit, request.n)
    await meter.admit(estimate_prompt_tokens(request), completion, explicit=explicit is not None)
    try:
        prepared = await engine.prepare_chat(request, services.cpu)
        include_usage = bool(body.stream and body.stream_options and body.stream_options.include_usage)
        translator = ChatTranslator(
            id=rid,
            model=body.model,
            n=request.n,
            logprobs=bool(body.logprobs),
            include_usage=include_usage,
            tools_mode=tools_mode,
        )
        return await _prepared_reply(
            meter,
            engine,
            [prepared],
            translator,
            n=request.n,
            completion=completion,
            explicit=explicit is not None,
            include_usage=include_usage,
        )
    except BaseException as exc:
        await meter.finish(status_of(exc), 0, 0)
        raise


async def completion(services: Services, principal: Principal, body: CompletionRequest) -> Reply:
    principal.check_model(body.model)
    engine = services.registry.chat(body.model)
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
    explicit = requests[0].sampling.max_tokens
    completion = _completion_budget(services, explicit, n * len(requests))
    await meter.admit(sum(len(r.prompt) // 4 + 1 for r in requests), completion, explicit=explicit is not None)
    try:
        prepared = [await engine.prepare_completion(r, services.cpu) for r in requests]
        include_usage = bool(body.stream and body.stream_options and body.stream_options.include_usage)
        translator = CompletionTranslator(
            id=rid,
            model=body.model,
            logprobs=body.logprobs is not None,
            include_usage=include_usage,
            echo_texts=[p.echo_text for p in prepared for _ in range(n)],
        )
        return await _prepared_reply(
            meter,
            engine,
            prepared,
            translator,
            n=n,
            completion=completion,
            explicit=explicit is not None,
            include_usage=include_usage,
        )
    except BaseException as exc:
        await meter.finish(status_of(exc), 0, 0)
        raise
