"""GET /metrics: Prometheus exposition of ``service.metrics``. Needs an API key unless
``metrics_public`` is set (the gate then lets it through like the health checks)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.service.services import Services


def routes(svc: Services) -> list[Route]:
    async def metrics(request: Request) -> Response:
        body, content_type = svc.metrics.render()
        return Response(body, media_type=content_type)

    return [Route("/metrics", metrics, methods=["GET"])]
