"""POST /v1/chat/completions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.api.call import Call, Services, read_body
from faceplate.api.generation import open_streams, respond
from faceplate.protocol.chat import ChatCompletionRequest
from faceplate.protocol.common import parse_request
from faceplate.translate import ChatStream, chat_completion, chat_generation, new_id


def routes(svc: Services) -> list[Route]:
    async def create(request: Request) -> Response:
        principal = await svc.auth.authenticate(request.headers)
        body = parse_request(
            await read_body(request, svc.settings.max_request_bytes), ChatCompletionRequest, endpoint="chat.completions"
        )
        principal.check_model(body.model)
        engine = svc.registry.chat(body.model)
        rid = new_id("chatcmpl")
        gen, tools_mode = chat_generation(body, engine, rid)
        await engine.prepare(gen)
        engine.check_admission(gen)
        prompt_tokens = len(gen.prompt_tokens)
        call = Call(svc, principal, "/v1/chat/completions", body.model)
        await call.admit(prompt_tokens + gen.n * (gen.params.max_tokens or engine.n_ctx - prompt_tokens))
        include_usage = bool(body.stream and body.stream_options and body.stream_options.include_usage)
        stream = ChatStream(
            id=rid, model=body.model, n=gen.n, logprobs=bool(body.logprobs), include_usage=include_usage, tools_mode=tools_mode
        )
        [events] = await open_streams(call, engine, [gen])
        return await respond(
            request,
            call,
            events,
            chunker=stream,
            n_choices=gen.n,
            prompt_tokens=prompt_tokens,
            stream=bool(body.stream),
            include_usage=include_usage,
            keepalive_s=svc.settings.keepalive_s,
            build=lambda choices: chat_completion(stream, choices, prompt_tokens),
        )

    return [Route("/v1/chat/completions", create, methods=["POST"])]
