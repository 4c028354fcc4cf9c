"""Responses being generated: each one a task driving its metered reply through its state machine.

Every response, streamed or not, foreground or background, runs the same way: a task
consumes the engine events, feeds ``ResponseState``, appends the events to the run's log
and, however it ends (finished, cut at the token limit, failed, cancelled, the server
shutting down), emits exactly one terminal event and persists the final object. Callers
read the log: a stream follows it from any sequence number, a JSON caller awaits the end,
a background client polls the store or resumes with ``starting_after``.

The log is bounded (``max_events``): past the cap the oldest events are dropped, and a
resume from before the first kept event is refused rather than silently skipping events.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from faceplate.engines.base import Finished
from faceplate.errors import FaceplateError, InvalidRequest
from faceplate.service.generation import Reply
from faceplate.translate.responses import ResponseState, response_usage

log = logging.getLogger("faceplate.responses")

Persist = Callable[["ResponseRun"], Awaitable[None]]
SERVER_ERROR = "The server had an error while processing your request."
SHUTDOWN = "The server shut down before this response finished."


class OffsetLost(InvalidRequest):
    """A resume point older than the events still kept."""

    code = "stream_offset_lost"


@dataclass
class ResponseRun:
    state: ResponseState
    reply: Reply
    owner: str
    background: bool
    persist: Persist | None  # None: store=false, nothing is written
    started: Persist | None = None  # a background run, once in progress: the store says so too (other replicas read it)
    max_events: int = 50_000
    events: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    shutting_down: bool = False
    stop_error: FaceplateError | None = None  # why ``stop`` ended it (a deadline): the failure it reports
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def finished(self) -> bool:
        return self.task is not None and self.task.done()

    def _emit(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        self.events.extend(events)
        if len(self.events) > self.max_events:
            del self.events[: len(self.events) - self.max_events]
        self._wake.set()
        self._wake = asyncio.Event()

    def _usage(self) -> dict[str, Any]:
        c = self.reply.choices
        return response_usage(self.reply.prompt_tokens, c.completion_tokens, c.cached_tokens)

    def start(self) -> None:
        self._emit(self.state.created())
        self.task = asyncio.get_running_loop().create_task(self._drive(), name=f"response {self.id}")

    async def _drive(self) -> None:
        events = self.reply.events()
        try:
            self._emit(self.state.in_progress())
            if self.started is not None:
                await self.started(self)
            reason = "stop"
            async for ev in events:
                self._emit(self.state.feed(ev))
                if isinstance(ev, Finished):
                    reason = ev.reason
            await events.aclose()
            if reason == "cancelled":
                self._emit(self.state.cancel(self._usage()))
            else:
                self._emit(self.state.finish(reason, self._usage()))
        except asyncio.CancelledError:
            await events.aclose()
            await self.reply.aclose()  # ended before its first event (closing events ran nothing)
            self._end_early(None)
            raise
        except Exception as exc:
            await events.aclose()
            await self.reply.aclose(exc)  # idem; a no-op once the events' own cleanup has run
            if not isinstance(exc, FaceplateError):
                log.exception("response %s failed", self.id)
            self._end_early(exc)
        finally:
            await self._save()
            self._wake.set()

    def _end_early(self, exc: BaseException | None) -> None:
        if self.state.done:
            return
        if exc is None and self.stop_error is not None:
            exc = self.stop_error
        if exc is None and not self.shutting_down:
            self._emit(self.state.cancel(self._usage()))
            return
        if isinstance(exc, FaceplateError) and (exc.status < 500 or exc is self.stop_error):
            message = exc.message
        else:
            message = SHUTDOWN if exc is None else SERVER_ERROR
        code = "rate_limit_exceeded" if isinstance(exc, FaceplateError) and exc.status == 429 else "server_error"
        self._emit(self.state.fail(message, self._usage(), code=code))

    async def _save(self) -> None:
        if self.persist is None:
            return
        try:
            await asyncio.shield(self.persist(self))
        except Exception:
            log.exception("could not store response %s", self.id)

    async def wait(self) -> dict[str, Any]:
        """The final object, once the run has ended."""
        assert self.task is not None
        try:
            await asyncio.shield(self.task)
        except asyncio.CancelledError:
            if not self.task.done():
                raise  # the caller was cancelled, not the run
        if not self.state.done:  # cancelled before its first step: its own cleanup never ran
            await self.reply.aclose()
            self._end_early(None)
            await self._save()
        return self.state.snapshot()

    async def cancel(self) -> dict[str, Any]:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        return await self.wait()

    async def stop(self, error: FaceplateError) -> dict[str, Any]:
        """End it now as failed with ``error``'s message (a request's deadline); the final object."""
        self.stop_error = error
        return await self.cancel()

    def check_offset(self, after: int) -> None:
        """Refuse a resume point older than the first event still kept (never skip events silently)."""
        first = self.events[0]["sequence_number"] if self.events else 0
        if after + 1 < first:
            raise OffsetLost(
                f"Events before sequence number {first} are no longer kept for this response; resume from {first - 1} or later.",
                param="starting_after",
            )

    async def follow(self, after: int = -1) -> AsyncIterator[dict[str, Any]]:
        """Every event with ``sequence_number > after``, live until the terminal one."""
        while True:
            wake = self._wake
            self.check_offset(after)
            first = self.events[0]["sequence_number"] if self.events else 0
            for ev in self.events[after + 1 - first :]:
                after = ev["sequence_number"]
                yield ev
            if self.state.done and self.events[-1]["sequence_number"] <= after:
                return  # the terminal event is always the last one
            await wake.wait()


class Runs:
    """The runs in flight in this process, by response id; ``runner`` names this process in the store."""

    def __init__(self) -> None:
        self._runs: dict[str, ResponseRun] = {}
        self.runner = uuid.uuid4().hex

    def stored(self) -> list[ResponseRun]:
        """The runs whose rows this process heartbeats (store=false runs have none)."""
        return [r for r in self._runs.values() if r.persist is not None and not r.finished]

    def add(self, run: ResponseRun) -> None:
        self._runs[run.id] = run
        run.start()
        assert run.task is not None
        run.task.add_done_callback(lambda _t: self._runs.pop(run.id, None))

    def busy(self) -> bool:
        """Whether any run is still generating (a drain waits for them, background ones included)."""
        return any(not r.finished for r in self._runs.values())

    def get(self, response_id: str, owner: str) -> ResponseRun | None:
        run = self._runs.get(response_id)
        return run if run is not None and run.owner == owner else None

    async def close(self) -> None:
        """At shutdown: every run still going ends as failed (the server shut down) and is stored so."""
        runs = list(self._runs.values())
        for run in runs:
            run.shutting_down = True
            if run.task is not None:
                run.task.cancel()
        for run in runs:
            await run.wait()
