"""Per request: no new work while the server drains, and a deadline so that nothing waits forever.

``Lifecycle`` wraps the app. While ``Drain.draining`` every request but the health checks is a
503 ``server_shutting_down`` with ``Retry-After``. Every other request counts as in flight until
it is answered, and runs under a ``Cutoff``: the drain's end (``Drain.cut``) or its deadline
(``request_timeout_s`` after it arrived), whichever comes first. A request with no response
started by then is cancelled (its cleanup frees the engine slot and records usage) and answered
with the cutoff's error: 503 at a drain, 504 ``request_timeout`` at the deadline. A response
already streaming ends itself: ``http.sse`` watches the same cutoff (``current_cutoff``) and ends
the stream with an error event and ``[DONE]`` (a Responses stream with ``response.failed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceplate.errors import FaceplateError, RequestTimeout, ShuttingDown
from faceplate.http.sse import Stop, dumps
from faceplate.service.drain import Drain

EXEMPT = ("/health",)  # orchestrators keep probing a draining server

_CURRENT: ContextVar[Cutoff | None] = ContextVar("faceplate_cutoff", default=None)


@dataclass
class Cutoff:
    drain: Drain
    timeout_s: float | None
    deadline: float | None  # time.monotonic() at which the request is stopped

    def error(self) -> FaceplateError:
        if self.drain.cut.is_set():
            return ShuttingDown("The server shut down before this request finished. Please retry.")
        return RequestTimeout(
            f"The request did not finish within this server's deadline of {self.timeout_s:g} seconds, and was stopped."
        )

    async def wait(self) -> FaceplateError:
        """Until the drain ends or the deadline passes; the error to answer with."""
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        waiter = asyncio.ensure_future(self.drain.cut.wait())  # asyncio.wait: a cancel is never swallowed
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()
        return self.error()


def current_cutoff() -> Cutoff | None:
    """The cutoff of the request being answered (None outside one)."""
    return _CURRENT.get()


def stream_stop() -> Stop | None:
    """What a stream of this request watches to end itself (``EventStreamResponse(stop=...)``)."""
    cutoff = _CURRENT.get()
    return None if cutoff is None else cutoff.wait


async def send_error(send: Send, exc: FaceplateError) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": dumps(exc.body())})


class Lifecycle:
    def __init__(self, app: ASGIApp, drain: Drain, *, timeout_s: float | None) -> None:
        self.app = app
        self.drain = drain
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT):
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await send_error(send, ShuttingDown())
            return
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        cutoff = Cutoff(self.drain, self.timeout_s, deadline)
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        token = _CURRENT.set(cutoff)
        self.drain.inflight += 1
        task = asyncio.ensure_future(self.app(scope, receive, tracking))  # runs with the cutoff set
        stop = asyncio.ensure_future(cutoff.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and not started:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                if not started:
                    await send_error(send, stop.result())
                    return
            await task  # a response already under way ends itself at the cutoff (http.sse)
        finally:
            if not task.done():  # this request itself was cancelled (the server is going down)
                task.cancel()
            stop.cancel()
            self.drain.inflight -= 1
            _CURRENT.reset(token)
