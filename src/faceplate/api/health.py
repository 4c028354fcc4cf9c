"""GET /health (no auth): is the server up, are the models loaded, what are the engines doing."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.api.call import Services
from faceplate.http.sse import json_response


def routes(svc: Services) -> list[Route]:
    async def health(request: Request) -> Response:
        models = svc.registry.stats()
        return json_response({"status": "ok" if models else "no_models", "models": models})

    return [Route("/health", health, methods=["GET"])]
