"""POST /v1/embeddings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.http.body import ClientDisconnected, unless_disconnected
from faceplate.http.gate import principal_of
from faceplate.http.respond import parse_body
from faceplate.http.sse import dumps
from faceplate.protocol.embeddings import EmbeddingRequest
from faceplate.service import embeddings
from faceplate.service.services import Services


def routes(svc: Services) -> list[Route]:
    async def create(request: Request) -> Response:
        body, _ = await parse_body(request, EmbeddingRequest, endpoint="embeddings", settings=svc.settings)
        principal = principal_of(request)
        try:
            obj, headers = await unless_disconnected(request, lambda: embeddings.embed(svc, principal, body))
        except ClientDisconnected:
            return Response(status_code=499)
        data = await svc.cpu.run(dumps, obj) if len(obj["data"]) > 64 else dumps(obj)
        return Response(data, media_type="application/json", headers=headers)

    return [Route("/v1/embeddings", create, methods=["POST"])]
