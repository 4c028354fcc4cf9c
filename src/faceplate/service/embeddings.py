"""Embeddings for a principal, metered, with no HTTP in sight.

Bad input stops before the model: the wire check (types, empties, at most 2048 inputs),
then the engine's own (token ids in its vocabulary, no input over its length limit), so
a bad request never shares a batch with good ones. Usage counts the tokens the model
really sees, special tokens included.
"""

from __future__ import annotations

from typing import Any

from faceplate.access.auth import Principal
from faceplate.engines import openai_tokens
from faceplate.engines.base import EmbeddingEngine
from faceplate.engines.embedding_inputs import INLINE_LIMIT, Input, too_long
from faceplate.protocol.embeddings import EmbeddingRequest, check_dimensions, embedding_response, shorten
from faceplate.service.metering import status_of
from faceplate.service.services import Services

# Above this many floats the response object is built in the CPU pool (chat streams keep flowing).
INLINE_BUILD_LIMIT = 32 * 1024


async def count_tokens(services: Services, engine: EmbeddingEngine, inputs: list[Input]) -> list[int]:
    big = sum(len(x) for x in inputs) > INLINE_LIMIT
    counts = await services.cpu.run(engine.count_tokens, inputs) if big else engine.count_tokens(inputs)
    for i, n in enumerate(counts):
        if n > engine.max_input_tokens:
            raise too_long(i, n, engine.max_input_tokens)
    return counts


async def embed(services: Services, principal: Principal, body: EmbeddingRequest) -> tuple[dict[str, Any], dict[str, str]]:
    """The embedding list object and the rate-limit headers to send with it."""
    engine = services.embedding_engine(principal, body.model)
    check_dimensions(body.dimensions, engine.dimensions, engine.supports_dimensions)
    meter = services.meter(principal, "/v1/embeddings", body.model)
    inputs: list[Input] = list(body.inputs)
    if engine.token_ids == "openai":  # token arrays mean what they mean to an OpenAI client
        inputs = [x if isinstance(x, str) else openai_tokens.decode(x, i) for i, x in enumerate(inputs)]
    await meter.admit(sum(len(x) for x in inputs) // 4 + len(inputs), 0, explicit=True)  # before any tokenizer runs
    prompt_tokens = 0
    error: BaseException | None = None
    try:
        counted = sum(await count_tokens(services, engine, inputs))
        await meter.reserve(counted, 0, explicit=True)
        prompt_tokens = counted
        result = await engine.embed(inputs, services.priority)
        if result.token_counts:  # the engine's own count (a remote one's upstream reports it)
            prompt_tokens = sum(result.token_counts)
        vectors = shorten(result.vectors, body.dimensions)
        args = (body.model, vectors, prompt_tokens, body.encoding_format)
        big = vectors.size > INLINE_BUILD_LIMIT
        obj = await services.cpu.run(embedding_response, *args) if big else embedding_response(*args)
        return obj, meter.headers
    except BaseException as exc:
        error = exc
        raise
    finally:
        await meter.finish(status_of(error), prompt_tokens, 0)
