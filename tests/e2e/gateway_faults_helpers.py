"""Shared pieces of the gateway fault tests: mockai processes, a gateway over them, bounded waits.

Every mock is a real ``python -m tests.upstreams.mockai`` process on loopback, driven through its
``/mock/config`` (the gateway does not forward client headers, so per-request ``x-mock-*`` headers
never reach it). The gateway is a real ``faceplate serve`` with a TOML ``[[upstreams]]`` config and
short timeouts, so every fault resolves in about a second.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from faceplate.engines.remote.routing import rendezvous
from tests.gateway import pool_stats, start_gateway
from tests.serverproc import ServerProcess
from tests.upstreams.launch import MockProcess, run_mockai

T = TypeVar("T")
MODEL = "m"
MSG = [{"role": "user", "content": "hello there"}]
FAST = {"connect_timeout_s": 1, "first_byte_timeout_s": 1, "idle_timeout_s": 1}  # per member
ROUTING = {"health_interval_s": 0.5, "breaker_open_s": 2, "queue_timeout_s": 10}


def text_of(tokens: int) -> str:
    """mockai's deterministic text for ``tokens`` tokens: ``tok0 tok1 ...``."""
    return "".join(f"tok{i}" if i == 0 else f" tok{i}" for i in range(tokens))


def wait_for(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float, interval: float = 0.05) -> T:
    """Poll ``probe`` until ``ok`` holds of its value or ``timeout`` passes (then fail with the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout:g} s; last value: {value!r}")
        time.sleep(interval)


async def wait_for_async(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float, interval: float = 0.02) -> T:
    """``wait_for`` from a coroutine: the (blocking) probe runs in a thread, so the loop stays free."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(probe)
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout:g} s; last value: {value!r}")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------ mocks


def configure(mock: str, **controls: Any) -> None:
    """POST /mock/config (``count=N``: the controls last N generation requests)."""
    r = httpx.post(f"{mock}/mock/config", json=controls, timeout=5)
    r.raise_for_status()


def reset(mock: str) -> None:
    httpx.post(f"{mock}/mock/reset", timeout=5).raise_for_status()


def stats(mock: str) -> dict[str, Any]:
    return httpx.get(f"{mock}/mock/stats", timeout=5).json()


def generations(mock: str) -> int:
    """Chat completion requests the mock has received."""
    return int(stats(mock)["requests"].get("/v1/chat/completions", 0))


def users_for(target: str, members: list[str], count: int, prefix: str = "u") -> list[str]:
    """``count`` ``user`` values whose affinity (the pool's own rendezvous hash) prefers ``target``."""
    out, i = [], 0
    while len(out) < count:
        user = f"{prefix}{i}"
        if rendezvous("k:" + user, members, name=lambda u: u, weight=lambda u: 1.0) == target:
            out.append(user)
        i += 1
    return out


@pytest.fixture
def mocks(tmp_path: Path) -> Iterator[Callable[..., MockProcess]]:
    """``mocks(flavour="openai", **opts)`` starts a mockai process, stopped at teardown."""
    with ExitStack() as stack:

        def start(flavour: str = "openai", **opts: Any) -> MockProcess:
            return stack.enter_context(run_mockai(flavour=flavour, log_dir=tmp_path, **opts))

        yield start


# ------------------------------------------------------------------ the gateway


def member(url: str, kind: str = "openai", **fields: Any) -> dict[str, Any]:
    return {"id": MODEL, "url": url, "kind": kind, **FAST, **fields}


def gateway(members: list[dict[str, Any]], log_dir: Path, **routing: Any) -> ServerProcess:
    """A gateway over ``members`` with fast timeouts; /metrics readable without a key."""
    return start_gateway(members, log_dir=log_dir, routing={**ROUTING, **routing}, env={"FACEPLATE_METRICS_PUBLIC": "true"})


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``gateways(members, **routing)`` starts a gateway, stopped at teardown (its log shown on failure)."""
    started: list[ServerProcess] = []

    def start(members: list[dict[str, Any]], **routing: Any) -> ServerProcess:
        started.append(gateway(members, tmp_path, **routing))
        return started[-1]

    yield start
    for g in started:
        g.stop()
        print(f"--- gateway log ---\n{g.log()[-6000:]}")


def pool(gw: ServerProcess, model: str = MODEL) -> dict[str, Any]:
    return pool_stats(gw, model)


def upstream(gw: ServerProcess, url: str, model: str = MODEL) -> dict[str, Any]:
    """One member's row of the pool stats."""
    return next(u for u in pool(gw, model)["upstreams"] if u["url"] == url)


def metric(gw: ServerProcess, name: str, **labels: str) -> float:
    """The sum of a Prometheus series over the samples whose labels include ``labels``."""
    text = httpx.get(f"{gw.root}/metrics", timeout=5).text
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})?\s+(\S+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def idle(gw: ServerProcess, model: str = MODEL) -> bool:
    """Nothing in flight in the pool and nothing queued."""
    p = pool(gw, model)
    return p["queued_requests"] == 0 and all(u["inflight"] == 0 for u in p["upstreams"])
