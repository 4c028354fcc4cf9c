"""POST /v1/completions (legacy text completions)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.http.gate import principal_of
from faceplate.http.respond import parse_body, respond
from faceplate.protocol.completions import CompletionRequest
from faceplate.service import generate
from faceplate.service.services import Services


def routes(svc: Services) -> list[Route]:
    async def create(request: Request) -> Response:
        body, _ = await parse_body(request, CompletionRequest, endpoint="completions", settings=svc.settings)
        reply = await generate.completion(svc, principal_of(request), body)
        return await respond(request, reply, stream=bool(body.stream), keepalive_s=svc.settings.keepalive_s)

    return [Route("/v1/completions", create, methods=["POST"])]
