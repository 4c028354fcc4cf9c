"""Usage accounting: one record per request, written off the request path.

``Call.finish`` hands every finished request (streamed, cancelled or failed alike) to
``UsageSink.record`` exactly once. ``BatchingUsageSink`` only appends it to an in-memory
queue; a background thread writes the queue in batches (one transaction each) every
``interval_s`` or as soon as ``max_batch`` records wait, and ``close`` writes what is left
at shutdown. If the database is down the records stay queued and are retried; past
``max_pending`` the oldest are dropped and counted (``dropped``), so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("faceplate.access.usage")


@dataclass(frozen=True)
class UsageRecord:
    key_id: str | None
    model: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    status: int
    latency_ms: float
    created: float


class UsageSink(Protocol):
    def record(self, rec: UsageRecord) -> None:
        """Must not block: implementations queue and write in the background."""
        ...


class NullUsage:
    def record(self, rec: UsageRecord) -> None:
        return None


class BatchingUsageSink:
    def __init__(
        self,
        write: Callable[[Sequence[UsageRecord]], None],
        *,
        interval_s: float = 1.0,
        max_batch: int = 1000,
        max_pending: int = 100_000,
    ) -> None:
        self._write = write
        self.interval_s = interval_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._pending: collections.deque[UsageRecord] = collections.deque()
        self._wake = threading.Event()
        self._writing = threading.Lock()  # one writer at a time: the thread, or flush()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self.written = 0
        self.dropped = 0
        self._last_error_log = 0.0

    # -- request path: append only -------------------------------------------------------
    def record(self, rec: UsageRecord) -> None:
        if self._closed:
            self._write_now([rec])  # a straggler after shutdown: rare, write it directly
            return
        self._pending.append(rec)
        if len(self._pending) > self.max_pending:
            self._pending.popleft()
            self.dropped += 1
        if self._thread is None:
            self._start()
        if len(self._pending) >= self.max_batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- background ----------------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="faceplate-usage", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write everything queued so far (blocking); returns how many records were written."""
        with self._writing:
            total = 0
            while self._pending:
                batch: list[UsageRecord] = []
                while self._pending and len(batch) < self.max_batch:
                    batch.append(self._pending.popleft())
                if not self._write_now(batch):
                    self._pending.extendleft(reversed(batch))  # keep them, in order, for the next try
                    break
                total += len(batch)
            return total

    def _write_now(self, batch: list[UsageRecord]) -> bool:
        try:
            self._write(batch)
        except Exception:
            now = time.monotonic()
            if now - self._last_error_log > 30:
                self._last_error_log = now
                log.exception("could not write %d usage records; will retry (%d queued)", len(batch), len(self._pending))
            return False
        self.written += len(batch)
        return True

    async def aflush(self) -> int:
        return await asyncio.to_thread(self.flush)

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()
        if self._pending:
            log.error("lost %d usage records at shutdown: the store could not be written", len(self._pending))

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
