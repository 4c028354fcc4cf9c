"""The dynamic batcher: concurrent embedding requests share forward passes.

One worker thread owns the model, so the event loop (and every chat stream on it) never
waits for a forward pass. Requests put their inputs in one queue; the worker takes up to
``max_batch`` of them at a time, from as many requests as are waiting, and hands each
request its own slice of the results when all of its inputs are done.

Gathering is bounded: once an input is waiting, the worker waits at most ``wait_s`` after
its arrival for more to join, then runs whatever it has. When the worker was busy, the
inputs that queued meanwhile are already past their wait and run at once, so a loaded
server batches by itself without adding latency.

Interactive requests go ahead of Batch API ones (``priority="batch"``) still waiting, so an
embedding batch never delays a client by more than the forward pass already running.

A failure in ``run`` fails the requests that had inputs in that batch, and nothing else.
A request that is cancelled (its client left) has its inputs skipped if they have not
run yet. With ``enabled=False`` each batch holds one request's inputs only: the same
worker, no sharing (the baseline the benchmark compares against).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from faceplate.engines.base import Priority
from faceplate.errors import EngineFailure, FaceplateError, Overloaded, ServiceUnavailable

log = logging.getLogger("faceplate.batcher")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class _Job(Generic[T, R]):
    items: Sequence[T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[R]]
    results: list[Any] = field(default_factory=list)
    remaining: int = 0
    given_out: int = 0  # inputs already taken by the worker
    enqueued_at: float = 0.0
    priority: Priority = "interactive"
    dead: bool = False  # failed or cancelled: skip what is left

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)
        self.remaining = len(self.items)


def _resolve(fut: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


class Batcher(Generic[T, R]):
    """Runs ``run(items) -> results`` (same length, same order) on one worker thread, in shared batches."""

    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int,
        wait_s: float,
        enabled: bool = True,
        max_requests: int | None = None,
        name: str = "embedding",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self.max_batch = max_batch
        self.wait_s = max(0.0, wait_s)
        self.enabled = enabled
        self.max_requests = max_requests
        self.name = name
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job[T, R]] = collections.deque()
        self._queued_items = 0
        self._active = 0  # requests submitted and not yet answered
        self._closed = False
        self._thread: threading.Thread | None = None
        # statistics (written by the worker only)
        self.batches = 0
        self.items_run = 0
        self.largest_batch = 0
        self.failed_batches = 0

    # ------------------------------------------------------------------ event-loop side

    def start(self) -> None:
        with self._cond:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._work, name=f"faceplate-{self.name}-batcher", daemon=True)
                self._thread.start()

    async def submit(self, items: Sequence[T], priority: Priority = "interactive") -> list[R]:
        """The results for ``items``, in order, once every one has run."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        job: _Job[T, R] = _Job(items=items, loop=loop, future=loop.create_future(), priority=priority)
        with self._cond:
            if self._closed:
                raise ServiceUnavailable("The model is shutting down.")
            if self.max_requests is not None and self._active >= self.max_requests:
                raise Overloaded("The embedding model is at capacity and its queue is full. Please retry shortly.")
            job.enqueued_at = time.monotonic()
            self._enqueue(job)
            self._queued_items += len(items)
            self._active += 1
            self._cond.notify()
        self.start()
        try:
            return await job.future
        except asyncio.CancelledError:
            job.dead = True  # the worker skips its inputs that have not run
            raise
        finally:
            with self._cond:
                self._active -= 1

    def _enqueue(self, job: _Job[T, R]) -> None:  # holds _cond
        """Append a batch job; put an interactive one before the first batch job not yet started."""
        if job.priority == "interactive":
            for i, queued in enumerate(self._queue):
                if queued.priority == "batch" and queued.given_out == 0:
                    self._queue.insert(i, job)
                    return
        self._queue.append(job)

    def close(self) -> None:
        """Stop the worker after the batch it is running; fail every request still waiting. Blocking."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            self._queued_items = 0
        for job in left:
            self._fail(job, ServiceUnavailable("The model is shutting down."))

    def stats(self) -> dict[str, Any]:
        return {
            "batching": self.enabled,
            "max_batch": self.max_batch,
            "batch_wait_ms": self.wait_s * 1000,
            "batches": self.batches,
            "inputs": self.items_run,
            "largest_batch": self.largest_batch,
            "mean_batch": round(self.items_run / self.batches, 2) if self.batches else 0.0,
            "failed_batches": self.failed_batches,
            "queued_inputs": self._queued_items,
            "active_requests": self._active,
        }

    # ------------------------------------------------------------------ worker side

    def _drop_dead(self) -> None:
        while self._queue and self._queue[0].dead:
            job = self._queue.popleft()
            self._queued_items -= len(job.items) - job.given_out

    def _take(self) -> list[tuple[_Job[T, R], int]] | None:
        """The next batch as (job, input index) pairs; None once closed. Holds the lock while waiting."""
        with self._cond:
            while True:
                self._drop_dead()
                if self._closed:
                    return None
                if self._queue:
                    break
                self._cond.wait()
            if self.enabled:
                deadline = self._queue[0].enqueued_at + self.wait_s
                while self._queued_items < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                    self._drop_dead()
                if self._closed or not self._queue:
                    return None if self._closed else []
            batch: list[tuple[_Job[T, R], int]] = []
            while self._queue and len(batch) < self.max_batch:
                job = self._queue[0]
                if job.dead:
                    self._drop_dead()
                    continue
                n = min(self.max_batch - len(batch), len(job.items) - job.given_out)
                batch.extend((job, i) for i in range(job.given_out, job.given_out + n))
                job.given_out += n
                self._queued_items -= n
                if job.given_out == len(job.items):
                    self._queue.popleft()
                if not self.enabled:
                    break  # one request per batch
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[_Job[T, R], int]]) -> None:
        items = [job.items[i] for job, i in batch]
        try:
            out = self._run(items)
            if len(out) != len(items):
                raise RuntimeError(f"batch function returned {len(out)} results for {len(items)} inputs")
        except Exception as exc:  # noqa: BLE001 - handed to the requests in this batch
            self.failed_batches += 1
            if isinstance(exc, FaceplateError):
                err: BaseException = exc
            else:
                log.exception("%s batch of %d inputs failed", self.name, len(items))
                err = EngineFailure("The embedding model failed while processing this request.")
                err.__cause__ = exc
            for job in {job for job, _ in batch}:
                self._fail(job, err)
            return
        self.batches += 1
        self.items_run += len(items)
        self.largest_batch = max(self.largest_batch, len(items))
        for (job, i), result in zip(batch, out, strict=True):
            if job.dead:
                continue
            job.results[i] = result
            job.remaining -= 1
            if job.remaining == 0:
                self._deliver(job, job.results, None)

    def _fail(self, job: _Job[T, R], exc: BaseException) -> None:
        if job.dead:
            return
        job.dead = True
        self._deliver(job, None, exc)

    @staticmethod
    def _deliver(job: _Job[T, R], value: Any, exc: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            job.loop.call_soon_threadsafe(_resolve, job.future, value, exc)
