"""JSON and server-sent-event responses as the OpenAI SDKs read them.

- each event is ``data: <json>\\n\\n``; keep-alives are ``: comment`` lines (never an empty data);
- the stream ends with ``data: [DONE]`` and the body is closed right after;
- an error after the stream started is a ``data: {"error": {...}}`` event, which the SDK raises;
- JSON never carries NaN or Infinity (``allow_nan=False``): strict parsers reject them.

``EventStreamResponse`` owns its source: whether the client left before the first byte,
mid-stream, or never was sent anything, its ``close`` runs exactly once, which frees the
engine slot, settles the rate-limit lease and records usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from faceplate.errors import EngineFailure, FaceplateError

log = logging.getLogger("faceplate.http")

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def sse_event(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + dumps(obj) + b"\n\n"


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json", headers=headers)


async def _with_keepalive(source: AsyncIterator[bytes], interval: float) -> AsyncIterator[bytes]:
    """Yield from ``source``, inserting a comment line whenever it is quiet for ``interval`` seconds."""
    it = source.__aiter__()
    pending: asyncio.Task[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield KEEPALIVE
                continue
            task, pending = pending, None
            try:
                yield task.result()
            except StopAsyncIteration:
                return
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()


class _Cut(Exception):
    def __init__(self, error: FaceplateError) -> None:
        self.error = error


Chunk = dict[str, Any]
Stop = Callable[[], Awaitable[FaceplateError]]
# told the error and the last chunk sent, it ends the source and gives the events still to send
OnStop = Callable[[FaceplateError, Chunk | None], Awaitable[AsyncIterator[Chunk]]]


async def _until(chunks: AsyncIterator[Chunk], stop: Stop | None) -> AsyncIterator[Chunk]:
    """``chunks`` until ``stop`` returns (raising ``_Cut`` with its error; the source is left
    broken off, as a cancelled step leaves it); all of them without a ``stop``."""
    if stop is None:
        async for chunk in chunks:
            yield chunk
        return
    it = chunks.__aiter__()
    stopped = asyncio.ensure_future(stop())
    step: asyncio.Future[Chunk] | None = None
    try:
        while True:
            step = asyncio.ensure_future(it.__anext__())
            await asyncio.wait({step, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
                raise _Cut(stopped.result())
            try:
                yield step.result()
            except StopAsyncIteration:
                return
    finally:
        stopped.cancel()
        # Cancelled while waiting (the client left): the step still runs the source. Left alone it
        # would wait forever (the engine job is cancelled under it), and the garbage collector
        # would destroy it pending, with the source's generators still marked running. A step
        # that finished in the same turn is collected too (its StopAsyncIteration, say), or the
        # collector logs that its exception was never retrieved.
        if step is not None:
            step.cancel()
            with contextlib.suppress(BaseException):
                await step


async def _framed(
    chunks: AsyncIterator[Chunk], done: bool, named: bool, stop: Stop | None = None, on_stop: OnStop | None = None
) -> AsyncIterator[bytes]:
    """Frame ``chunks`` as SSE. When ``stop`` returns (a drain's end or the request's deadline): with
    ``on_stop`` (Responses), it ends the source and the events it gives (the terminal one) still go
    out; without, the error goes as an event, then ``[DONE]`` (when ``done``)."""
    last: Chunk | None = None
    try:
        async for chunk in _until(chunks, stop):
            last = chunk
            yield sse_event(chunk, chunk.get("type") if named else None)
    except _Cut as cut:
        if on_stop is None:
            yield sse_event(cut.error.body())
            if done:
                yield DONE
            return
        async for rest in _framed(await on_stop(cut.error, last), done, named):
            yield rest
        return
    except FaceplateError as exc:
        yield sse_event(exc.body())
        return
    except Exception:
        log.exception("stream failed")
        yield sse_event(EngineFailure("The server had an error while processing your request.").body())
        return
    if done:
        yield DONE


class EventStreamResponse(StreamingResponse):
    """SSE of ``chunks``; ``close`` runs once when the response ends, however it ends."""

    def __init__(
        self,
        chunks: AsyncIterator[dict[str, Any]],
        *,
        close: Callable[[], Awaitable[None]],
        keepalive_s: float,
        headers: dict[str, str] | None = None,
        done: bool = True,
        named: bool = False,
        stop: Stop | None = None,
        on_stop: OnStop | None = None,
    ) -> None:
        """``done``: end with ``data: [DONE]`` (chat, completions); ``named``: an ``event:`` line equal to
        each event's ``type`` (Responses, which sends no [DONE]); ``stop``/``on_stop``: see ``_framed``
        (``http.lifecycle`` passes the request's cutoff)."""
        hdrs = {"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})}
        framed = _framed(chunks, done, named, stop, on_stop)
        super().__init__(_with_keepalive(framed, keepalive_s), media_type="text/event-stream", headers=hdrs)
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Starlette never starts the body iterator when the client left before the first
            # byte, so the generators' own cleanup would never run: close them here.
            with contextlib.suppress(Exception):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
            await self._close()
