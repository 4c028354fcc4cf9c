"""Every response carries x-request-id (the client's, if it sent one) and openai-processing-ms."""

from __future__ import annotations

import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
