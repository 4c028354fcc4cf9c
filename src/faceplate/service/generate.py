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
from faceplate.engines.base import ChatEngine, Prepared, estimate_prompt_tokens
from faceplate.errors import InvalidRequest
from faceplate.protocol.chat import ChatCompletionRequest
from faceplate.protocol.completions import CompletionRequest
from faceplate.service.generation import Reply, open_streams
from faceplate.service.metering import status_of
from faceplate.service.services import Services
from faceplate.translate.chat import ChatTranslator
from faceplate.translate.common import Translator, new_id
from faceplate.translate.completions import CompletionTranslator
from faceplate.translate.inbound import chat_request, completion_requests

TranslatorFor = Translator | Callable[[list[Prepared]], Translator]  # a translator, or one made once prepared
MAX_CHOICES = 128  # prompts x n in one request, as OpenAI caps n


def _completion_budget(services: Services, max_tokens: int | None, choices: int) -> int:
    return choices * (max_tokens if max_tokens is not None else services.settings.token_reservation)


async def metered(
    services: Services,
    principal: Principal,
    engine: ChatEngine,
    *,
    endpoint: str,
    model: str,
    estimate: int,
    max_tokens: int | None,
    choices: int,
    prepare: Callable[[], Awaitable[list[Prepared]]],
    translator: TranslatorFor | None = None,
    n: int = 1,
    include_usage: bool = False,
    explicit: bool | None = None,
) -> Reply:
    """Admit (estimate), prepare in the CPU pool, reserve with the real prompt, queue; any failure settles the meter.

    ``choices``: completions generated in all (prompts x n), for the token reservation;
    ``explicit``: whether the client set the token limit (default: ``max_tokens`` is set)."""
    meter = services.meter(principal, endpoint, model)
    explicit = max_tokens is not None if explicit is None else explicit
    completion = _completion_budget(services, max_tokens, choices)
    await meter.admit(estimate, completion, explicit=explicit)
    try:
        prepared = await prepare()
        await meter.reserve(sum(p.prompt_tokens for p in prepared), completion, explicit=explicit)
        streams = await open_streams(engine, prepared, services.priority)
        shaped = translator(prepared) if callable(translator) else translator
        return Reply(meter, streams, shaped, n=n, prepared=prepared, include_usage=include_usage)
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
    include_usage = _include_usage(body)

    async def prepare() -> list[Prepared]:
        return [await engine.prepare_chat(request, services.cpu)]

    logprobs = bool(body.logprobs)
    translator = ChatTranslator(rid, body.model, request.n, logprobs, include_usage=include_usage, tools_mode=tools_mode)
    return await metered(
        services,
        principal,
        engine,
        endpoint="/v1/chat/completions",
        model=body.model,
        estimate=estimate_prompt_tokens(request),
        max_tokens=request.sampling.max_tokens,
        choices=request.n,
        prepare=prepare,
        translator=translator,
        n=request.n,
        include_usage=include_usage,
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

    async def prepare() -> list[Prepared]:
        return [await engine.prepare_completion(r, services.cpu) for r in requests]

    def translator(prepared: list[Prepared]) -> Translator:
        echo = [p.echo_text for p in prepared for _ in range(n)]
        return CompletionTranslator(rid, body.model, body.logprobs is not None, _include_usage(body), echo)

    return await metered(
        services,
        principal,
        engine,
        endpoint="/v1/completions",
        model=body.model,
        estimate=sum(len(r.prompt) // 4 + 1 for r in requests),
        max_tokens=requests[0].sampling.max_tokens,
        explicit=body.max_tokens is not None,
        choices=n * len(requests),
        prepare=prepare,
        translator=translator,
        n=n,
        include_usage=_include_usage(body),
    )
