"""The one generation path shared by chat and legacy completions.

Streaming sends each engine event as a chunk; non-streaming collects the very same
events. Either way, the client hanging up cancels the engine work, and usage is
recorded exactly once with what was really generated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from faceplate.api.call import Call
from faceplate.engines.base import ChatEngine, Finished, GenerationEvent, GenerationRequest, TextDelta
from faceplate.errors import FaceplateError
from faceplate.http.sse import ClientDisconnected, json_response, sse_event, sse_response, unless_disconnected
from faceplate.translate import ChoiceText, collect


class Chunker(Protocol):
    def opening(self) -> list[dict[str, Any]]: ...

    def events(self, ev: GenerationEvent) -> list[dict[str, Any]]: ...

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]: ...


async def merge(streams: Sequence[AsyncIterator[GenerationEvent]], n: int) -> AsyncIterator[GenerationEvent]:
    """Interleave several requests' events; request i's choice j becomes index i*n + j."""
    if len(streams) == 1:
        async for ev in streams[0]:
            yield ev
        return
    queue: asyncio.Queue[tuple[int, GenerationEvent | None | BaseException]] = asyncio.Queue()

    async def pump(i: int, it: AsyncIterator[GenerationEvent]) -> None:
        try:
            async for ev in it:
                await queue.put((i, ev))
            await queue.put((i, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            await queue.put((i, exc))

    tasks = [asyncio.ensure_future(pump(i, it)) for i, it in enumerate(streams)]
    try:
        live = len(streams)
        while live:
            i, item = await queue.get()
            if item is None:
                live -= 1
            elif isinstance(item, BaseException):
                raise item
            elif isinstance(item, TextDelta):
                yield TextDelta(i * n + item.index, item.text, item.logprobs, item.tokens)
            else:
                yield Finished(i * n + item.index, item.reason, item.completion_tokens)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        for it in streams:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(BaseException):
                    await aclose()


async def open_streams(
    call: Call, engine: ChatEngine, requests: Sequence[GenerationRequest]
) -> list[AsyncIterator[GenerationEvent]]:
    """Submit every request, or none: if one is refused (queue full), cancel those already queued."""
    streams: list[AsyncIterator[GenerationEvent]] = []
    try:
        for req in requests:
            streams.append(engine.generate(req))
    except FaceplateError as exc:
        for stream in streams:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        await call.finish(exc.status, 0, 0)
        raise
    return streams


async def respond(
    request: Request,
    call: Call,
    events: AsyncIterator[GenerationEvent],
    *,
    chunker: Chunker,
    n_choices: int,
    prompt_tokens: int,
    stream: bool,
    include_usage: bool,
    keepalive_s: float,
    build: Callable[[list[ChoiceText]], dict[str, Any]],
) -> Response:
    if stream:
        return sse_response(
            _stream(call, events, chunker, prompt_tokens, include_usage), keepalive_s=keepalive_s, headers=call.headers
        )
    status = 499  # client closed request, unless we get to answer
    choices = [ChoiceText() for _ in range(n_choices)]
    try:
        await unless_disconnected(request, lambda: collect(events, choices))
        status = 200
        return json_response(build(choices), headers=call.headers)
    except ClientDisconnected:
        return Response(status_code=499)
    except FaceplateError as exc:
        status = exc.status
        raise
    finally:
        await call.finish(status, prompt_tokens, sum(c.completion_tokens for c in choices))


async def _stream(
    call: Call, events: AsyncIterator[GenerationEvent], chunker: Chunker, prompt_tokens: int, include_usage: bool
) -> AsyncIterator[bytes]:
    tokens: dict[int, int] = {}  # per choice: generated so far, exact once it finished
    status = 499
    try:
        for chunk in chunker.opening():
            yield sse_event(chunk)
        async for ev in events:
            if isinstance(ev, Finished):
                tokens[ev.index] = ev.completion_tokens
            else:
                tokens[ev.index] = tokens.get(ev.index, 0) + ev.tokens
            for chunk in chunker.events(ev):
                yield sse_event(chunk)
        if include_usage:
            yield sse_event(chunker.usage_chunk(prompt_tokens, sum(tokens.values())))
        status = 200
    except FaceplateError as exc:
        status = exc.status
        raise
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
        await call.finish(status, prompt_tokens, sum(tokens.values()))
