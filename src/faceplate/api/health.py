"""GET /health, /health/live, /health/ready (public).

Without a key they say only whether the server is up and its models loaded; a caller with
a valid key (or any caller when auth is off) also sees each engine's counters.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.http.sse import json_response
from faceplate.service.services import Services


def routes(svc: Services) -> list[Route]:
    def ready() -> bool:
        return bool(svc.registry.ids())

    async def health(request: Request) -> Response:
        body: dict[str, object] = {"status": "ok" if ready() else "no_models"}
        if request.scope.get("state", {}).get("principal") is not None:
            body["models"] = svc.registry.stats()
            body["cpu"] = svc.cpu.stats()
        return json_response(body)

    async def live(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readiness(request: Request) -> Response:
        if svc.drain.draining:
            return json_response({"status": "draining"}, status=503)
        return json_response({"status": "ready" if ready() else "not_ready"}, status=200 if ready() else 503)

    return [
        Route("/health", health, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", readiness, methods=["GET"]),
    ]
