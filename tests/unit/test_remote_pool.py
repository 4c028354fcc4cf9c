"""A pool's placement over members with no network: affinity, breakers, health, Retry-After, slots and the queue."""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import SimpleNamespace
from typing import Any

import pytest

from faceplate.config_upstreams import RoutingSettings, UpstreamSpec
from faceplate.engines.remote import pool as pool_mod
from faceplate.engines.remote.breaker import Breaker, SharedBreakers
from faceplate.engines.remote.kinds import KINDS
from faceplate.engines.remote.pool import Pool, Upstream
from faceplate.engines.remote.requests import Caps
from faceplate.engines.remote.routing import rendezvous
from faceplate.errors import Overloaded, ServiceUnavailable

VLLM_METRICS = b"""# HELP vllm:num_requests_running Number of requests
vllm:num_requests_running{model_name="m"} 3.0
vllm:num_requests_waiting{model_name="m"} 4.0
"""


class DummyHTTP:
    """What the pool asks of a member's HTTP client: GETs answered from a table, and close."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, bytes] | Exception] = {}
        self.closed = 0

    async def get(self, path: str, timeout_s: float) -> tuple[int, bytes]:
        answer = self.answers.get(path, ConnectionError("refused"))
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed += 1


class Shared(SharedBreakers):
    def __init__(self, opened: set[str] | None = None) -> None:
        super().__init__(None)
        self.open_urls = opened or set()
        self.published: list[tuple[str, float]] = []

    async def publish(self, url: str, open_s: float) -> None:
        self.published.append((url, open_s))

    async def opened(self, urls: list[str]) -> set[str]:
        return self.open_urls & set(urls)


def member(url: str, *, kind: str = "vllm", max_inflight: int = 4, weight: float = 1.0, caps: Caps | None = None) -> Upstream:
    spec = UpstreamSpec(id="m", url=url, max_inflight=max_inflight, weight=weight)
    return Upstream(spec, KINDS[kind], DummyHTTP(), Breaker(failures=2, open_s=30), caps or Caps(), "m")  # type: ignore[arg-type]


def make_pool(*urls: str, shared: Shared | None = None, **routing: Any) -> Pool:
    settings = RoutingSettings(**{"queue_timeout_s": 0.2, **routing})
    return Pool("m", [member(u) for u in urls], settings, shared or Shared())


def affine(pool: Pool, key: str, members: list[Upstream] | None = None) -> Upstream:
    return rendezvous(key, members or pool.members, lambda m: m.url, lambda m: m.spec.weight)


URLS = ("http://a:1", "http://b:1", "http://c:1")
KEYS = [f"c:{i}" for i in range(30)]


# ---------------------------------------------------------------- choosing a member


async def test_acquire_prefers_the_affine_member_and_holds_a_slot() -> None:
    pool = make_pool(*URLS)
    for key in KEYS:
        m = await pool.acquire(key, set())
        assert m is affine(pool, key)
        assert m.inflight == 1 and m.counters["requests"] >= 1
        await pool.release(m)
        assert m.inflight == 0
    assert pool.placements == {"affinity": len(KEYS), "balanced": 0, "queued": 0}
    assert len({affine(pool, k).url for k in KEYS}) > 1


@pytest.mark.parametrize("why", ["open", "unhealthy", "cooling"])
async def test_unusable_members_are_passed_over(why: str) -> None:
    pool = make_pool(*URLS)
    key = KEYS[0]
    bad = affine(pool, key)
    if why == "open":
        bad.breaker.trip()
    elif why == "unhealthy":
        bad.healthy = False
    else:
        pool.failed(bad, hard=False, retry_after=5.0)  # a 429 with Retry-After: cool, do not blame
        assert bad.breaker.state == "closed" and bad.counters["failures"] == 1
    m = await pool.acquire(key, set())
    assert m is not bad
    assert m is affine(pool, key, [x for x in pool.members if x is not bad])  # the next in rendezvous order


async def test_cooling_ends_after_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = make_pool(*URLS)
    key = KEYS[0]
    bad = affine(pool, key)
    pool.failed(bad, hard=False, retry_after=5.0)
    later = time.monotonic() + 5.1
    monkeypatch.setattr(pool_mod, "time", SimpleNamespace(monotonic=lambda: later))  # the pool's clock only
    assert (await pool.acquire(key, set())) is bad


async def test_retry_after_is_capped_at_a_minute() -> None:
    pool = make_pool(*URLS)
    pool.failed(pool.members[0], hard=False, retry_after=3600.0)
    assert pool.members[0].cool_until <= time.monotonic() + 60.0


async def test_excluded_members_are_not_tried_again() -> None:
    pool = make_pool(*URLS)
    tried: set[Upstream] = set()
    for _ in URLS:
        m = await pool.acquire(KEYS[0], tried)
        assert m not in tried
        tried.add(m)
    with pytest.raises(ServiceUnavailable) as info:
        await pool.acquire(KEYS[0], tried)
    assert info.value.status == 503 and info.value.code == "upstream_unavailable"


async def test_nothing_usable_degrades_rather_than_refuses() -> None:
    pool = make_pool(*URLS)
    for m in pool.members:
        m.breaker.trip()
    pool.members[2].healthy = False
    m = await pool.acquire(KEYS[0], set())
    assert m is not pool.members[2]  # still the healthy ones first
    for m in pool.members:
        m.healthy = False
    assert (await pool.acquire(KEYS[0], set())) in pool.members


async def test_fresh_reported_load_moves_a_request_and_stale_load_does_not() -> None:
    pool = make_pool(*URLS)
    key = KEYS[0]
    busy = affine(pool, key)
    busy.reported, busy.reported_at = 20, time.monotonic()
    m = await pool.acquire(key, set())
    assert m is not busy and pool.placements["balanced"] == 1
    await pool.release(m)
    busy.reported_at = time.monotonic() - pool.routing.load_stale_s - 1
    assert (await pool.acquire(key, set())) is busy


async def test_a_router_pool_takes_the_least_busy() -> None:
    pool = Pool("m", [member(u, kind="router") for u in URLS], RoutingSettings(), Shared())
    assert not pool.placement
    got = [await pool.acquire(KEYS[0], set()) for _ in URLS]
    assert {m.url for m in got} == set(URLS)  # one each: no affinity
    assert pool.placements["affinity"] == 0


def test_pool_caps_are_what_every_member_honours() -> None:
    a = member(URLS[0], caps=Caps(max_n=8, logprobs=True))
    b = member(URLS[1], caps=Caps(max_n=1, logprobs=False))
    pool = Pool("m", [a, b], RoutingSettings(), Shared())
    assert (pool.caps.max_n, pool.caps.logprobs, pool.caps.tools) == (1, False, True)


# ---------------------------------------------------------------- failures and the breaker


async def test_the_only_member_is_never_opened() -> None:
    pool = make_pool(URLS[0])
    (only,) = pool.members
    for _ in range(20):
        pool.failed(only, hard=True, retry_after=None)
    assert only.breaker.state == "closed" and only.counters == {"requests": 0, "failures": 20, "retries": 0, "opens": 0}
    assert (await pool.acquire(KEYS[0], set())) is only


async def test_a_failing_member_opens_and_is_published_but_not_the_last() -> None:
    shared = Shared()
    pool = make_pool(URLS[0], URLS[1], shared=shared)
    a, b = pool.members
    pool.failed(a, hard=True, retry_after=None)
    pool.failed(a, hard=True, retry_after=None)
    assert a.breaker.state == "open" and a.counters["opens"] == 1
    await asyncio.sleep(0)  # the publish task
    assert shared.published == [(a.url, 30.0)]
    for _ in range(5):
        pool.failed(b, hard=True, retry_after=None)
    assert b.breaker.state == "closed"  # a is open: b is the last usable member


async def test_soft_failures_do_not_count_against_the_breaker() -> None:
    pool = make_pool(*URLS)
    m = pool.members[0]
    for _ in range(5):
        pool.failed(m, hard=False, retry_after=None)
    assert m.breaker.state == "closed" and m.breaker.consecutive == 0 and m.cool_until == 0.0


async def test_circuits_other_replicas_opened_are_tripped_here() -> None:
    pool = make_pool(URLS[0], URLS[1], shared=Shared({URLS[0], URLS[1]}))
    await pool._read_shared()
    states = sorted(m.breaker.state for m in pool.members)
    assert states == ["closed", "open"]  # the second one is then the last usable: kept


# ---------------------------------------------------------------- slots and the queue


async def test_full_members_queue_and_a_release_lets_one_through() -> None:
    pool = Pool("m", [member(u, max_inflight=1) for u in URLS[:2]], RoutingSettings(queue_timeout_s=2), Shared())
    held = [await pool.acquire(KEYS[0], set()), await pool.acquire(KEYS[0], set())]
    assert {m.inflight for m in held} == {1}
    waiter = asyncio.create_task(pool.acquire(KEYS[0], set()))
    await asyncio.sleep(0.01)
    assert not waiter.done() and pool.waiting == 1 and pool.placements["queued"] == 1
    await pool.release(held[1])
    got = await asyncio.wait_for(waiter, 1)
    assert got is held[1] and got.inflight == 1 and pool.waiting == 0


async def test_every_waiter_gets_a_freed_slot() -> None:
    pool = Pool("m", [member(URLS[0], max_inflight=2)], RoutingSettings(queue_timeout_s=2), Shared())
    (m,) = pool.members
    await pool.acquire("k", set())
    await pool.acquire("k", set())
    waiters = [asyncio.create_task(pool.acquire("k", set())) for _ in range(2)]
    await asyncio.sleep(0.01)
    await pool.release(m)
    await pool.release(m)
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [m, m]


async def test_a_freed_slot_reaches_a_waiter_that_can_use_it() -> None:
    """A waiter retrying elsewhere (it excluded the freed member) must not swallow the wake-up another needs."""
    a, b = member(URLS[0], max_inflight=1), member(URLS[1], max_inflight=1)
    pool = Pool("m", [a, b], RoutingSettings(queue_timeout_s=0.5), Shared())
    await pool.acquire("k", {b})
    await pool.acquire("k", {a})
    retrying = asyncio.create_task(pool.acquire("k", {a}))  # queued first, wants b only
    await asyncio.sleep(0.01)
    fresh = asyncio.create_task(pool.acquire("k", set()))
    await asyncio.sleep(0.01)
    await pool.release(a)
    assert await asyncio.wait_for(fresh, 0.3) is a
    retrying.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await retrying


async def test_a_queue_timeout_is_a_503_with_retry_after() -> None:
    pool = Pool("m", [member(URLS[0], max_inflight=1)], RoutingSettings(queue_timeout_s=0.05), Shared())
    await pool.acquire("k", set())
    with pytest.raises(Overloaded) as info:
        await pool.acquire("k", set())
    assert info.value.status == 503 and info.value.headers["retry-after"] == "1"
    assert info.value.body()["error"]["code"] == "server_overloaded"
    assert pool.waiting == 0


# ---------------------------------------------------------------- health, load, stats


async def test_health_check_and_reprobe() -> None:
    probed: list[Upstream] = []

    async def reprobe(m: Upstream) -> None:
        m.probed = True
        probed.append(m)

    pool = Pool("m", [member(URLS[0])], RoutingSettings(), Shared(), reprobe=reprobe)
    (m,) = pool.members
    http: DummyHTTP = m.http  # type: ignore[assignment]
    await pool._check(m)
    assert m.healthy is False and probed == []
    http.answers["/health"] = (200, b"")
    await pool._check(m)
    await pool._check(m)
    assert m.healthy is True and probed == [m]  # probed once, when it first answered
    http.answers["/health"] = (503, b"loading")
    await pool._check(m)
    assert m.healthy is False


async def test_load_poll_reads_the_kinds_gauges() -> None:
    pool = make_pool(URLS[0])
    (m,) = pool.members
    http: DummyHTTP = m.http  # type: ignore[assignment]
    await pool._poll_load(m)
    assert m.reported is None
    http.answers["/metrics"] = (200, VLLM_METRICS)
    await pool._poll_load(m)
    assert m.reported == 7 and m.load(5.0) == 7
    http.answers["/metrics"] = (200, b"garbage")
    await pool._poll_load(m)
    assert m.reported == 7  # unreadable: the last value stands until it goes stale


async def test_stats_shape_and_close() -> None:
    pool = make_pool(*URLS[:2])
    m = await pool.acquire(KEYS[0], set())
    stats = pool.stats()
    assert stats["running_sequences"] == 1 and stats["queued_requests"] == 0
    assert stats["placements"] == {"affinity": 1, "balanced": 0, "queued": 0}
    assert [u["url"] for u in stats["upstreams"]] == list(URLS[:2])
    mine = next(u for u in stats["upstreams"] if u["url"] == m.url)
    assert mine == {
        "url": m.url,
        "kind": "vllm",
        "model": "m",
        "healthy": True,
        "circuit": "closed",
        "inflight": 1,
        "load": 1,
        "requests": 1,
        "failures": 0,
        "retries": 0,
        "opens": 0,
    }
    await pool.close()
    assert [x.http.closed for x in pool.members] == [1, 1]  # type: ignore[attr-defined]


def test_retry_budget_caps_retries_at_a_share_of_first_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    from faceplate.engines.remote import pool as pool_module

    clock = [1000.0]
    monkeypatch.setattr(pool_module.time, "monotonic", lambda: clock[0])
    budget = pool_module.RetryBudget(0.2)
    assert all(budget.spend(retry=True) for _ in range(3))  # the floor: a quiet pool still fails over
    assert not budget.spend(retry=True)
    for _ in range(30):
        assert budget.spend(retry=False)
    assert all(budget.spend(retry=True) for _ in range(3))  # 6 retries = 20% of 30 first attempts
    assert not budget.spend(retry=True)
    clock[0] += pool_module.RETRY_WINDOW_S + 1  # the window slides: the old attempts no longer count
    assert budget.spend(retry=True)


async def test_batch_lines_hold_at_most_half_a_members_slots() -> None:
    pool = make_pool("http://a:1")
    (a,) = pool.members  # max_inflight 4: batch lines may hold 2
    held = [await pool.acquire("k", set(), "batch") for _ in range(2)]
    assert a.batch_inflight == 2
    with pytest.raises(Overloaded):  # a third batch line waits (here: until the queue times out)
        pool.routing = pool.routing.model_copy(update={"queue_timeout_s": 0.05})
        await pool.acquire("k", set(), "batch")
    clients = [await pool.acquire("k", set()) for _ in range(2)]  # clients still get the other two
    assert a.inflight == 4
    for m in held:
        await pool.release(m, "batch")
    for m in clients:
        await pool.release(m)
    assert (a.inflight, a.batch_inflight) == (0, 0)
