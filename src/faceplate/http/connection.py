"""Slow and oversized clients, handled where the bytes arrive.

uvicorn's keep-alive timer only runs between requests: a client that connects and then sends
its headers one byte a minute (slowloris), or a body that stalls, holds a connection and a
request task forever. ``client_protocol`` is uvicorn's httptools protocol with a header deadline
(from connecting, or from a request's first byte on a kept-alive connection, to the end of its
headers) and the header limits applied while parsing, so a 100 MB header is refused at 32 KiB
rather than buffered. ``BodyDeadline`` bounds the wait for each chunk of a request body.
Either answers OpenAI's error envelope (408 or 431) and closes the connection.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from faceplate.errors import ClientTooSlow, FaceplateError, HeadersTooLarge, InvalidRequest
from faceplate.http.lifecycle import send_error


def headers_too_large(count: int, size: int, *, max_count: int, max_bytes: int) -> HeadersTooLarge | None:
    """The 431 for ``count`` headers of ``size`` bytes in all, or None within the limits."""
    if count <= max_count and size <= max_bytes:
        return None
    which = f"{count} headers" if count > max_count else f"{size} bytes of headers"
    return HeadersTooLarge(
        f"Request header fields too large: {which}; this server accepts at most "
        f"{max_count} headers and {max_bytes} bytes of them."
    )


def raw_response(exc: FaceplateError) -> bytes:
    """A whole HTTP/1.1 response for ``exc``, written before any ASGI app has the request."""
    body = json.dumps(exc.body()).encode()
    head = [
        f"HTTP/1.1 {exc.status} {_REASONS.get(exc.status, 'Error')}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


LINGER_S = 2.0  # after a refusal, how long the client gets to stop sending before the close
_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}
_HTTP_HINT = "The bytes sent are not a well-formed HTTP/1.1 request."


def client_protocol(*, header_timeout_s: float, max_header_count: int, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class with a header deadline and header limits."""

    slack = 16 * 1024  # the request line and framing, besides the headers themselves

    class ClientProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _in_headers = False  # a request's first byte has come, its headers are not complete
        _in_body = False  # its headers are complete, its body is not
        _unparsed = 0  # bytes received since the last headers completed (httptools buffers a header whole)
        _count = 0
        _size = 0
        _refusal: FaceplateError | None = None
        _dropping = False  # refused: what the client still sends is read and dropped

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()  # a connection that never sends a request is closed at the deadline too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._dropping or self.transport.is_closing():
                return
            if not self._in_body:
                self._unparsed += len(data)
            super().data_received(data)
            if not self._in_body and self._unparsed > max_header_bytes + slack and not self.transport.is_closing():
                self._refuse(
                    headers_too_large(0, self._unparsed, max_count=max_header_count, max_bytes=max_header_bytes)
                    or HeadersTooLarge("Request header fields too large.")  # never None past the byte limit
                )

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers, self._count, self._size = True, 0, 0
            if self._deadline is None:
                self._arm()

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count += 1
            self._size += len(name) + len(value)
            too_large = headers_too_large(self._count, self._size, max_count=max_header_count, max_bytes=max_header_bytes)
            if too_large is not None:
                self._refusal = too_large
                raise HeadersTooLarge(too_large.message)  # stops the parser; uvicorn then calls send_400_response
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_headers, self._in_body, self._unparsed = False, True, 0
            self._disarm()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            super().on_message_complete()

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(header_timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.keep_alive = False  # a pipelined request is late: close after the answer under way
                self.flow.pause_reading()
                return
            if not self._in_headers:  # nothing of a request came at all: just close, as keep-alive does
                self.transport.close()
                return
            self._refuse(
                ClientTooSlow(f"The request's headers did not arrive within this server's limit of {header_timeout_s:g} seconds.")
            )

        def send_400_response(self, msg: str) -> None:
            """The parser stopped: on a refused header, or on bytes that are not HTTP (uvicorn's
            plain-text 400, here OpenAI's envelope)."""
            self._refuse(self._refusal or InvalidRequest(f"{msg} {_HTTP_HINT}"))

        def _refuse(self, exc: FaceplateError) -> None:
            self._disarm()
            if not (self.cycle is None or self.cycle.response_complete):
                self.transport.close()  # an answer is under way on this connection: cut it
                return
            self.transport.write(raw_response(exc))
            # Closing with the client's bytes unread would reset the connection, and the client
            # could lose this answer while it still sends: end our side, read and drop what comes
            # (data_received), and close when it does or after a short wait.
            self._dropping = True
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.flow.resume_reading()
            self.loop.call_later(LINGER_S, self.transport.close)

    return ClientProtocol


class BodyDeadline:
    """A request body that stalls for ``timeout_s`` between chunks is answered 408 (connection
    closed); once the body is complete, ``receive`` waits for a disconnect as long as it likes."""

    def __init__(self, app: ASGIApp, *, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False
        started = False

        async def bounded() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                raise ClientTooSlow(
                    f"The request body stalled for more than this server's limit of {self.timeout_s:g} seconds."
                ) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded, tracking)
        except ClientTooSlow as exc:  # raised where no handler renders it (before routing)
            if started:
                raise
            await send_error(send, exc)
