"""A pool: the upstreams serving one model id, their health, load and circuits, and placement.

``acquire`` picks a member for a request (affinity, load guard, breaker, health, Retry-After
cool-down) and holds one of its ``max_inflight`` slots; when every member is full the request
waits in a bounded queue, and a 503 with Retry-After ends the wait. A background task polls
each member's health (every ``health_interval_s``, jittered) and reported load (every second),
and reads the circuits other replicas opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from faceplate.config_upstreams import RoutingSettings, UpstreamSpec
from faceplate.engines.base import Priority
from faceplate.engines.remote.breaker import Breaker, SharedBreakers
from faceplate.engines.remote.client import UpstreamHTTP
from faceplate.engines.remote.kinds import Kind
from faceplate.engines.remote.requests import Caps
from faceplate.engines.remote.routing import choose
from faceplate.errors import Overloaded, ServiceUnavailable

log = logging.getLogger("faceplate.upstreams")
LOAD_POLL_S = 1.0
RETRY_WINDOW_S = 10.0
RETRY_FLOOR = 3  # retries always allowed per window, so a quiet pool still fails over


class RetryBudget:
    """Retries at most a share of first attempts over a sliding window: when a whole pool is failing,
    retrying every request would only multiply the load on it (Finagle's and Envoy's lesson)."""

    def __init__(self, share: float) -> None:
        self.share = share
        self._sent: deque[tuple[float, bool]] = deque()  # (when, was a retry)

    def spend(self, retry: bool) -> bool:
        now = time.monotonic()
        while self._sent and now - self._sent[0][0] > RETRY_WINDOW_S:
            self._sent.popleft()
        if retry:
            retries = sum(1 for _, r in self._sent if r)
            if retries >= max(RETRY_FLOOR, self.share * (len(self._sent) - retries)):
                return False
        self._sent.append((now, retry))
        return True


@dataclass(eq=False)
class Upstream:
    spec: UpstreamSpec
    kind: Kind
    http: UpstreamHTTP
    breaker: Breaker
    caps: Caps
    model: str  # the upstream's own name for the model
    healthy: bool = True
    probed: bool = False
    probe_failures: int = 0
    inflight: int = 0
    batch_inflight: int = 0  # of which Batch API lines (they may hold half its slots, so clients always get in)
    reported: int | None = None
    reported_at: float = 0.0
    cool_until: float = 0.0  # after a 429/503 with Retry-After
    counters: dict[str, int] = field(default_factory=lambda: {"requests": 0, "failures": 0, "retries": 0, "opens": 0})

    @property
    def url(self) -> str:
        return self.spec.url

    def load(self, stale_s: float) -> int:
        """Requests on it: ours in flight, or what it last reported if that is fresh and higher (other replicas')."""
        fresh = self.reported is not None and time.monotonic() - self.reported_at <= stale_s
        return max(self.inflight, self.reported or 0) if fresh else self.inflight

    def usable(self, now: float) -> bool:
        return self.healthy and now >= self.cool_until and self.breaker.allows(now)

    def stats(self, stale_s: float) -> dict[str, Any]:
        return {
            "url": self.url,
            "kind": self.kind.name,
            "model": self.model,
            "healthy": self.healthy,
            "circuit": self.breaker.state,
            "inflight": self.inflight,
            "load": self.load(stale_s),
            **self.counters,
        }


class Pool:
    def __init__(
        self,
        model_id: str,
        members: list[Upstream],
        routing: RoutingSettings,
        shared: SharedBreakers,
        reprobe: Callable[[Upstream], Awaitable[None]] | None = None,
    ) -> None:
        self.model_id = model_id
        self.reprobe = reprobe  # learns the capabilities of a member that was down at start-up
        self.waiting = 0
        self.budget = RetryBudget(routing.retry_budget)
        self._turn = 0
        self.members = members
        self.routing = routing
        self.shared = shared
        self._freed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.placements = {"affinity": 0, "balanced": 0, "queued": 0}

    @property
    def caps(self) -> Caps:
        caps = self.members[0].caps
        for m in self.members[1:]:
            caps = caps.meet(m.caps)
        return caps

    @property
    def placement(self) -> bool:
        return all(m.kind.placement for m in self.members)

    # ------------------------------------------------------------ placement

    def _candidates(self, exclude: set[Upstream]) -> list[Upstream]:
        now = time.monotonic()
        live = [m for m in self.members if m not in exclude and m.usable(now)]
        if live:
            return live
        # Nothing passes the checks: degrade to any member not yet tried rather than refuse outright.
        return [m for m in self.members if m not in exclude and m.healthy] or [m for m in self.members if m not in exclude]

    def _pick(self, key: str, exclude: set[Upstream], batch: bool) -> Upstream | None:
        """A member with a free slot, or None if the candidates are all full; raises if there are no candidates."""
        candidates = self._candidates(exclude)
        if not candidates:
            raise ServiceUnavailable(f"No upstream of `{self.model_id}` is available.", code="upstream_unavailable")
        free = [
            m
            for m in candidates
            if m.inflight < m.spec.max_inflight and not (batch and m.batch_inflight >= max(1, m.spec.max_inflight // 2))
        ]
        if not free:
            return None
        stale = self.routing.load_stale_s
        policy = self.routing.policy if self.placement else "least_loaded"  # a fleet router places for itself
        if policy == "round_robin":
            self._turn += 1
            return free[self._turn % len(free)]
        if policy == "least_loaded":
            return min(free, key=lambda m: m.load(stale))
        member, why = choose(
            key,
            free,
            name=lambda m: m.url,
            weight=lambda m: m.spec.weight,
            load=lambda m: m.load(stale),
            abs_gap=self.routing.affinity_abs,
            rel_gap=self.routing.affinity_rel,
        )
        self.placements[why] += 1
        return member

    async def acquire(self, key: str, exclude: set[Upstream], priority: Priority = "interactive") -> Upstream:
        """A member's slot for this request (release it with ``release``); waits while all are full.
        A non-empty ``exclude`` makes this a retry, refused once the pool's retry budget is spent."""
        if not self.budget.spend(retry=bool(exclude)):
            raise ServiceUnavailable(f"Too many retries on `{self.model_id}` now; not retrying.", code="upstream_unavailable")
        batch = priority == "batch"
        member = self._pick(key, exclude, batch)
        if member is None:
            self.placements["queued"] += 1
            self.waiting += 1
            try:
                async with asyncio.timeout(self.routing.queue_timeout_s):
                    async with self._freed:
                        while (member := self._pick(key, exclude, batch)) is None:
                            await self._freed.wait()
            except TimeoutError:
                raise Overloaded(f"Every upstream of `{self.model_id}` is busy; retry shortly.") from None
            finally:
                self.waiting -= 1
        member.inflight += 1
        member.batch_inflight += batch
        member.counters["requests"] += 1
        member.breaker.sent()
        return member

    async def release(self, member: Upstream, priority: Priority = "interactive") -> None:
        member.inflight -= 1
        member.batch_inflight -= priority == "batch"
        async with self._freed:
            # Every waiter looks: the first may not take this member (it excluded it on a retry, or its
            # wait is timing out), and a single notify would be lost while another waiter could use it.
            self._freed.notify_all()

    def failed(self, member: Upstream, *, hard: bool, retry_after: float | None) -> None:
        member.counters["failures"] += 1
        if retry_after:
            member.cool_until = time.monotonic() + min(retry_after, 60.0)
        if not hard:
            return
        now = time.monotonic()
        others = [m for m in self.members if m is not member and m.usable(now)]
        if member.breaker.failure(may_open=bool(others)):  # never open the last healthy member
            member.counters["opens"] += 1
            log.warning("circuit opened for %s (%s)", member.url, self.model_id)
            task = asyncio.ensure_future(self.shared.publish(member.url, member.breaker.open_s))
            task.add_done_callback(lambda t: t.exception())

    # ------------------------------------------------------------ upkeep

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._upkeep())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        for m in self.members:
            await m.http.close()
        await self.shared.close()

    async def _upkeep(self) -> None:
        next_health = {id(m): 0.0 for m in self.members}
        while True:
            now = time.monotonic()
            jobs = [self._poll_load(m) for m in self.members if m.kind.load_path]
            for m in self.members:
                if now >= next_health[id(m)]:
                    interval = self.routing.health_interval_s
                    next_health[id(m)] = now + interval * random.uniform(0.8, 1.2)
                    jobs.append(self._check(m))
            jobs.append(self._read_shared())
            await asyncio.gather(*jobs, return_exceptions=True)
            await asyncio.sleep(min(LOAD_POLL_S, self.routing.health_interval_s))

    async def _check(self, m: Upstream) -> None:
        try:
            status, _ = await m.http.get(m.kind.health_path, timeout_s=2.0)
            ok = status == 200
        except Exception:  # noqa: BLE001 - any failure is "not healthy"
            ok = False
        if ok != m.healthy:
            log.warning("upstream %s of %s is %s", m.url, self.model_id, "healthy again" if ok else "unhealthy")
        m.healthy = ok
        if ok and not m.probed and self.reprobe is not None:
            await self.reprobe(m)

    async def _poll_load(self, m: Upstream) -> None:
        try:
            status, body = await m.http.get(m.kind.load_path or "", timeout_s=1.0)
        except Exception:  # noqa: BLE001 - unknown load: placement falls back to our own counts
            return
        value = m.kind.parse_load(body, m.model) if status == 200 else None
        if value is not None:
            m.reported, m.reported_at = value, time.monotonic()

    async def _read_shared(self) -> None:
        opened = await self.shared.opened([m.url for m in self.members])
        now = time.monotonic()
        for m in self.members:
            others = [o for o in self.members if o is not m and o.usable(now)]
            if m.url in opened and m.breaker.state == "closed" and others:
                m.breaker.trip(now)

    def stats(self) -> dict[str, Any]:
        stale = self.routing.load_stale_s
        running = sum(m.inflight for m in self.members)
        return {
            "running_sequences": running,
            "queued_requests": self.waiting,
            "placements": dict(self.placements),
            "upstreams": [m.stats(stale) for m in self.members],
        }
