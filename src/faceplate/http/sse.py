"""Server-sent events as the OpenAI SDKs read them, and client-disconnect handling.

- each event is ``data: <json>\\n\\n``; keep-alives are ``: comment`` lines (never an empty data);
- the stream ends with ``data: [DONE]`` and the body is closed right after;
- an error after the stream started is a ``data: {"error": {...}}`` event, which the SDK raises;
- when the client goes away, the generator is cancelled and the engine iterator closed,
  which frees the sequence in the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from faceplate.errors import EngineFailure, FaceplateError

log = logging.getLogger("faceplate.http.sse")

T = TypeVar("T")

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


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


def sse_response(
    events: AsyncIterator[bytes],
    *,
    keepalive_s: float,
    headers: dict[str, str] | None = None,
    done: bool = True,
) -> StreamingResponse:
    """Frame ``events`` (already-encoded SSE events) as a response; failures become an error event."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in _with_keepalive(events, keepalive_s):
                yield chunk
        except FaceplateError as exc:
            yield sse_event(exc.body())
            return
        except Exception:
            log.exception("stream failed")
            yield sse_event(EngineFailure("The server had an error while processing your request.").body())
            return
        if done:
            yield DONE

    hdrs = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    hdrs.update(headers or {})
    return StreamingResponse(body(), media_type="text/event-stream", headers=hdrs)


async def until_disconnected(request: Request) -> None:
    """Return when the client hangs up. Only call after the body has been read."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class ClientDisconnected(Exception):
    """The client left before a non-streamed answer was ready; nothing is sent."""


async def unless_disconnected(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` but cancel it the moment the client disconnects (non-streaming requests)."""
    task = asyncio.ensure_future(work())
    watcher = asyncio.ensure_future(until_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise ClientDisconnected()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
