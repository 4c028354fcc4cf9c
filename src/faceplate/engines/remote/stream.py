"""One request's generation over a pool: placement, retries before the first event, the stream itself.

``ready()`` places each part (one upstream request; several when ``n`` is fanned out), sends it
and holds its first event: a refusal, an unreachable upstream or an overload found by then is
retried on another member (at most ``retries`` times, never the same one twice), and if none
answers it is raised while it can still become the HTTP status. After the first event nothing
is retried: a member dying mid-stream is an error event for the client, with no text twice.
Closing the stream at any point (queued, waiting for headers, mid-stream) drops the upstream
connection, which frees its slot there.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from faceplate.engines.base import ChatRequest, CompletionRequest, GenerationEvent, Priority
from faceplate.engines.interleave import interleave
from faceplate.engines.remote.client import Unreachable
from faceplate.engines.remote.pool import Pool, Upstream
from faceplate.engines.remote.replies import StreamReader
from faceplate.engines.remote.routing import affinity_key
from faceplate.errors import FaceplateError, UpstreamFailed

BodyFor = Callable[[Upstream, Any, int], dict[str, Any]]  # (member, request, n) -> its request body


@dataclass
class RemotePrepared:
    request: ChatRequest | CompletionRequest
    path: str  # /v1/chat/completions or /v1/completions
    body_for: BodyFor
    prompt_tokens: int  # an estimate until the upstream reports its count
    max_new_tokens: int
    echo_text: str = ""
    parts: list[int] = field(default_factory=list)  # choices per upstream request


class _Part:
    """One upstream request and its reader; ``base`` is its first choice's index in the reply."""

    def __init__(self, pool: Pool, prepared: RemotePrepared, base: int, n: int, priority: Priority) -> None:
        self.pool, self.prepared, self.base, self.n, self.priority = pool, prepared, base, n, priority
        self.member: Upstream | None = None
        self.resp: aiohttp.ClientResponse | None = None
        self.reader = StreamReader(n, chat=prepared.path.endswith("chat/completions"))
        self.held: list[GenerationEvent] = []
        self._data: AsyncIterator[str] | None = None

    async def start(self) -> None:
        tried: set[Upstream] = set()
        key = affinity_key(self.prepared.request)
        error: FaceplateError | None = None
        for attempt in range(self.pool.routing.retries + 1):
            if attempt:
                await asyncio.sleep(random.uniform(0.0, 0.05 * attempt))  # jitter: do not stampede the survivors
            try:
                member = await self.pool.acquire(key, tried, self.priority)
            except FaceplateError as exc:
                raise (error or exc) from None
            tried.add(member)
            self.member = member
            try:
                await self._open(member)
                member.breaker.success()
                return
            except Unreachable as exc:
                error = exc.error
                member.counters["retries"] += attempt < self.pool.routing.retries
                self.pool.failed(member, hard=exc.hard, retry_after=exc.retry_after)
                await self._drop()
            except BaseException:
                await self._drop()
                raise
        raise error or UpstreamFailed("No upstream answered.")

    async def _open(self, member: Upstream) -> None:
        self.reader = StreamReader(self.n, chat=self.reader.chat)
        self.resp = await member.http.open(self.prepared.path, self.prepared.body_for(member, self.prepared.request, self.n))
        self._data = member.http.events(self.resp)
        async for data in self._data:  # hold the first event: an error-only stream is still retryable
            try:
                self.held = self._offset(self.reader.feed(data))
            except FaceplateError as exc:
                if exc.status >= 500:
                    raise Unreachable(exc) from None
                raise
            if self.held or self.reader.done:
                return
        raise Unreachable(UpstreamFailed("The server behind this model ended its answer before any event."))

    def _offset(self, events: list[GenerationEvent]) -> list[GenerationEvent]:
        return [replace(e, index=e.index + self.base) for e in events] if self.base else events

    async def events(self) -> AsyncIterator[GenerationEvent]:
        for ev in self.held:
            yield ev
        self.held = []
        assert self._data is not None and self.member is not None
        try:
            if not self.reader.done:
                async for data in self._data:
                    for ev in self._offset(self.reader.feed(data)):
                        yield ev
                    if self.reader.done:
                        break
            for ev in self._offset(self.reader.finish()):  # type: ignore[arg-type]
                yield ev
        except Unreachable as exc:  # mid-stream: the client gets an error event; the breaker hears of it
            self.pool.failed(self.member, hard=True, retry_after=None)
            raise exc.error from None
        except FaceplateError:
            self.pool.failed(self.member, hard=True, retry_after=None)
            raise
        if self.reader.prompt_tokens is not None:  # prompt counted once, however many parts share it
            self.prepared.prompt_tokens = self.reader.prompt_tokens
        if self.resp is not None:
            self.resp.release()  # read to its end: the connection goes back to the pool
            self.resp = None

    async def _drop(self) -> None:
        if self.resp is not None:
            self.resp.close()  # drop the connection: the upstream sees the client leave
            self.resp = None
        if self._data is not None:
            with contextlib.suppress(BaseException):
                await self._data.aclose()  # type: ignore[attr-defined]
            self._data = None
        if self.member is not None:
            await self.pool.release(self.member, self.priority)
            self.member = None

    async def close(self) -> None:
        await self._drop()


class RemoteStream:
    """The engine stream for one prepared request: ``ready()``, then its events; ``aclose()`` always."""

    def __init__(self, pool: Pool, prepared: RemotePrepared, priority: Priority = "interactive") -> None:
        self.pool = pool
        self.parts = []
        base = 0
        for n in prepared.parts:
            self.parts.append(_Part(pool, prepared, base, n, priority))
            base += n
        self._started: asyncio.Future[None] | None = None
        self._iter: AsyncIterator[GenerationEvent] | None = None

    async def ready(self) -> None:
        """Place and start every part (once; a second call waits for, or re-raises, the first's outcome)."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await self._started  # a caller cancelled while waiting cancels the placement with it

    async def _start(self) -> None:
        results = await asyncio.gather(*(p.start() for p in self.parts), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.aclose()
            raise failed[0]

    def __aiter__(self) -> RemoteStream:
        return self

    async def __anext__(self) -> GenerationEvent:
        if self._iter is None:
            await self.ready()
            self._iter = self._merged()
        return await self._iter.__anext__()

    async def _merged(self) -> AsyncIterator[GenerationEvent]:
        async for _, ev in interleave([p.events() for p in self.parts]):  # already at their reply's indices
            yield ev

    async def aclose(self) -> None:
        if self._started is not None and not self._started.done():
            self._started.cancel()  # still placing or waiting for headers: stop that too
            with contextlib.suppress(BaseException):
                await self._started
        if self._iter is not None:
            with contextlib.suppress(BaseException):
                await self._iter.aclose()  # type: ignore[attr-defined]
        for p in self.parts:
            await p.close()
