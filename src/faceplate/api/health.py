"""GET /health, /health/live, /health/ready (public).

Without a key they say only whether the server is up and its models loaded; a caller with
a valid key (or any caller when auth is off) also sees each engine's counters. ``/health/live``
is 200 while the process serves HTTP at all; ``/health/ready`` is 200 only while the models are
loaded, the store and Redis (when configured) answer within a second, and the server is not
draining: otherwise 503 with what is wrong, so an orchestrator sends traffic elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.http.sse import json_response
from faceplate.service.services import Services

log = logging.getLogger("faceplate.health")
CHECK_S = 1.0


async def _reachable(name: str, check: Awaitable[bool | None]) -> str | None:
    """None if ``check`` finishes within CHECK_S and does not say False; else why not."""
    try:
        ok = await asyncio.wait_for(check, CHECK_S)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        log.warning("readiness: %s unreachable: %s", name, type(exc).__name__)
        ok = False
    return None if ok is not False else f"{name} unreachable"


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
        problems = [] if ready() else ["no models loaded"]
        if svc.store is not None:
            problems.append(await _reachable("store", asyncio.to_thread(svc.store.ping)))
        ping = getattr(svc.limiter, "ping", None)
        if ping is not None:
            problems.append(await _reachable("redis", ping()))
        found = [p for p in problems if p]
        if found:
            return json_response({"status": "not_ready", "problems": found}, status=503)
        return json_response({"status": "ready"})

    return [
        Route("/health", health, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", readiness, methods=["GET"]),
    ]
