"""Every response carries x-request-id (the client's, if it sent one) and openai-processing-ms; a
request with too many or too large headers is a 431 before anything else reads them."""

from __future__ import annotations

import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceplate.errors import HeadersTooLarge
from faceplate.http.lifecycle import send_error


class RequestIds:
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
            if len(headers) > self.max_count or size > self.max_bytes:
                which = f"{len(headers)} headers" if len(headers) > self.max_count else f"{size} bytes of headers"
                await send_error(
                    send,
                    HeadersTooLarge(
                        f"Request header fields too large: {which}; this server accepts at most "
                        f"{self.max_count} headers and {self.max_bytes} bytes of them."
                    ),
                )
                return
        await self.app(scope, receive, send)
