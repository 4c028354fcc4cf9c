"""POST /v1/completions (legacy text completions)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.api.call import Call, Services, read_body
from faceplate.api.generation import merge, open_streams, respond
from faceplate.protocol.common import parse_request
from faceplate.protocol.completions import CompletionRequest
from faceplate.translate import CompletionStream, completion, completion_generations, new_id


def routes(svc: Services) -> list[Route]:
    async def create(request: Request) -> Response:
        principal = await svc.auth.authenticate(request.headers)
        body = parse_request(await read_body(request, svc.settings.max_request_bytes), CompletionRequest, endpoint="completions")
        principal.check_model(body.model)
        engine = svc.registry.chat(body.model)
        rid = new_id("cmpl")
        gens = completion_generations(body, engine, rid)
        n = body.n or 1
        for gen in gens:
            engine.check_admission(gen)
        prompt_tokens = sum(len(g.prompt_tokens) for g in gens)
        call = Call(svc, principal, "/v1/completions", body.model)
        await call.admit(prompt_tokens + sum(n * (g.params.max_tokens or 0) for g in gens))
        echo = [engine.detokenize(g.prompt_tokens) if body.echo else "" for g in gens for _ in range(n)]
        include_usage = bool(body.stream and body.stream_options and body.stream_options.include_usage)
        stream = CompletionStream(
            id=rid, model=body.model, logprobs=body.logprobs is not None, include_usage=include_usage, echo_texts=echo
        )
        events = merge(await open_streams(call, engine, gens), n)
        return await respond(
            request,
            call,
            events,
            chunker=stream,
            n_choices=len(gens) * n,
            prompt_tokens=prompt_tokens,
            stream=bool(body.stream),
            include_usage=include_usage,
            keepalive_s=svc.settings.keepalive_s,
            build=lambda choices: completion(stream, choices, prompt_tokens),
        )

    return [Route("/v1/completions", create, methods=["POST"])]
