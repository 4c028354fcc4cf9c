"""create_app(settings) -> the ASGI app: routes, error rendering, request ids, lifespan."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceplate.api import admin, chat, completions, embeddings, health, models
from faceplate.api.call import Services
from faceplate.errors import FaceplateError, MethodNotAllowed, NotFound
from faceplate.http.sse import json_response

log = logging.getLogger("faceplate.app")

Extension = Callable[[Services], list[Any]]


class RequestIds:
    """Every response carries x-request-id (the client's, if it sent one) and openai-processing-ms."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = dict(scope["headers"]).get(b"x-request-id", b"")
        rid = incoming.decode("latin-1")[:200] if incoming else f"req_{uuid.uuid4().hex}"

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = int((time.perf_counter() - started) * 1000)
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-request-id", rid.encode("latin-1")),
                    (b"openai-processing-ms", str(elapsed).encode()),
                    (b"openai-version", b"2020-10-01"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_ids)


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
    route_groups: list[Extension] = [health.routes, models.routes, chat.routes, completions.routes, *(extensions or [])]
    route_groups.append(admin.routes)
    route_groups.append(embeddings.routes)
    routes = [r for group in route_groups for r in group(services)]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.registry.start()
        try:
            yield
        finally:
            for hook in on_shutdown or []:
                await hook()
            await services.registry.close()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={FaceplateError: _faceplate_error, HTTPException: _http_error, Exception: _unexpected},
    )
    return RequestIds(app)
