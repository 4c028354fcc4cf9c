"""POST /v1/embeddings.

Bad input stops before the model: the wire check (types, empties, at most 2048 inputs),
then the engine's own (token ids in its vocabulary, no input over its length limit), so
a bad request never shares a batch with good ones. Usage counts the tokens the model
really sees, special tokens included.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.api.call import Call, Services, read_body
from faceplate.engines.base import EmbeddingEngine
from faceplate.engines.embedding_inputs import Input, off_loop_if_big, too_long
from faceplate.errors import FaceplateError
from faceplate.protocol.common import parse_request
from faceplate.protocol.embeddings import EmbeddingRequest, check_dimensions, embedding_response, shorten
from faceplate.http.sse import ClientDisconnected, json_response, unless_disconnected

# Above this many floats the response is encoded off the event loop (chat streams keep flowing).
INLINE_ENCODE_LIMIT = 32 * 1024


async def count_tokens(engine: EmbeddingEngine, inputs: list[Input]) -> list[int]:
    counts = await off_loop_if_big(engine.count_tokens, inputs)
    for i, n in enumerate(counts):
        if n > engine.max_input_tokens:
            raise too_long(i, n, engine.max_input_tokens)
    return counts


def routes(svc: Services) -> list[Route]:
    async def create(request: Request) -> Response:
        principal = await svc.auth.authenticate(request.headers)
        body = parse_request(await read_body(request, svc.settings.max_request_bytes), EmbeddingRequest, endpoint="embeddings")
        principal.check_model(body.model)
        engine = svc.registry.embedding(body.model)
        check_dimensions(body.dimensions, engine.dimensions, engine.supports_dimensions)
        inputs: list[Input] = list(body.inputs)
        prompt_tokens = sum(await count_tokens(engine, inputs))
        call = Call(svc, principal, "/v1/embeddings", body.model)
        await call.admit(prompt_tokens)
        status = 499  # client closed request, unless we get to answer
        try:
            result = await unless_disconnected(request, lambda: engine.embed(inputs))
            vectors = shorten(result.vectors, body.dimensions)

            def build() -> Response:
                return json_response(
                    embedding_response(body.model, vectors, prompt_tokens, body.encoding_format), headers=call.headers
                )

            response = await asyncio.to_thread(build) if vectors.size > INLINE_ENCODE_LIMIT else build()
            status = 200
            return response
        except ClientDisconnected:
            return Response(status_code=499)
        except FaceplateError as exc:
            status = exc.status
            raise
        finally:
            await call.finish(status, prompt_tokens, 0)

    return [Route("/v1/embeddings", create, methods=["POST"])]
