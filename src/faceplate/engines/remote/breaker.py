"""A circuit breaker per upstream: stop sending to one that keeps failing, then try it again.

Closed -> open after ``failures`` consecutive failures, or at least half of ten or more
requests in the last 30 s. Open -> half-open after ``open_s``: one probe request at a time;
two successes close it, a failure opens it again. The pool decides whether an open is allowed
(it never opens the last healthy member); ``SharedBreakers`` publishes opens in Redis so every
replica stops sending to a dead upstream, not only the one that saw it die.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Literal

log = logging.getLogger("faceplate.upstreams")

State = Literal["closed", "open", "half_open"]
WINDOW_S = 30.0
WINDOW_MIN = 10


class Breaker:
    def __init__(self, failures: int = 5, open_s: float = 30.0) -> None:
        self.threshold = failures
        self.open_s = open_s
        self.state: State = "closed"
        self.consecutive = 0
        self.opened_at = 0.0
        self.probing = False
        self.successes = 0
        self.opens = 0
        self._window: deque[tuple[float, bool]] = deque()

    def allows(self, now: float | None = None) -> bool:
        """Whether a request may go now (half-open: only while no probe is out)."""
        now = time.monotonic() if now is None else now
        if self.state == "open" and now - self.opened_at >= self.open_s:
            self.state, self.successes = "half_open", 0
        if self.state == "half_open":
            return not self.probing
        return self.state == "closed"

    def sent(self) -> None:
        if self.state == "half_open":
            self.probing = True

    def success(self) -> None:
        self._note(True)
        self.consecutive = 0
        if self.state == "half_open":
            self.probing = False
            self.successes += 1
            if self.successes >= 2:
                self.state = "closed"

    def failure(self, *, may_open: bool) -> bool:
        """Record a failure; True when this opened the circuit."""
        now = time.monotonic()
        self._note(False, now)
        self.consecutive += 1
        self.probing = False
        if self.state == "open" or not may_open:
            return False
        bad = sum(1 for _, ok in self._window if not ok)
        if (
            self.state == "half_open"
            or self.consecutive >= self.threshold
            or (len(self._window) >= WINDOW_MIN and bad * 2 >= len(self._window))
        ):
            self.trip(now)
            return True
        return False

    def trip(self, now: float | None = None) -> None:
        self.state, self.opened_at, self.successes = "open", time.monotonic() if now is None else now, 0
        self.opens += 1

    def _note(self, ok: bool, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._window.append((now, ok))
        while self._window and now - self._window[0][0] > WINDOW_S:
            self._window.popleft()


class SharedBreakers:
    """Open circuits as Redis keys that expire when the circuit would half-open (no Redis: a no-op)."""

    PREFIX = "faceplate:breaker:"

    def __init__(self, redis: Any | None) -> None:
        self.redis = redis

    async def close(self) -> None:
        redis, self.redis = self.redis, None
        if redis is not None:
            await redis.aclose()

    async def publish(self, url: str, open_s: float) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.set(self.PREFIX + url, "open", px=int(open_s * 1000))
        except Exception as exc:  # noqa: BLE001 - sharing is best effort; the local breaker still holds
            log.warning("could not share an open circuit in Redis: %s", type(exc).__name__)

    async def opened(self, urls: list[str]) -> set[str]:
        """Which of ``urls`` some replica has opened (and whose time is not up)."""
        if self.redis is None or not urls:
            return set()
        try:
            values = await self.redis.mget([self.PREFIX + u for u in urls])
        except Exception:  # noqa: BLE001 - Redis down: each replica keeps its own view
            return set()
        return {u for u, v in zip(urls, values, strict=True) if v is not None}
