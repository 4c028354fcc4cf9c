"""A job (one TokenRequest, all of its choices) and the event stream its caller iterates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from faceplate.engines.base import Finished, GenerationEvent, Priority
from faceplate.engines.llamacpp.request import TokenRequest

if TYPE_CHECKING:
    from faceplate.engines.llamacpp.slot import Slot


@dataclass(eq=False)
class Job:
    request: TokenRequest
    loop: asyncio.AbstractEventLoop
    priority: Priority = "interactive"
    queue: asyncio.Queue[list[GenerationEvent] | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    failed: bool = False
    slots: list[Slot] = field(default_factory=list)
    finished: int = 0  # choices that have Finished
    cached_tokens: int = 0  # prompt tokens whose KV was reused from the prefix cache
    submitted: float = field(default_factory=time.monotonic)

    def post(self, item: list[GenerationEvent] | BaseException) -> None:
        """From the scheduler thread: hand events (or the job's failure) to the job's event loop."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the caller's event loop is closed: nobody is listening any more
            self.cancelled = True


class JobStream:
    """A job's events, until every choice has Finished. Closing it cancels the job, even if never iterated."""

    def __init__(self, job: Job, cancel: Callable[[Job], None]) -> None:
        self._job = job
        self._cancel = cancel
        self._events = self._iterate()

    def __aiter__(self) -> JobStream:
        return self

    async def __anext__(self) -> GenerationEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        if self._job.finished < self._job.request.n:
            self._cancel(self._job)
        await self._events.aclose()

    async def _iterate(self) -> AsyncIterator[GenerationEvent]:
        job = self._job
        remaining = job.request.n
        try:
            while remaining:
                item = await job.queue.get()
                if isinstance(item, BaseException):
                    raise item
                for ev in item:
                    yield ev
                    if isinstance(ev, Finished):
                        remaining -= 1
        finally:
            if remaining:
                self._cancel(job)
