"""create_app(services) -> the ASGI app: routes, the auth gate, error rendering, request ids, lifespan."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Scope

from faceplate.api import (
    admin,
    batches,
    chat,
    completions,
    conversations,
    embeddings,
    files,
    health,
    metrics,
    models,
    responses,
    ui,
)
from faceplate.errors import FaceplateError, MethodNotAllowed, NotFound
from faceplate.http.connection import BodyDeadline
from faceplate.http.gate import AuthGate
from faceplate.http.lifecycle import Lifecycle
from faceplate.http.middleware import HeaderLimits, RequestIds
from faceplate.http.sse import json_response
from faceplate.service import files as file_service
from faceplate.service.batch_worker import BatchWorker
from faceplate.service.services import Services
from faceplate.service.stored_responses import start_upkeep

log = logging.getLogger("faceplate.app")

Extension = Callable[[Services], list[Any]]


def _render(exc: FaceplateError) -> Response:
    return json_response(exc.body(), status=exc.status, headers=exc.headers)


async def _faceplate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FaceplateError)
    return _render(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _render(NotFound(f"Invalid URL ({request.method} {request.url.path})"))
    if exc.status_code == 405:
        return _render(MethodNotAllowed(f"Method {request.method} is not allowed for {request.url.path}."))
    err = FaceplateError(str(exc.detail))
    err.status = exc.status_code
    err.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return _render(err)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _render(FaceplateError("The server had an error while processing your request. Sorry about that!"))


def create_app(
    services: Services,
    *,
    extensions: list[Extension] | None = None,
    on_shutdown: list[Callable[[], Awaitable[None]]] | None = None,
) -> ASGIApp:
    """Build the app around already-built services. The registry is started and closed with the app."""
    groups: list[Extension] = [
        health.routes,
        metrics.routes,
        models.routes,
        chat.routes,
        completions.routes,
        embeddings.routes,
        responses.routes,
        conversations.routes,
        files.routes,
        batches.routes,
        admin.routes,
        ui.routes,
        *(extensions or []),
    ]
    routes = [r for group in groups for r in group(services)]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.registry.start()
        upkeep = await start_upkeep(services)
        files_upkeep = await file_service.start_upkeep(services)
        worker = BatchWorker(services)
        worker.start()
        try:
            yield
        finally:
            await worker.stop()  # its leases run out; another runner (or this one restarted) takes over
            for task in (upkeep, files_upkeep):
                if task is not None:
                    task.cancel()
            await services.runs.close()  # responses still running end as failed, and are stored so
            for hook in on_shutdown or []:
                await hook()
            await services.registry.close()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={FaceplateError: _faceplate_error, HTTPException: _http_error, Exception: _unexpected},
    )
    settings = services.settings
    gate = AuthGate(
        app,
        services.auth,
        admin_key=settings.admin_key,
        admin_enabled=services.store is not None,
        bind_host=settings.host,
        allowed_hosts=settings.allowed_hosts,
        public_metrics=settings.metrics_public,
    )
    bounded = BodyDeadline(gate, timeout_s=settings.body_timeout_s)
    limited = HeaderLimits(bounded, max_count=settings.max_header_count, max_bytes=settings.max_header_bytes)
    lifecycle = Lifecycle(limited, services.drain, timeout_s=settings.request_timeout_s)
    return RequestIds(lifecycle, metrics=services.metrics, route_of=functools.partial(_route_of, routes))


def _route_of(routes: list[Any], scope: Scope) -> str:
    """The template of the route a request matched (``/v1/files/{file_id}``), or ``other``."""
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(route.path)
    return "other"
