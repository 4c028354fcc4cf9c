"""Cancellation through the gateway in the four windows (SCALEOUT.md §5, test 4): a client that
gives up while its request is queued in the gateway, while the upstream has not answered its
headers, mid-stream, or during a non-streamed request. In each case the upstream (a mockai process)
sees the abort within a second, or never sees the request at all, and the pool's in-flight and
queue counts return to 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.e2e.gateway_faults_helpers import (
    MODEL,
    MSG,
    configure,
    gateways,
    generations,
    idle,
    member,
    mocks,
    pool,
    reset,
    stats,
    text_of,
    users_for,
    wait_for_async,
)
from tests.serverproc import ServerProcess
from tests.upstreams.launch import MockProcess

__all__ = ["gateways", "mocks"]  # fixtures

ABORT_SEEN_S = 1.0  # the upstream hears of the client leaving within this


@pytest.fixture
async def setup(mocks: Callable[..., MockProcess], gateways: Callable[..., ServerProcess]) -> Any:
    """One mock behind a one-member pool with one slot and patient timeouts (nothing here times out by itself)."""
    a = mocks()
    slow = {"max_inflight": 1, "first_byte_timeout_s": 10, "idle_timeout_s": 10}
    gw = await asyncio.to_thread(gateways, [member(a, **slow)], queue_timeout_s=20)
    await asyncio.to_thread(reset, a)
    client = openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0, timeout=20)
    yield a, gw, client
    await client.close()


async def tokens(stream: openai.AsyncStream[Any], count: int) -> None:
    """Read ``stream`` until ``count`` text chunks have come."""
    seen = 0
    async for chunk in stream:
        seen += sum(1 for c in chunk.choices if c.delta.content)
        if seen >= count:
            return


async def aborted_soon(mock: MockProcess, left_at: float) -> float:
    """Seconds from the client leaving to the mock counting the abort."""
    await wait_for_async(lambda: stats(mock)["aborted"], lambda n: n >= 1, 3)
    took = time.monotonic() - left_at
    assert took <= ABORT_SEEN_S, f"the upstream saw the abort {took:.2f} s after the client left"
    return took


async def settled(gw: ServerProcess) -> None:
    await wait_for_async(lambda: idle(gw), bool, 3)


async def test_cancel_while_queued_in_the_gateway(setup: Any) -> None:
    a, gw, client = setup
    await asyncio.to_thread(configure, a, stall_after=2, count=1)  # the first request holds the only slot
    holder = await client.chat.completions.create(model=MODEL, messages=MSG, stream=True)
    await tokens(holder, 2)
    waiter = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=MSG, stream=True))
    queued = await wait_for_async(lambda: pool(gw), lambda p: p["queued_requests"] == 1, 3)
    assert queued["upstreams"][0]["inflight"] == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await wait_for_async(lambda: pool(gw)["queued_requests"], lambda n: n == 0, 1)

    await holder.close()  # now free the slot: the request that left must not go out after all
    await aborted_soon(a, time.monotonic())
    await settled(gw)
    await asyncio.sleep(0.3)
    assert await asyncio.to_thread(generations, a) == 1


async def test_cancel_while_waiting_for_headers(setup: Any) -> None:
    a, gw, client = setup
    await asyncio.to_thread(configure, a, ttfb_ms=8000, count=1)
    task = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=MSG, stream=True))
    await wait_for_async(lambda: stats(a)["in_flight"], lambda n: n == 1, 3)
    task.cancel()
    left = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    took = await aborted_soon(a, left)
    await settled(gw)
    print(f"headers window: abort seen after {took * 1000:.0f} ms")


async def test_cancel_mid_stream(setup: Any) -> None:
    a, gw, client = setup
    await asyncio.to_thread(configure, a, interval_ms=200, chunks=50)
    stream = await client.chat.completions.create(model=MODEL, messages=MSG, stream=True)
    await tokens(stream, 2)
    await stream.close()
    left = time.monotonic()
    took = await aborted_soon(a, left)
    await settled(gw)
    assert (await asyncio.to_thread(stats, a))["completed"] == 0
    print(f"mid-stream: abort seen after {took * 1000:.0f} ms")


async def test_cancel_non_streamed(setup: Any) -> None:
    a, gw, client = setup
    await asyncio.to_thread(configure, a, interval_ms=100, chunks=50)  # about 5 s of generation
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model=MODEL, messages=MSG, timeout=1.0)
    left = time.monotonic()
    took = await aborted_soon(a, left)
    await settled(gw)
    assert (await asyncio.to_thread(stats, a))["completed"] == 0
    print(f"non-streamed: abort seen after {took * 1000:.0f} ms")


async def test_a_freed_slot_reaches_a_queued_request_that_can_use_it(
    mocks: Callable[..., MockProcess], gateways: Callable[..., ServerProcess]
) -> None:
    """Two members of one slot each, both held. R1 is queued after A refused it (so it may not go to
    A again); R2 is queued behind it. When A frees its slot, R2 must get it at once, not wait for B."""
    a, b = mocks(), mocks()
    slow = {"max_inflight": 1, "first_byte_timeout_s": 10, "idle_timeout_s": 10}
    gw = await asyncio.to_thread(gateways, [member(a, **slow), member(b, **slow)], queue_timeout_s=20, health_interval_s=60)
    for m in (a, b):
        await asyncio.to_thread(reset, m)
    on_a = users_for(a, [a, b], 3, prefix="a-")
    client = openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0, timeout=20)

    async def hold(mock: MockProcess, user: str) -> openai.AsyncStream[Any]:
        await asyncio.to_thread(configure, mock, stall_after=2, count=1)
        stream = await client.chat.completions.create(model=MODEL, messages=MSG, stream=True, user=user)
        await tokens(stream, 2)
        return stream

    async def queued(n: int) -> None:
        await wait_for_async(lambda: pool(gw)["queued_requests"], lambda q: q == n, 3)

    hold_b = await hold(b, users_for(b, [a, b], 1, prefix="b-")[0])
    hold_a = await hold(a, on_a[0])
    r1 = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=MSG, user=on_a[1]))
    await queued(1)
    await asyncio.to_thread(configure, a, status=502, count=1)  # A refuses R1 once it gets the slot
    await hold_a.close()
    await wait_for_async(lambda: pool(gw)["upstreams"][0]["failures"], lambda f: f == 1, 3)
    await queued(1)  # R1 again, now for B only
    hold_a = await hold(a, on_a[0])
    r2 = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=MSG, user=on_a[2]))
    await queued(2)

    await hold_a.close()  # A is free: R2 may use it, R1 may not
    freed = time.monotonic()
    done, _ = await asyncio.wait({r2}, timeout=3)
    assert r2 in done, f"R2 still queued {time.monotonic() - freed:.1f} s after A freed its slot: {pool(gw)}"
    assert r1.done() is False
    await hold_b.close()
    assert (await r1).choices[0].message.content == text_of(16)
    await settled(gw)
    await client.close()
