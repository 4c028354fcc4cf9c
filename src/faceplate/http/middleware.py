"""Every response carries x-request-id (the client's, if it sent one) and openai-processing-ms; a
request with too many or too large headers is a 431 before anything else reads them; every
request is counted in the metrics by its route template and gets one access-log line."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceplate.http.connection import headers_too_large
from faceplate.http.lifecycle import send_error
from faceplate.service import request_log
from faceplate.service.metrics import Metrics

access = logging.getLogger("faceplate.access")


class RequestIds:
    """Request ids and processing time on every response; the request's metrics and access-log line.

    ``route_of`` names the route template a request matched (``/v1/files/{file_id}``; ``other`` for
    none), so neither metrics nor logs ever carry raw paths or ids as labels."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics | None = None, route_of: Callable[[Scope], str] | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.route_of = route_of or (lambda scope: "other")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = dict(scope["headers"]).get(b"x-request-id", b"")
        rid = incoming.decode("latin-1")[:200] if incoming else f"req_{uuid.uuid4().hex}"
        status = 500

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = int((time.perf_counter() - started) * 1000)
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-request-id", rid.encode("latin-1")),
                    (b"openai-processing-ms", str(elapsed).encode()),
                    (b"openai-version", b"2020-10-01"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        record, token = request_log.open_record()
        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            request_log.close_record(token)
            self._done(scope, rid, status, time.perf_counter() - started, record)

    def _done(self, scope: Scope, rid: str, status: int, elapsed: float, record: dict[str, object]) -> None:
        route = self.route_of(scope)
        if route == "/metrics":
            return  # scrapes would drown out the traffic they measure
        method = scope["method"]
        if self.metrics is not None:
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_latency.labels(method, route).observe(elapsed)
        principal = scope.get("state", {}).get("principal")
        key = None if principal is None else principal.owner
        fields = {
            "request_id": rid,
            "method": method,
            "route": route,
            "status": status,
            "latency_ms": round(elapsed * 1000, 1),
            "key": key,
            **record,
        }
        access.info("%s %s %s %d %.1fms", rid, method, route, status, elapsed * 1000, extra={"fields": fields})


class HeaderLimits:
    """431 for more than ``max_count`` headers or more than ``max_bytes`` of them in all (names and
    values): the server never works on a request built to exhaust it."""

    def __init__(self, app: ASGIApp, *, max_count: int, max_bytes: int) -> None:
        self.app = app
        self.max_count = max_count
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            size = sum(len(k) + len(v) for k, v in headers)
            too_large = headers_too_large(len(headers), size, max_count=self.max_count, max_bytes=self.max_bytes)
            if too_large is not None:
                await send_error(send, too_large)
                return
        await self.app(scope, receive, send)
