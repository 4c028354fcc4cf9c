"""The server's drain: what a SIGTERM starts, shared by the HTTP layer and the health checks.

``begin`` turns readiness off and makes every new request a 503 (``ShuttingDown``, with
``Retry-After``); requests already in flight (``inflight``, counted by the HTTP layer) and
background work (``busy``) get ``grace_s`` to finish; ``cut`` is set at the end of the grace, and
each request still running then ends at once with an error (a stream: an error event, then
``[DONE]``). ``run`` does all of it and returns when the server may stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("faceplate.drain")

POLL_S = 0.05
FLUSH_S = 5.0  # after the cut: how long requests get to write their last event


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self.inflight = 0  # HTTP requests being answered (health checks aside)
        self.cut = asyncio.Event()  # set when the grace is over: everything still running ends now

    def begin(self) -> None:
        if not self.draining:
            self.draining = True
            log.info("draining: %d request(s) in flight; new requests get 503", self.inflight)

    async def run(
        self,
        grace_s: float,
        busy: Callable[[], bool] = lambda: False,
        on_cut: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Begin, wait for in-flight requests and ``busy`` work up to ``grace_s``, then cut what is
        left (``on_cut`` ends the background work: Responses runs end failed and stored)."""
        self.begin()
        started = time.monotonic()
        if not await self._quiet(grace_s, busy):
            log.warning("drain grace of %.0fs over: ending %d request(s) still running", grace_s, self.inflight)
            self.cut.set()
            if on_cut is not None:
                await on_cut()
            await self._quiet(FLUSH_S, lambda: False)
        log.info("drained in %.1fs", time.monotonic() - started)

    async def _quiet(self, within_s: float, busy: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + within_s
        while self.inflight > 0 or busy():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True
