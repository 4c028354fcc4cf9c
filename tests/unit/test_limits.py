"""Rate limiter logic, in-process and in Redis: the same behaviour, with an injected clock."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable

import pytest

from faceplate.access.auth import Principal
from faceplate.access.limits import Lease, MemoryLimiter, RedisLimiter, format_duration
from faceplate.errors import RateLimited, ServiceUnavailable
from tests.serverproc import free_port
from tests.services import running_redis


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


Factory = Callable[..., MemoryLimiter | RedisLimiter]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.services)])
async def make(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[Factory]:
    made: list[RedisLimiter] = []
    if request.param == "memory":
        yield lambda **kw: MemoryLimiter(clock=clock, **kw)
        return
    url = request.getfixturevalue("redis_clean")

    def factory(**kw: object) -> RedisLimiter:
        lim = RedisLimiter(url, clock=clock, **kw)  # type: ignore[arg-type]
        made.append(lim)
        return lim

    yield factory
    for lim in made:
        await lim.aclose()


def key(rpm: int | None = None, tpm: int | None = None, key_id: str = "key_1") -> Principal:
    return Principal(key_id=key_id, name="test", rpm=rpm, tpm=tpm)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-3, "0s"),
        (0.0004, "1ms"),
        (0.12, "120ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (17.25, "17.25s"),
        (59.9994, "1m0s"),  # rounded up: a reset is never announced early
        (59.998, "59.998s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (90.5, "1m30.5s"),
        (3600, "1h0m0s"),
        (3723, "1h2m3s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


async def test_headers_show_limit_remaining_and_reset(make: Factory) -> None:
    lease = await make().admit(key(rpm=3, tpm=100), 10)
    assert lease.headers == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "20s",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "90",
        "x-ratelimit-reset-tokens": "6s",
    }


async def test_requests_run_out_then_refill(make: Factory, clock: Clock) -> None:
    lim = make()
    k = key(rpm=2)
    await lim.admit(k, 0)
    await lim.admit(k, 0)
    with pytest.raises(RateLimited) as info:
        await lim.admit(k, 0)
    err = info.value
    assert (err.status, err.type, err.code) == (429, "requests", "rate_limit_exceeded")
    assert err.headers["retry-after"] == "30"  # 30 s to refill one request
    assert err.headers["retry-after-ms"] == "30000"
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert "Limit 2, Used 2, Requested 1" in err.message
    clock.advance(29.9)
    with pytest.raises(RateLimited):
        await lim.admit(k, 0)
    clock.advance(0.2)
    lease = await lim.admit(k, 0)
    assert lease.headers["x-ratelimit-remaining-requests"] == "0"
    clock.advance(60)
    assert (await lim.admit(k, 0)).headers["x-ratelimit-remaining-requests"] == "1"  # full again, never above the limit


async def test_tokens_run_out_and_admission_is_all_or_nothing(make: Factory, clock: Clock) -> None:
    lim = make()
    k = key(rpm=10, tpm=100)
    await lim.admit(k, 60)
    with pytest.raises(RateLimited) as info:
        await lim.admit(k, 50)
    assert info.value.type == "tokens"
    assert 6.0 <= int(info.value.headers["retry-after-ms"]) / 1000 <= 6.01  # 10 tokens short at 100/60 s
    lease = await lim.admit(k, 40)
    assert lease.headers["x-ratelimit-remaining-requests"] == "8"  # the refused request took nothing
    assert lease.headers["x-ratelimit-remaining-tokens"] == "0"


async def test_settle_gives_back_unused_tokens_and_charges_overuse(make: Factory) -> None:
    lim = make()
    k = key(tpm=100)
    lease = await lim.admit(k, 80)
    await lease.settle(30)
    await lease.settle(0)  # only the first settle counts
    lease = await lim.admit(k, 70)
    assert lease.headers["x-ratelimit-remaining-tokens"] == "0"
    await lease.settle(70)
    k2 = key(tpm=100, key_id="key_2")
    lease = await lim.admit(k2, 10)
    await lease.settle(40)
    assert (await lim.admit(k2, 10)).headers["x-ratelimit-remaining-tokens"] == "50"


async def test_request_larger_than_the_limit_is_never_retried(make: Factory) -> None:
    with pytest.raises(RateLimited) as info:
        await make().admit(key(tpm=100), 101)
    assert info.value.type == "tokens" and info.value.headers["x-should-retry"] == "false"
    assert "Request too large" in info.value.message


async def test_keys_without_limits_are_not_limited(make: Factory) -> None:
    lim = make()
    for _ in range(100):
        lease = await lim.admit(Principal(key_id=None, name="static"), 10**9)
        assert lease.headers == {}
        await lease.settle(5)


async def test_limits_are_per_key(make: Factory) -> None:
    lim = make()
    await lim.admit(key(rpm=1, key_id="a"), 0)
    await lim.admit(key(rpm=1, key_id="b"), 0)
    with pytest.raises(RateLimited):
        await lim.admit(key(rpm=1, key_id="a"), 0)


async def test_concurrent_admissions_never_exceed_the_limit(make: Factory) -> None:
    lim = make()
    k = key(rpm=7, tpm=10_000)
    results = await asyncio.gather(*(lim.admit(k, 10) for _ in range(50)), return_exceptions=True)
    assert sum(isinstance(r, Lease) for r in results) == 7
    assert all(isinstance(r, Lease | RateLimited) for r in results)


async def test_two_redis_limiters_enforce_one_limit(redis_clean: str, clock: Clock) -> None:
    a, b = RedisLimiter(redis_clean, clock=clock), RedisLimiter(redis_clean, clock=clock)
    try:
        k = key(rpm=10, tpm=1000)
        results = await asyncio.gather(*(lim.admit(k, 50) for lim in [a, b] * 15), return_exceptions=True)
        assert sum(isinstance(r, Lease) for r in results) == 10
        lease = await b.admit(key(rpm=10, tpm=1000, key_id="other"), 1)
        assert lease.headers["x-ratelimit-remaining-requests"] == "9"
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_limiter_uses_the_redis_clock(redis_clean: str) -> None:
    lim = RedisLimiter(redis_clean, window_s=1.0)
    try:
        k = key(rpm=1)
        await lim.admit(k, 0)
        with pytest.raises(RateLimited) as info:
            await lim.admit(k, 0)
        wait = int(info.value.headers["retry-after-ms"]) / 1000
        assert 0.5 < wait <= 1.01
        await asyncio.sleep(wait)
        await lim.admit(k, 0)
    finally:
        await lim.aclose()


async def test_unreachable_redis_fails_closed_with_503() -> None:
    lim = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.3)
    try:
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(ServiceUnavailable) as info:
                await lim.admit(key(rpm=100), 1)
            assert info.value.status == 503 and info.value.code == "rate_limiter_unavailable"
            assert info.value.headers["retry-after"] == "1"
        assert time.monotonic() - started < 0.05  # the second one failed fast, without reconnecting
        assert (await lim.admit(Principal(key_id=None, name="static"), 1)).headers == {}  # unlimited keys still pass
    finally:
        await lim.aclose()


@pytest.mark.services
async def test_limiter_recovers_when_redis_comes_back() -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not found: apt-get install -y redis-server (`make test` does, as root)")
    port = free_port()
    lim = RedisLimiter(f"redis://127.0.0.1:{port}/0", timeout_s=0.3, retry_after_s=0.2)
    try:
        with pytest.raises(ServiceUnavailable):
            await lim.admit(key(rpm=100), 1)
        with running_redis(binary, port):
            await asyncio.sleep(0.25)
            lease = await lim.admit(key(rpm=100), 1)
            assert lease.headers["x-ratelimit-remaining-requests"] == "99"
    finally:
        await lim.aclose()
