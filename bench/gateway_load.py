"""The in-process load generator of bench/gateway_overhead.py (aiohttp): closed-loop clients against
one target, non-stream or streaming chat completions, with the gateway's CPU read around the phase.

A phase: ``c`` clients, each sending its next request as soon as the last one ended, for
``seconds``; then no new request starts and the ones in flight finish. Measured per phase:
latencies (non-stream: request sent to body read), time to first content chunk and gaps between
consecutive content chunks (streams), the CPU the target's processes used, and LiteLLM's
``x-litellm-overhead-duration-ms`` header when present.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

# A content chunk: a non-empty "content" string (the role chunk carries "content":"").
CONTENT = re.compile(rb'"content":\s*"[^"]')
PROMPT = "Summarise in one sentence why a gateway in front of a model server should add as little latency as it can."


def chat_body(model: str, *, stream: bool, max_tokens: int = 200) -> dict[str, Any]:
    """About 200 bytes of JSON (non-stream)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
    return body


# ---------------------------------------------------------------------------- CPU of a process tree


def _ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime, all threads
    except (OSError, IndexError, ValueError):
        return 0


def descendants(pid: int) -> list[int]:
    """pid and every live process below it (``/proc/PID/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


class TreeCPU:
    """CPU seconds used by a process and its children since ``start()`` (children that exited
    during the phase are lost: the targets here keep theirs)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")
        self.base: dict[int, int] = {}

    def _read(self) -> dict[int, int]:
        return {p: _ticks(p) for p in descendants(self.pid)} if self.pid else {}

    def start(self) -> None:
        self.base = self._read()

    def seconds(self) -> float:
        now = self._read()
        return sum(t - self.base.get(p, 0) for p, t in now.items()) / self.tick


def machine_busy_seconds() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- one phase


@dataclass
class Phase:
    target: str
    kind: str  # "nonstream" | "stream"
    clients: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # non-stream: whole request; stream: whole stream
    ttft: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    chunks: int = 0
    errors: int = 0
    error_sample: str = ""
    litellm_overhead_ms: list[float] = field(default_factory=list)
    gateway_cpu: float = 0.0  # CPU seconds of the target's own processes (0 for direct)
    upstream_cpu: float = 0.0
    client_cpu: float = 0.0
    other_cpu: float = 0.0  # the rest of the machine, cores on average

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def summary(self) -> dict[str, Any]:
        n = max(1, self.requests)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rps": self.requests / self.elapsed if self.elapsed else 0.0,
            "p50_ms": _pct(self.latencies, 50),
            "p99_ms": _pct(self.latencies, 99),
            "ttft_p50_ms": _pct(self.ttft, 50),
            "ttft_p99_ms": _pct(self.ttft, 99),
            "gap_p50_ms": _pct(self.gaps, 50),
            "gap_p99_ms": _pct(self.gaps, 99),
            "chunks": self.chunks,
            "cpu_ms_per_req": self.gateway_cpu / n * 1e3,
            "cpu_us_per_chunk": self.gateway_cpu / self.chunks * 1e6 if self.chunks else None,
            "upstream_cpu_ms_per_req": self.upstream_cpu / n * 1e3,
            "client_cpu_ms_per_req": self.client_cpu / n * 1e3,
            "litellm_overhead_ms_p50": statistics.median(self.litellm_overhead_ms) if self.litellm_overhead_ms else None,
            "other_cpu_cores": self.other_cpu,
            "error_sample": self.error_sample,
        }


def _pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in ms."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k] * 1e3


async def _one_nonstream(session: aiohttp.ClientSession, url: str, body: dict[str, Any], ph: Phase) -> None:
    t0 = time.perf_counter()
    async with session.post(url, json=body) as resp:
        data = await resp.read()
        t1 = time.perf_counter()
        if resp.status != 200 or not CONTENT.search(data):
            ph.errors += 1
            ph.error_sample = ph.error_sample or f"{resp.status} {data[:300]!r}"
            return
        hdr = resp.headers.get("x-litellm-overhead-duration-ms")
    ph.latencies.append(t1 - t0)
    if hdr:
        with contextlib.suppress(ValueError):
            ph.litellm_overhead_ms.append(float(hdr))


async def _one_stream(session: aiohttp.ClientSession, url: str, body: dict[str, Any], ph: Phase) -> None:
    t0 = time.perf_counter()
    times: list[float] = []
    done = False
    async with session.post(url, json=body) as resp:
        if resp.status != 200:
            ph.errors += 1
            ph.error_sample = ph.error_sample or f"{resp.status} {(await resp.read())[:300]!r}"
            return
        hdr = resp.headers.get("x-litellm-overhead-duration-ms")
        async for line in resp.content:
            if not line.startswith(b"data:"):
                continue
            if line.startswith(b"data: [DONE]"):
                done = True
            elif CONTENT.search(line):
                times.append(time.perf_counter())
    t1 = time.perf_counter()
    if not done or not times:
        ph.errors += 1
        ph.error_sample = ph.error_sample or f"stream ended without [DONE] after {len(times)} chunks"
        return
    ph.latencies.append(t1 - t0)
    ph.ttft.append(times[0] - t0)
    ph.gaps.extend(b - a for a, b in zip(times, times[1:], strict=False))
    ph.chunks += len(times)
    if hdr:
        with contextlib.suppress(ValueError):
            ph.litellm_overhead_ms.append(float(hdr))


async def run_phase(
    target: str,
    root: str,
    model: str,
    *,
    stream: bool,
    clients: int,
    seconds: float,
    gateway_pid: int | None,
    upstream_pid: int,
    api_key: str | None = None,
    warmup: int = 0,
) -> Phase:
    """``clients`` closed-loop clients for ``seconds`` against ``root``/v1/chat/completions."""
    ph = Phase(target, "stream" if stream else "nonstream", clients)
    url = root + "/v1/chat/completions"
    body = chat_body(model, stream=stream)
    one = _one_stream if stream else _one_nonstream
    connector = aiohttp.TCPConnector(limit=clients, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        scratch, tiny = Phase(target, ph.kind, clients), chat_body(model, stream=False, max_tokens=1)
        for _ in range(warmup):  # open the phase's connections: one-token requests, not recorded
            await asyncio.gather(*(_one_nonstream(session, url, tiny, scratch) for _ in range(clients)))
        gw, up = TreeCPU(gateway_pid), TreeCPU(upstream_pid)
        gw.start()
        up.start()
        me0, busy0 = time.process_time(), machine_busy_seconds()
        t0 = time.perf_counter()
        stop = t0 + seconds

        async def client() -> None:
            while time.perf_counter() < stop:
                try:
                    await one(session, url, body, ph)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    ph.errors += 1
                    ph.error_sample = ph.error_sample or repr(exc)
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(client() for _ in range(clients)))
        ph.elapsed = time.perf_counter() - t0
        ph.gateway_cpu, ph.upstream_cpu = gw.seconds(), up.seconds()
        ph.client_cpu = time.process_time() - me0
        busy = machine_busy_seconds() - busy0
        ph.other_cpu = max(0.0, busy - ph.gateway_cpu - ph.upstream_cpu - ph.client_cpu) / ph.elapsed
    return ph


def pin(cpus: set[int]) -> None:
    """Pin this process (all its threads so far) to ``cpus``."""
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task), cpus)


def cpu_list() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def proc_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()
