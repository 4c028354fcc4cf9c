"""Circuit breakers: closed -> open -> half-open -> closed, on a clock the test moves, and their Redis sharing."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from faceplate.engines.remote import breaker as breaker_mod
from faceplate.engines.remote.breaker import Breaker, SharedBreakers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(breaker_mod, "time", c)  # only the breaker module's clock
    return c


def opened(b: Breaker, clock: Clock, failures: int) -> Breaker:
    for _ in range(failures - 1):
        assert b.failure(may_open=True) is False
    assert b.failure(may_open=True) is True
    assert b.state == "open"
    return b


# ---------------------------------------------------------------- closed -> open


def test_opens_after_n_consecutive_failures(clock: Clock) -> None:
    b = Breaker(failures=3, open_s=10)
    assert b.allows()
    opened(b, clock, 3)
    assert b.opens == 1 and not b.allows()
    assert b.failure(may_open=True) is False and b.opens == 1  # already open: no second open


def test_a_success_resets_the_count(clock: Clock) -> None:
    b = Breaker(failures=3, open_s=10)
    for _ in range(4):
        assert b.failure(may_open=True) is False
        assert b.failure(may_open=True) is False
        b.success()
        clock.now += 11  # the 30 s window never holds ten requests (two thirds failing would open it)
    assert b.state == "closed" and b.allows()


def test_half_the_requests_failing_in_the_window_opens(clock: Clock) -> None:
    b = Breaker(failures=5, open_s=10)
    results = []
    for _ in range(5):  # never two failures in a row
        b.success()
        clock.now += 1
        results.append(b.failure(may_open=True))
        clock.now += 1
    assert results == [False] * 4 + [True]  # the tenth request makes the window count


def test_old_requests_leave_the_window(clock: Clock) -> None:
    b = Breaker(failures=5, open_s=10)
    for _ in range(5):
        b.success()
        b.failure(may_open=True)
        clock.now += 8  # each pair 8 s apart: the window never holds ten
    assert b.state == "closed"


def test_may_open_false_never_opens(clock: Clock) -> None:
    b = Breaker(failures=2, open_s=10)
    for _ in range(50):
        assert b.failure(may_open=False) is False
    assert b.state == "closed" and b.allows() and b.opens == 0


# ---------------------------------------------------------------- open -> half-open -> closed


def test_half_opens_after_open_s(clock: Clock) -> None:
    b = opened(Breaker(failures=2, open_s=10), clock, 2)
    clock.now += 9.9
    assert not b.allows() and b.state == "open"
    clock.now += 0.1
    assert b.allows() and b.state == "half_open"


def test_half_open_with_an_explicit_now(clock: Clock) -> None:
    b = opened(Breaker(failures=1, open_s=5), clock, 1)
    assert not b.allows(now=clock.now + 4)
    assert b.allows(now=clock.now + 5) and b.state == "half_open"


def test_one_probe_at_a_time_and_two_successes_close(clock: Clock) -> None:
    b = opened(Breaker(failures=2, open_s=10), clock, 2)
    clock.now += 10
    assert b.allows()
    b.sent()
    assert not b.allows()  # the probe is out
    b.success()
    assert b.state == "half_open" and b.allows()  # one success is not enough
    b.sent()
    assert not b.allows()
    b.success()
    assert b.state == "closed" and b.allows()
    b.sent()
    assert b.allows()  # closed: any number in flight


def test_a_failed_probe_reopens(clock: Clock) -> None:
    b = opened(Breaker(failures=3, open_s=10), clock, 3)
    clock.now += 10
    assert b.allows()
    b.sent()
    b.success()
    b.sent()
    assert b.failure(may_open=True) is True  # one failure, below the threshold: half-open reopens at once
    assert b.state == "open" and b.opens == 2 and not b.allows()
    clock.now += 9
    assert not b.allows()  # the open time starts again
    clock.now += 1
    assert b.allows() and b.state == "half_open" and b.successes == 0


def test_a_failed_probe_of_the_last_member_frees_the_probe(clock: Clock) -> None:
    b = opened(Breaker(failures=1, open_s=10), clock, 1)
    clock.now += 10
    assert b.allows()
    b.sent()
    assert b.failure(may_open=False) is False
    assert b.state == "half_open" and b.allows()


def test_a_closed_circuit_starts_afresh(clock: Clock) -> None:
    """The failures that opened it are not held against it once it has closed again (open_s < the window)."""
    b = Breaker(failures=5, open_s=5)
    for _ in range(10):  # a burst of in-flight requests failing together
        b.failure(may_open=True)
    assert b.state == "open"
    clock.now += 5
    for _ in range(2):
        assert b.allows()
        b.sent()
        b.success()
    assert b.state == "closed"
    clock.now += 1
    assert b.failure(may_open=True) is False
    assert b.state == "closed"


def test_trip_opens_from_outside(clock: Clock) -> None:
    b = Breaker(failures=5, open_s=10)
    b.trip()
    assert b.state == "open" and b.opens == 1 and b.opened_at == clock.now and not b.allows()


# ---------------------------------------------------------------- shared through Redis


class StubRedis:
    """The three calls SharedBreakers makes, on a dict with expiry by the test's clock."""

    def __init__(self, clock: Clock, *, broken: bool = False) -> None:
        self.clock, self.broken = clock, broken
        self.data: dict[str, tuple[str, float]] = {}
        self.sets: list[tuple[str, str, int]] = []
        self.closed = 0

    async def set(self, key: str, value: str, px: int) -> None:
        if self.broken:
            raise ConnectionError("redis down")
        self.sets.append((key, value, px))
        self.data[key] = (value, self.clock.now + px / 1000)

    async def mget(self, keys: list[str]) -> list[Any]:
        if self.broken:
            raise ConnectionError("redis down")
        return [v[0] if (v := self.data.get(k)) and self.clock.now < v[1] else None for k in keys]

    async def aclose(self) -> None:
        self.closed += 1


A, B, C = "http://a:8000", "http://b:8000", "http://c:8000"


async def test_shared_opens_are_seen_until_they_expire(clock: Clock) -> None:
    redis = StubRedis(clock)
    shared = SharedBreakers(redis)
    await shared.publish(A, 30.0)
    await shared.publish(C, 5.0)
    assert redis.sets == [(SharedBreakers.PREFIX + A, "open", 30_000), (SharedBreakers.PREFIX + C, "open", 5000)]
    assert await shared.opened([A, B, C]) == {A, C}
    clock.now += 5
    assert await shared.opened([A, B, C]) == {A}
    assert await shared.opened([]) == set()


async def test_shared_close_is_once() -> None:
    redis = StubRedis(Clock())
    shared = SharedBreakers(redis)
    await shared.close()
    await shared.close()
    assert redis.closed == 1 and shared.redis is None
    assert await shared.opened([A]) == set()


async def test_no_redis_is_a_no_op() -> None:
    shared = SharedBreakers(None)
    await shared.publish(A, 30.0)
    assert await shared.opened([A]) == set()
    await shared.close()


async def test_redis_down_is_not_an_error(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    shared = SharedBreakers(StubRedis(clock, broken=True))
    with caplog.at_level(logging.WARNING, logger="faceplate.upstreams"):
        await shared.publish(A, 30.0)
    assert "ConnectionError" in caplog.text
    assert await shared.opened([A, B]) == set()
