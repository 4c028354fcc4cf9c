"""A bounded executor for request CPU work: chat templates, tokenization, schema planning, grammars.

Kept apart from the default executor (store I/O, ``asyncio.to_thread``) so a burst of
expensive requests cannot starve key lookups and usage writes, and bounded so that burst
gets an immediate 503 with ``Retry-After`` instead of an ever longer wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from faceplate.errors import Overloaded

T = TypeVar("T")


class CpuPool:
    def __init__(self, workers: int = 2, max_waiting: int = 64) -> None:
        self.workers = workers
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faceplate-cpu")
        self.in_flight = 0  # running or waiting; touched only on the event loop
        self.rejected = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.in_flight >= self.workers + self.max_waiting:
            self.rejected += 1
            raise Overloaded("The server is busy preparing other requests. Please retry shortly.", retry_after_s=1)
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.in_flight -= 1

    def stats(self) -> dict[str, int]:
        return {"cpu_in_flight": self.in_flight, "cpu_rejected": self.rejected}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class InlineCpu:
    """Runs the work on the caller's thread: for tests and tools that have no event loop to protect."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)
