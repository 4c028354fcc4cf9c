"""Fault tests for the gateway (SCALEOUT.md §5, tests 1-3): real ``faceplate serve`` processes over
mockai processes on loopback, driven by the official SDK.

1. an upstream SIGKILLed mid-stream: one error event, no [DONE], no text twice, usage for what was
   delivered, the dead member's circuit opens, the survivor takes the next 50, the restarted
   member is readmitted;
2. connection refused, a blackhole and a death before the first byte: retried on the other member,
   the client sees 200 within the first-byte timeout plus one attempt;
3. a stall mid-stream ends in one error event after the idle timeout; a 429/503 with Retry-After
   is retried elsewhere, does not count against the breaker, and cools the member down.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
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
    metric,
    mocks,
    pool,
    reset,
    stats,
    text_of,
    upstream,
    users_for,
    wait_for,
)
from tests.serverproc import ServerProcess
from tests.upstreams.chaos import start_chaos
from tests.upstreams.launch import MockProcess

__all__ = ["gateways", "mocks"]  # fixtures

Gateways = Callable[..., ServerProcess]
Mocks = Callable[..., MockProcess]


def sdk(gw: ServerProcess, timeout: float = 10) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0, timeout=timeout)


def sse_lines(response: httpx.Response) -> list[str]:
    return [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]


# ---------------------------------------------------------------- 1. SIGKILL mid-stream


def test_sigkill_mid_stream(mocks: Mocks, gateways: Gateways) -> None:
    a, b = mocks(), mocks()
    gw = gateways([member(a), member(b)], breaker_failures=2)
    for m in (a, b):
        reset(m)
        configure(m, interval_ms=100, chunks=40)
    tokens_before = metric(gw, "faceplate:generation_tokens_total", model=MODEL)
    failed_before = metric(gw, "faceplate:requests_total", model=MODEL, status="502")

    # Two streams with the same affinity key land on the same member: one read by the SDK, one raw.
    body = {"model": MODEL, "messages": MSG, "user": "victim", "stream": True}
    client = sdk(gw)
    stream = client.chat.completions.create(**body)
    got: list[str] = []
    for chunk in stream:
        got += [c.delta.content or "" for c in chunk.choices]
        if len("".join(got).split()) >= 3:
            break
    with httpx.Client(timeout=10) as raw:
        with raw.stream("POST", f"{gw.base_url}/chat/completions", json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            first = [next(lines) for _ in range(4)]  # the role chunk and some text (and blank separators)
            victim = wait_for(lambda: [m for m in (a, b) if stats(m)["in_flight"] == 2], lambda v: len(v) == 1, 5)[0]
            survivor = b if victim == a else a
            victim.kill()
            rest = [line for line in lines]
        raw_events = [line[5:].strip() for line in first + rest if line.startswith("data:")]
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            got += [c.delta.content or "" for c in chunk.choices]
    text = "".join(got)

    # The SDK raised the error event's body; the text before it is a prefix of the mock's text, nothing twice.
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "upstream_error", caught.value.body
    assert set(caught.value.body) >= {"message", "type", "param", "code"}
    assert text and text_of(40).startswith(text), text
    # Raw: text chunks, then exactly one error event, and no [DONE].
    assert "[DONE]" not in raw_events, raw_events
    objs = [json.loads(e) for e in raw_events]
    errors = [o for o in objs if "error" in o]
    assert len(errors) == 1 and objs[-1] is errors[0], raw_events
    assert set(errors[0]["error"]) == {"message", "type", "param", "code"}
    raw_text = "".join(c["delta"].get("content") or "" for o in objs[:-1] for c in o["choices"])
    assert raw_text and text_of(40).startswith(raw_text)

    # Usage: what was delivered (one token per chunk), recorded for both failed calls.
    delivered = len(text.split()) + len(raw_text.split())
    assert metric(gw, "faceplate:generation_tokens_total", model=MODEL) - tokens_before == delivered
    assert metric(gw, "faceplate:requests_total", model=MODEL, status="502") - failed_before == 2

    # The dead member: circuit open (two hard failures), and the health check marks it down.
    dead = wait_for(lambda: upstream(gw, victim), lambda u: not u["healthy"], 5)
    assert dead["opens"] >= 1 and dead["failures"] >= 2, dead
    assert idle(gw)

    # The next 50 requests all succeed, on the survivor.
    configure(survivor, interval_ms=0, chunks=4)
    before = generations(survivor)
    for i in range(50):
        r = client.chat.completions.create(model=MODEL, messages=MSG, user=f"after-{i}")
        assert r.choices[0].message.content == text_of(4)
    assert generations(survivor) - before == 50

    # Restarted on the same port: healthy again within a few health checks, then readmitted by its circuit.
    victim.restart()
    wait_for(lambda: upstream(gw, victim), lambda u: u["healthy"], 5)
    mine = users_for(victim, [a, b], 6, prefix="back-")
    start = time.monotonic()

    def readmitted() -> dict[str, Any]:
        for user in mine:
            client.chat.completions.create(model=MODEL, messages=MSG, user=user, max_tokens=2)
        return upstream(gw, victim)

    row = wait_for(readmitted, lambda u: u["circuit"] == "closed" and generations(victim) >= 2, 8, interval=0.2)
    assert row["healthy"], row
    print(f"readmitted {time.monotonic() - start:.1f} s after it answered its health check")


# ---------------------------------------------------------------- 2. unreachable before the first byte: retried


@pytest.mark.parametrize("fault", ["refuse", "blackhole", "die_before_first_byte"])
async def test_unreachable_member_is_retried_transparently(fault: str, mocks: Mocks, gateways: Gateways) -> None:
    a, b = mocks(), mocks()
    proxy = await start_chaos("127.0.0.1", a.port)
    try:
        # No health checks after the first (health_interval_s=60): the pool keeps placing on the faulty
        # member, so each of its requests shows the retry; breaker_failures=5 > the 3 it gets.
        members = [member(proxy.url), member(b)]
        gw = await asyncio.to_thread(gateways, members, health_interval_s=60, breaker_failures=5)
        for m in (a, b):
            await asyncio.to_thread(reset, m)
        mine = users_for(proxy.url, [proxy.url, b], 3, prefix="a-")
        theirs = users_for(b, [proxy.url, b], 3, prefix="b-")
        client = openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0, timeout=10)
        start = time.monotonic()
        await client.chat.completions.create(model=MODEL, messages=MSG, user=theirs[0])
        baseline = time.monotonic() - start  # one attempt, no fault

        if fault == "die_before_first_byte":
            await asyncio.to_thread(configure, a, die_after=0)
        else:
            await proxy.set(fault)
        proxy.drop()  # the health check's keep-alive connection would still pass
        latency: dict[str, float] = {}
        for user in [u for pair in zip(mine, theirs, strict=True) for u in pair]:
            start = time.monotonic()
            r = await client.chat.completions.create(model=MODEL, messages=MSG, user=user)
            latency[user] = time.monotonic() - start
            assert r.choices[0].message.content == text_of(16)

        rows = {u["url"]: u for u in (await asyncio.to_thread(pool, gw))["upstreams"]}
        assert rows[proxy.url]["retries"] == len(mine) and rows[b]["retries"] == 0, rows
        assert rows[proxy.url]["failures"] == len(mine) and rows[proxy.url]["circuit"] == "closed", rows
        assert (await asyncio.to_thread(generations, b)) == 1 + len(mine) + len(theirs)
        died = (await asyncio.to_thread(stats, a))["died"]
        assert died == (len(mine) if fault == "die_before_first_byte" else 0)
        first_byte = 1.0
        slack = 1.0  # two shared noisy cores
        for user in mine:  # a blackhole costs the first-byte timeout; a refusal or a cut almost nothing
            wait = first_byte if fault == "blackhole" else 0.0
            assert wait <= latency[user] <= wait + baseline + slack, (user, latency, baseline)
        print(f"{fault}: baseline {baseline * 1000:.0f} ms; retried {[round(latency[u] * 1000) for u in mine]} ms")
        await client.close()
    finally:
        await proxy.close()


# ---------------------------------------------------------------- 3. stalls, and Retry-After


def test_stall_mid_stream_ends_with_one_error_event(mocks: Mocks, gateways: Gateways) -> None:
    a = mocks()
    gw = gateways([member(a)])
    reset(a)
    configure(a, stall_after=3)
    times: list[float] = []
    body = {"model": MODEL, "messages": MSG, "stream": True}
    events: list[Any] = []
    with httpx.Client(timeout=10) as raw, raw.stream("POST", f"{gw.base_url}/chat/completions", json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]) if line[5:].strip() != "[DONE]" else "[DONE]")
                times.append(time.monotonic())
    assert "[DONE]" not in events, events
    errors = [e for e in events if "error" in e]
    assert len(errors) == 1 and events[-1] is errors[0], events
    assert errors[0]["error"]["code"] == "request_timeout" and set(errors[0]["error"]) == {"message", "type", "param", "code"}
    text = "".join(c["delta"].get("content") or "" for e in events[:-1] for c in e["choices"])
    assert text == text_of(3)
    silence = times[-1] - times[-2]
    assert 0.9 <= silence <= 2.5, silence  # idle_timeout_s = 1
    # The gateway hung up on the stalled upstream (it counts an abort) and freed the slot.
    wait_for(lambda: stats(a)["aborted"], lambda n: n == 1, 3)
    wait_for(lambda: idle(gw), bool, 3)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_and_not_a_breaker_failure(status: int, mocks: Mocks, gateways: Gateways) -> None:
    a, b = mocks(), mocks()
    # breaker_failures=1: one hard failure would open the circuit, so a closed one proves it was soft.
    gw = gateways([member(a), member(b)], breaker_failures=1)
    for m in (a, b):
        reset(m)
    configure(a, status=status, retry_after=2, count=1)
    mine = users_for(a, [a, b], 1, prefix="cool-")[0]
    client = sdk(gw)
    start = time.monotonic()
    r = client.chat.completions.create(model=MODEL, messages=MSG, user=mine)  # A says "busy": B answers
    assert r.choices[0].message.content == text_of(16)
    assert (generations(a), generations(b)) == (1, 1)
    row = upstream(gw, a)
    assert row["failures"] == 1 and row["circuit"] == "closed" and row["opens"] == 0, row

    # Until its Retry-After has passed A gets nothing, even for the users it is affine to; then it is back.
    seen: list[tuple[float, int]] = []  # (when the request finished, A's generation count)
    while time.monotonic() - start < 5:
        client.chat.completions.create(model=MODEL, messages=MSG, user=mine, max_tokens=2)
        seen.append((time.monotonic() - start, generations(a)))
        if seen[-1][1] > 1:
            break
        time.sleep(0.1)
    early = [count for t, count in seen if t < 2.0]
    assert early and all(count == 1 for count in early), seen
    assert seen[-1][1] == 2, seen  # readmitted once the 2 s are up
    row = upstream(gw, a)
    assert row["circuit"] == "closed" and row["opens"] == 0 and row["failures"] == 1, row
    print(f"{status}: A readmitted {seen[-1][0]:.2f} s after the Retry-After: 2")


# ---------------------------------------------------------------- connections: bounded and reused


async def test_upstream_connections_are_reused_and_bounded(mocks: Mocks, gateways: Gateways) -> None:
    """Twenty streamed and twenty whole requests, four at a time, open at most a handful of connections
    to the upstream (keep-alive, read to the end and released), never one per request."""
    a = mocks()
    proxy = await start_chaos("127.0.0.1", a.port)
    try:
        gw = await asyncio.to_thread(gateways, [member(proxy.url, max_inflight=4)], health_interval_s=60)
        client = openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0, timeout=10)
        before = proxy.connections

        async def one(i: int) -> None:
            if i % 2:
                r = await client.chat.completions.create(model=MODEL, messages=MSG, user=f"c{i}")
                assert r.choices[0].message.content == text_of(16)
            else:
                stream = await client.chat.completions.create(model=MODEL, messages=MSG, user=f"c{i}", stream=True)
                assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == text_of(16)

        for batch in range(10):
            await asyncio.gather(*(one(4 * batch + j) for j in range(4)))
        opened = proxy.connections - before
        assert 1 <= opened <= 4 + 2, opened  # max_inflight at once, plus the health and load polls' own
        await client.close()
    finally:
        await proxy.close()


# ---------------------------------------------------------------- a server that ignores stream: true


def test_a_server_that_ignores_stream_is_still_streamed_to_the_client(mocks: Mocks, gateways: Gateways) -> None:
    """Some OpenAI-compatible servers answer one JSON body whatever ``stream`` says: the gateway reads it
    as one event, so a streaming client still gets OpenAI's chunks, [DONE] and its usage chunk."""
    a = mocks()
    configure(a, ignore_stream=1)
    gw = gateways([member(a)])
    client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0, timeout=10)
    direct = httpx.post(f"{a.base_url}/chat/completions", json={"model": "m", "messages": MSG, "stream": True}, timeout=10)
    assert direct.headers["content-type"].startswith("application/json")  # the mock really ignores it
    chunks = list(client.chat.completions.create(model=MODEL, messages=MSG, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text_of(16)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16
    whole = client.chat.completions.create(model=MODEL, messages=MSG, n=2)
    assert [c.message.content for c in whole.choices] == [text_of(16)] * 2
    assert whole.usage is not None and whole.usage.completion_tokens == 32
