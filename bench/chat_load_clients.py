"""Servers bench/chat_load.py compares, and the load it puts on them: streaming chat requests from
a closed loop of clients, their summary, and the shared-prefix test."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BASE_SEED,
    LONG_SYSTEM_PROMPT,
    MODEL_ID,
    PREFIX_QUESTIONS,
    PROMPTS,
    UNRELATED_PROMPT,
    Server,
    chat_body,
    cpu_busy_seconds,
    percentile,
)

PY = sys.executable


# ---------------------------------------------------------------------------- servers


def faceplate(path: Path, threads: int, n_parallel: int, data_dir: Path) -> Server:
    return Server(
        name=f"faceplate-np{n_parallel}",
        label=f"Faceplate (--n-parallel {n_parallel})",
        argv=[
            PY, "-m", "faceplate", "serve", "--host", "127.0.0.1", "--port", "{port}",
            "--model", f"{MODEL_ID}={path}", "--threads", str(threads), "--n-parallel", str(n_parallel),
        ],
        ready_path="/health",
        env={"FACEPLATE_DATA_DIR": str(data_dir / f"faceplate-np{n_parallel}")},
    )  # fmt: skip


def llamacpp(path: Path, threads: int, *, interrupt: bool) -> Server:
    argv = [
        PY, "-m", "llama_cpp.server", "--model", str(path), "--n_threads", str(threads), "--n_threads_batch", str(threads),
        "--host", "127.0.0.1", "--port", "{port}", "--model_alias", MODEL_ID,
    ]  # fmt: skip
    if not interrupt:
        argv += ["--interrupt_requests", "False"]
    return Server(
        name="llamacpp" if interrupt else "llamacpp-nointerrupt",
        label="llama-cpp-python server" + ("" if interrupt else " (--interrupt_requests False)"),
        argv=argv,
        ready_path="/v1/models",
    )


def llama_server(path: Path, threads: int, n_parallel: int) -> Server:
    """llama.cpp's own C++ server, built from the llama-cpp-python sources Faceplate runs on
    (scripts/build_llama_server.py, cached), with unified KV cache slots as its docs advise."""
    build = Path(__file__).resolve().parents[1] / "scripts" / "build_llama_server.py"
    binary = subprocess.run([PY, str(build)], check=True, capture_output=True, text=True).stdout.strip()
    return Server(
        name="llama-server",
        label=f"llama-server (-np {n_parallel} -kvu)",
        argv=[
            binary, "-m", str(path), "-t", str(threads), "-tb", str(threads), "-np", str(n_parallel), "-kvu",
            "--host", "127.0.0.1", "--port", "{port}", "--alias", MODEL_ID,
        ],
        ready_path="/health",
    )  # fmt: skip


# ---------------------------------------------------------------------------- one request


@dataclass
class Rec:
    start: float
    prompt: int
    times: list[float] = field(default_factory=list)  # arrival of each chunk with content
    usage_tokens: int | None = None
    prompt_tokens: int | None = None
    finish: str | None = None
    done: bool = False  # saw data: [DONE]
    error: str | None = None
    cancelled: bool = False  # cancelled by this client at the drain cap
    end: float = 0.0

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else len(self.times)


async def stream_chat(client: httpx.AsyncClient, url: str, body: dict[str, Any], rec: Rec) -> None:
    """One streaming chat request; minimal SSE parsing (one json.loads per event). A kept-alive
    connection the server closed while idle fails before any byte ("Server disconnected without
    sending a response"): that is the client's race, not the server's error, so it is sent again
    once on a fresh connection, as HTTP clients do for idempotent requests."""
    for attempt in range(2):
        try:
            await _stream_once(client, url, body, rec)
            return
        except httpx.RemoteProtocolError as exc:  # raised only when nothing had arrived
            if attempt:
                rec.error = f"{type(exc).__name__}: {exc}"[:200]
                rec.end = time.perf_counter()
                return


async def _stream_once(client: httpx.AsyncClient, url: str, body: dict[str, Any], rec: Rec) -> None:
    loads, clock = json.loads, time.perf_counter
    try:
        async with client.stream("POST", url, json=body) as resp:
            if resp.status_code != 200:
                await resp.aread()
                rec.error = f"HTTP {resp.status_code}: {resp.text[:200]}"
                return
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    rec.done = True
                    continue
                obj = loads(data)
                if "error" in obj:
                    rec.error = "stream error: " + json.dumps(obj["error"])[:200]
                    continue
                for ch in obj.get("choices") or ():
                    if (ch.get("delta") or {}).get("content"):
                        rec.times.append(clock())
                    if ch.get("finish_reason"):
                        rec.finish = ch["finish_reason"]
                usage = obj.get("usage")
                if usage:
                    rec.usage_tokens = usage.get("completion_tokens")
                    rec.prompt_tokens = usage.get("prompt_tokens")
    except asyncio.CancelledError:
        rec.cancelled = True
        raise
    except httpx.RemoteProtocolError:
        if not rec.times and not rec.done:
            raise  # nothing arrived: stream_chat may send it again
        if not rec.done:
            rec.error = "RemoteProtocolError: the server closed the stream before its end"
    except Exception as exc:  # noqa: BLE001 - every failure is a counted error
        if not rec.done:  # after data: [DONE] the answer is complete, however the connection ends
            rec.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        rec.end = time.perf_counter()


# ---------------------------------------------------------------------------- one level


async def run_level(server: Server, conc: int, *, duration: float, drain_cap: float, max_tokens: int) -> dict[str, Any]:
    url = server.root + "/v1/chat/completions"
    recs: list[Rec] = []
    limits = httpx.Limits(max_connections=conc + 4, max_keepalive_connections=conc + 4)
    timeout = httpx.Timeout(connect=10.0, read=duration + drain_cap + 120.0, write=10.0, pool=10.0)
    fp_before = await faceplate_stats(server)
    cpu0, wall0, client0, busy0 = server.cpu_seconds(), time.perf_counter(), time.process_time(), cpu_busy_seconds()
    main0 = server.main_thread_cpu_seconds()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        t0 = time.perf_counter()
        deadline = t0 + duration

        async def client_loop(cid: int) -> None:
            k = 0
            while time.perf_counter() < deadline:
                idx = (cid + k * 7) % len(PROMPTS)
                rec = Rec(start=time.perf_counter(), prompt=idx)
                recs.append(rec)
                await stream_chat(client, url, chat_body(PROMPTS[idx], seed=BASE_SEED + idx, max_tokens=max_tokens), rec)
                k += 1
                if rec.error:
                    await asyncio.sleep(0.05)  # no hot loop against a failing server

        tasks = [asyncio.create_task(client_loop(i)) for i in range(conc)]
        _, pending = await asyncio.wait(tasks, timeout=duration + drain_cap)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        t_end = time.perf_counter()
    wall = time.perf_counter() - wall0
    server_cpu = (server.cpu_seconds() - cpu0) / wall
    server_main_cpu = (server.main_thread_cpu_seconds() - main0) / wall
    client_cpu = (time.process_time() - client0) / wall
    other_cpu = max(0.0, (cpu_busy_seconds() - busy0) / wall - server_cpu - client_cpu)
    mem = server.memory_kib()
    fp_after = await faceplate_stats(server)
    m = summarize(recs, t0=t0, deadline=deadline, duration=duration, max_tokens=max_tokens)
    m.update(
        clients=conc,
        wall_s=t_end - t0,
        server_cpu_cores=server_cpu,
        server_main_thread_cpu_cores=server_main_cpu,
        client_cpu_cores=client_cpu,
        other_cpu_cores=other_cpu,
        rss_mib=mem.get("VmRSS", 0) / 1024,
        peak_rss_mib=mem.get("VmHWM", 0) / 1024,
        server_alive=server.alive(),
    )
    if fp_before and fp_after:
        d = {
            k: fp_after[k] - fp_before[k]
            for k in ("steps", "generated_tokens", "prompt_tokens", "prompt_tokens_reused")
            if k in fp_after
        }
        d["tokens_per_step"] = d["generated_tokens"] / d["steps"] if d.get("steps") else None
        m["engine"] = d
    await settle(server)
    return m


def summarize(recs: list[Rec], *, t0: float, deadline: float, duration: float, max_tokens: int) -> dict[str, Any]:
    tok_window = 0.0
    ttft: list[float] = []
    censored = 0
    itl: list[float] = []
    completed = errors = truncated = cancelled = finished_length = finished_stop = 0
    chunks_with_usage = usage_total = 0
    error_samples: list[str] = []
    for r in recs:
        n = len(r.times)
        if n:
            in_window = sum(1 for t in r.times if t <= deadline)
            tok_window += r.tokens * in_window / n
            ttft.append(r.times[0] - r.start)
            itl.extend(b - a for a, b in zip(r.times, r.times[1:], strict=False))
        elif r.cancelled:
            ttft.append(r.end - r.start)  # a lower bound: it never got a first token
            censored += 1
        elif not r.error:
            ttft.append(math.inf)  # the answer ended before any token: no first token, ever
        if r.usage_tokens is not None:
            chunks_with_usage += n
            usage_total += r.usage_tokens
        if r.error:
            errors += 1
            if len(error_samples) < 3:
                error_samples.append(r.error)
        elif r.cancelled:
            cancelled += 1
        elif r.finish is None:
            truncated += 1  # the stream ended with no finish_reason
        else:
            completed += 1
            finished_length += r.finish == "length"
            finished_stop += r.finish == "stop"
    done_recs = [r for r in recs if not r.error and not r.cancelled and r.finish]
    return {
        "tok_s": tok_window / duration,
        "requests": len(recs),
        "completed": completed,
        "errors": errors,
        "error_samples": error_samples,
        "truncated": truncated,
        "cancelled_at_cap": cancelled,
        "finish_length": finished_length,
        "finish_stop": finished_stop,
        "mean_tokens_completed": sum(r.tokens for r in done_recs) / len(done_recs) if done_recs else None,
        "short_stop": sum(1 for r in done_recs if r.finish == "stop" and r.tokens < max_tokens),
        "ttft_p50": percentile(ttft, 50),
        "ttft_p99": percentile(ttft, 99),
        "ttft_censored": censored,
        "itl_p50": percentile(itl, 50),
        "itl_p99": percentile(itl, 99),
        "chunks_per_usage_token": chunks_with_usage / usage_total if usage_total else None,
        "token_count_source": "usage" if usage_total else "chunks",
    }


async def faceplate_stats(server: Server) -> dict[str, Any] | None:
    if server.ready_path != "/health":
        return None
    try:
        async with httpx.AsyncClient(timeout=10) as c:
            models = (await c.get(server.root + "/health")).json().get("models") or {}
    except (httpx.HTTPError, ValueError):
        return None
    stats = models.get(MODEL_ID) if isinstance(models, dict) else None
    return stats if isinstance(stats, dict) else None


async def settle(server: Server, timeout: float = 240.0) -> None:
    """Wait until the server is idle: a 1-token request gets through (serial servers queue it last)."""
    body = chat_body("Say hi.", seed=1, max_tokens=1, stream=False, temperature=0.0)
    try:
        async with httpx.AsyncClient(timeout=timeout) as c:
            await c.post(server.root + "/v1/chat/completions", json=body)
            for _ in range(100):
                stats = await faceplate_stats(server)
                if not stats or (stats.get("running_sequences", 0) == 0 and stats.get("queued_requests", 0) == 0):
                    break
                await asyncio.sleep(0.1)
    except httpx.HTTPError as exc:
        print(f"  (settle failed: {exc})", flush=True)


# ---------------------------------------------------------------------------- shared prefix


async def prefix_test(server: Server) -> dict[str, Any]:
    """A: long system prompt + question 1 (cold); B: same system prompt + question 2;
    C: same system prompt + question 3 after an unrelated request in between."""
    url = server.root + "/v1/chat/completions"
    out: dict[str, Any] = {}
    fp_before = await faceplate_stats(server)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0)) as client:
        steps = [
            ("A", LONG_SYSTEM_PROMPT, PREFIX_QUESTIONS[0]),
            ("B", LONG_SYSTEM_PROMPT, PREFIX_QUESTIONS[1]),
            ("X", None, UNRELATED_PROMPT),
            ("C", LONG_SYSTEM_PROMPT, PREFIX_QUESTIONS[2]),
        ]
        for name, system, question in steps:
            rec = Rec(start=time.perf_counter(), prompt=-1)
            body = chat_body(question, seed=7, max_tokens=8, system=system, temperature=0.0)
            await stream_chat(client, url, body, rec)
            out[name] = {
                "ttft_s": rec.times[0] - rec.start if rec.times else None,
                "prompt_tokens": rec.prompt_tokens,
                "error": rec.error,
            }
    fp_after = await faceplate_stats(server)
    if fp_before and fp_after:
        out["engine_prompt_tokens_reused"] = fp_after["prompt_tokens_reused"] - fp_before["prompt_tokens_reused"]
    a, b = out["A"]["ttft_s"], out["B"]["ttft_s"]
    out["b_over_a"] = b / a if a and b else None
    c = out["C"]["ttft_s"]
    out["c_over_a"] = c / a if a and c else None
    return out
