"""Chat load benchmark: Faceplate vs llama-cpp-python's own server, same model, same threads.

    .venv/bin/python bench/chat_load.py            # full run (about 12 minutes on 2 cores)
    .venv/bin/python bench/chat_load.py --quick    # smoke run (about 2 minutes)
    .venv/bin/python bench/chat_load.py --save     # also write bench/chat_load.png and bench/README.md

What it does, in order:
1. starts every server (a subprocess on a free loopback port, bundled SmolLM2-135M, 2 threads),
   warms each up, and runs the shared-prefix test on each while it is fresh (a ~1,000-token system
   prompt, then the same system prompt with another question, then again after an unrelated request);
2. for each concurrency level: the raw ``llama_decode`` ceiling with N = level sequences per batch
   (bench/raw_decode.py, a subprocess, no HTTP), then each server in turn under a closed loop of
   streaming chat requests: every client sends its next request as soon as the last one ends, for
   ``--duration`` seconds; then no new requests, in-flight ones get ``--drain-cap`` seconds to finish
   and the rest are cancelled (counted, never hidden). Interleaving servers per level keeps what is
   compared a few minutes apart on a shared, noisy machine; before each measurement the script
   waits (up to ``--wait-quiet-level`` s) for other processes to go quiet, and it records how much
   CPU they used anyway ("other CPU");
3. one markdown table, the targets as ratios from this run, a JSON file and a PNG chart in bench/out/.

Token counting is the same for every server: ``usage.completion_tokens`` of the final chunk
when the server sends it (``stream_options.include_usage``), otherwise the number of content
chunks (llama-cpp-python sends one chunk per token). Throughput counts only tokens that arrived
before the deadline, summed over clients, divided by ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import signal
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
    BENCH_DIR,
    LONG_SYSTEM_PROMPT,
    MODEL_ID,
    OUT_DIR,
    PREFIX_QUESTIONS,
    PROMPTS,
    UNRELATED_PROMPT,
    Server,
    chat_body,
    cpu_busy_seconds,
    machine,
    model_path,
    percentile,
    wait_for_quiet,
)

PY = sys.executable
NOISY = 0.3  # cores used by other processes during a measurement above which it is redone (--retries)


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


# ---------------------------------------------------------------------------- main run


@dataclass
class Plan:
    server: Server
    levels: list[int]
    prefix: bool


def run_raw(args: argparse.Namespace, out_dir: Path, ns: list[int]) -> list[dict[str, Any]]:
    """The raw ceiling for these N, measured again (up to --retries times) when other load disturbed it."""
    best: list[dict[str, Any]] = []
    for attempt in range(1 + args.retries):
        wait_for_quiet(max_wait=args.wait_quiet_level)
        res = _run_raw_once(args, out_dir, ns)
        noise = max((r.get("other_cpu_cores", 0) for r in res), default=0.0)
        if not best or noise < max(r.get("other_cpu_cores", 0) for r in best):
            best = res
        if noise < NOISY or attempt == args.retries or not res:
            break
        print(f"  raw disturbed (other processes used {noise:.2f} cores): measuring again", flush=True)
    return best


def _run_raw_once(args: argparse.Namespace, out_dir: Path, ns: list[int]) -> list[dict[str, Any]]:
    path = out_dir / f"raw_decode-{'-'.join(map(str, ns))}.json"
    cmd = [PY, str(BENCH_DIR / "raw_decode.py"), "--ns", ",".join(map(str, ns)), "--threads", str(args.threads),
           "--steps", str(args.raw_steps), "--n-parallel", str(args.n_parallel), "--json", str(path)]  # fmt: skip
    print(f"  raw: {' '.join(cmd[1:])}", flush=True)
    rc = subprocess.run(cmd).returncode
    if rc != 0 or not path.exists():
        print(f"  raw_decode failed with exit code {rc}", flush=True)
        return []
    return json.loads(path.read_text())["results"]


async def prepare(plan: Plan, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """Start the server, warm it up, run the shared-prefix test on it while it is fresh."""
    s = plan.server
    print(f"\n== {s.label}: starting", flush=True)
    t = time.perf_counter()
    result: dict[str, Any] = {"name": s.name, "label": s.label, "argv": s.argv, "levels": {}}
    try:
        s.start(out_dir / "logs")
    except RuntimeError as exc:
        print(f"  could not start: {exc}", flush=True)
        result["error"] = str(exc)[:2000]
        return result
    result["startup_s"] = time.perf_counter() - t
    result["rss_after_start_mib"] = s.memory_kib().get("VmRSS", 0) / 1024
    warm = Rec(start=time.perf_counter(), prompt=0)
    async with httpx.AsyncClient(timeout=120) as c:
        await stream_chat(c, s.root + "/v1/chat/completions", chat_body(PROMPTS[0], seed=1, max_tokens=16), warm)
    if warm.error:
        print(f"  warm-up failed: {warm.error}", flush=True)
    if plan.prefix:
        wait_for_quiet(max_wait=args.wait_quiet_level)
        p = await prefix_test(s)
        result["prefix"] = p
        print(
            "  shared prefix: "
            + ", ".join(
                f"{k} TTFT {v['ttft_s']:.3f}s ({v['prompt_tokens'] or '?'} prompt tok)"
                for k, v in p.items()
                if k in ("A", "B", "X", "C") and v["ttft_s"] is not None
            )
            + (f"; B/A = {p['b_over_a']:.3f}" if p["b_over_a"] else "")
            + (f"; engine reused {p['engine_prompt_tokens_reused']} prompt tokens" if "engine_prompt_tokens_reused" in p else ""),
            flush=True,
        )
    return result


async def one_level(plan: Plan, result: dict[str, Any], conc: int, args: argparse.Namespace) -> None:
    s = plan.server
    if not s.alive():
        if not result.get("died"):
            print(f"  {s.label} died:\n{s.log_tail(1500)}", flush=True)
        result["died"] = True
        return
    best: dict[str, Any] | None = None
    for attempt in range(1 + args.retries):
        busy = wait_for_quiet(max_wait=args.wait_quiet_level)
        if busy >= NOISY:
            print(f"  (other processes keep {busy:.2f} cores busy)", flush=True)
        m = await run_level(s, conc, duration=args.duration, drain_cap=args.drain_cap, max_tokens=args.max_tokens)
        m["attempt"] = attempt + 1
        if best is None or m["other_cpu_cores"] < best["other_cpu_cores"]:
            best = m
        if m["other_cpu_cores"] < NOISY or attempt == args.retries:
            break
        print(f"  {s.name:<21} disturbed (other processes used {m['other_cpu_cores']:.2f} cores): measuring again", flush=True)
    assert best is not None
    m = result["levels"][conc] = best
    print(
        f"  {s.name:<21} {m['tok_s']:6.1f} tok/s  TTFT p50 {fmt_s(m['ttft_p50'])} p99 {fmt_s(m['ttft_p99'])}  "
        f"ITL p50 {fmt_ms(m['itl_p50'])} p99 {fmt_ms(m['itl_p99'])}  done {m['completed']} err {m['errors']} "
        f"trunc {m['truncated']} cancelled {m['cancelled_at_cap']}  srv CPU {m['server_cpu_cores']:.2f} "
        f"(HTTP thread {m['server_main_thread_cpu_cores']:.2f}) "
        f"client {m['client_cpu_cores']:.2f} other {m['other_cpu_cores']:.2f}  RSS {m['rss_mib']:.0f} MiB"
        + (f"  tok/step {m['engine']['tokens_per_step']:.2f}" if m.get("engine", {}).get("tokens_per_step") else ""),
        flush=True,
    )
    if m["error_samples"]:
        print(f"     errors: {m['error_samples']}", flush=True)


async def finalize(plan: Plan, result: dict[str, Any]) -> None:
    s = plan.server
    if s.alive():
        mem = s.memory_kib()
        result["peak_rss_mib"] = mem.get("VmHWM", 0) / 1024
        result["final_rss_mib"] = mem.get("VmRSS", 0) / 1024
        result["stats"] = await faceplate_stats(s)
    s.stop()
    result["exit_code"] = s.proc.returncode if s.proc else None


def fmt_s(v: float | None) -> str:
    return "-" if v is None else "never" if math.isinf(v) else f"{v:.2f}s"


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}ms"


# ---------------------------------------------------------------------------- report


def table(report: dict[str, Any]) -> str:
    raw = {r["n"]: r for r in (report.get("raw") or {}).get("results", [])}
    lines = [
        "| server | clients | tok/s | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | completed | errors | truncated"
        " | cancelled at cap | server CPU | other CPU | RSS MiB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for srv in report["servers"]:
        for conc, m in sorted(srv["levels"].items(), key=lambda kv: int(kv[0])):
            ge = "≥" if m["ttft_censored"] else ""
            lines.append(
                f"| {srv['label']} | {conc} | {m['tok_s']:.1f} | {ge}{fmt_s(m['ttft_p50'])} | {ge}{fmt_s(m['ttft_p99'])} | "
                f"{fmt_ms(m['itl_p50'])} | {fmt_ms(m['itl_p99'])} | {m['completed']} | {m['errors']} | {m['truncated']} | "
                f"{m['cancelled_at_cap']} | {m['server_cpu_cores']:.2f} | {m.get('other_cpu_cores', 0):.2f} | "
                f"{m['rss_mib']:.0f} |"
            )
    for n, r in sorted(raw.items()):
        lines.append(
            f"| raw `llama_decode` ceiling | {n} seq | {r['tok_s']:.1f} | | | {r['ms_per_step']:.0f}ms/step"
            f" | | | | | | | {r.get('other_cpu_cores', 0):.2f} | |"
        )
    return "\n".join(lines)


def prefix_table(report: dict[str, Any]) -> str:
    rows = [
        "| server | A: cold, ~1k-token system prompt | B: same prefix, next question"
        " | C: same prefix after another request | B/A |",
        "|---|--:|--:|--:|--:|",
    ]
    for srv in report["servers"]:
        p = srv.get("prefix")
        if not p:
            continue

        def cell(k: str, p: dict[str, Any] = p) -> str:
            v = p[k]
            return "error" if v["ttft_s"] is None else f"{v['ttft_s']:.3f}s ({v['prompt_tokens'] or '?'} tok)"

        rows.append(
            f"| {srv['label']} | {cell('A')} | {cell('B')} | {cell('C')} | {p['b_over_a']:.3f} |"
            if p["b_over_a"]
            else f"| {srv['label']} | {cell('A')} | {cell('B')} | {cell('C')} | - |"
        )
    return "\n".join(rows) if len(rows) > 2 else ""


def targets(report: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, goal, passed)."""
    by = {s["name"]: s for s in report["servers"]}
    fp = by.get(f"faceplate-np{report['args']['n_parallel']}", {}).get("levels", {})
    peer = by.get("llamacpp-nointerrupt", {}).get("levels", {})
    raw = {r["n"]: r["tok_s"] for r in (report.get("raw") or {}).get("results", [])}
    out: list[tuple[str, str, str, bool | None]] = []

    def ratio(name: str, a: float | None, b: float | None, goal: float, *, le: bool = False) -> None:
        if a is None or not b:
            out.append((name, "not measured", ("≤ " if le else "≥ ") + f"{goal:.3g}", None))
            return
        r = a / b
        out.append((name, f"{r:.2f} ({a:.3g} / {b:.3g})", ("≤ " if le else "≥ ") + f"{goal:.3g}", r <= goal if le else r >= goal))

    def lv(levels: dict, c: int, key: str) -> float | None:
        m = levels.get(c)
        return m[key] if m else None

    ratio("1 client: Faceplate tok/s ÷ raw 1-seq decode", lv(fp, 1, "tok_s"), raw.get(1), 0.90)
    cpp = by.get("llama-server", {}).get("levels", {})
    ratio("1 client: Faceplate tok/s ÷ llama-server's", lv(fp, 1, "tok_s"), lv(cpp, 1, "tok_s"), 1.0)
    ratio("1 client: Faceplate TTFT p50 ÷ llama-server's", lv(fp, 1, "ttft_p50"), lv(cpp, 1, "ttft_p50"), 1.0, le=True)
    ratio("8 clients: Faceplate tok/s ÷ llama-server's", lv(fp, 8, "tok_s"), lv(cpp, 8, "tok_s"), 1.15)
    ratio("8 clients: Faceplate tok/s ÷ raw 8-seq ceiling (issue 15's bar)", lv(fp, 8, "tok_s"), raw.get(8), 0.95)
    ratio("8 clients: Faceplate tok/s ÷ llama-cpp-python (non-interrupting)", lv(fp, 8, "tok_s"), lv(peer, 8, "tok_s"), 2.5)
    if raw.get(8) and lv(peer, 8, "tok_s"):
        bound = raw[8] / lv(peer, 8, "tok_s")
        out.append(
            ("(bound) raw 8-seq ceiling ÷ llama-cpp-python at 8: the most any server here could reach", f"{bound:.2f}", "", None)
        )
    ratio("8 clients: Faceplate tok/s ÷ raw 8-seq ceiling", lv(fp, 8, "tok_s"), raw.get(8), 0.80)
    ratio("8 clients: Faceplate TTFT p50 ÷ llama-cpp-python's", lv(fp, 8, "ttft_p50"), lv(peer, 8, "ttft_p50"), 0.2, le=True)
    for s in report["servers"]:
        if not s["name"].startswith("faceplate"):
            continue
        m = s["levels"].get(32)
        if m:
            ok = m["errors"] == 0 and m["truncated"] == 0 and m.get("server_alive", True)
            out.append(
                (f"32 clients, {s['label']}: errors / truncated / peak RSS",
                 f"{m['errors']} / {m['truncated']} / {s.get('peak_rss_mib', 0):.0f} MiB"
                 f" (after start {s.get('rss_after_start_mib', 0):.0f})",
                 "0 / 0 / bounded", ok)
            )  # fmt: skip
    p = by.get(f"faceplate-np{report['args']['n_parallel']}", {}).get("prefix")
    ratio("shared prefix: Faceplate TTFT B ÷ A", p and p["B"]["ttft_s"], p and p["A"]["ttft_s"], 1 / 3, le=True)
    return out


def targets_table(rows: list[tuple[str, str, str, bool | None]]) -> str:
    lines = ["| target | measured | goal | |", "|---|---|---|---|"]
    for name, measured, goal, ok in rows:
        lines.append(f"| {name} | {measured} | {goal} | {'pass' if ok else 'MISS' if ok is not None else '-'} |")
    return "\n".join(lines)


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for srv in report["servers"]:
        lv = sorted((int(c), m) for c, m in srv["levels"].items())
        if not lv:
            continue
        xs = [c for c, _ in lv]
        ax1.plot(xs, [m["tok_s"] for _, m in lv], marker="o", label=srv["label"])
        ttft = [m["ttft_p50"] if m["ttft_p50"] is not None and not math.isinf(m["ttft_p50"]) else math.nan for _, m in lv]
        ax2.plot(xs, ttft, marker="o", label=srv["label"])
    raw = sorted((r["n"], r["tok_s"]) for r in (report.get("raw") or {}).get("results", []))
    if raw:
        ax1.plot([n for n, _ in raw], [t for _, t in raw], "k--", marker="x", label="raw llama_decode ceiling (N seq/batch)")
    ticks = sorted({int(c) for srv in report["servers"] for c in srv["levels"]} | {n for n, _ in raw})
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("concurrent streaming clients")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_ylabel("output tokens/s (sum over clients)")
    ax1.set_title("Throughput")
    ax1.set_ylim(bottom=0)
    ax2.set_ylabel("time to first token, p50 (s)")
    ax2.set_yscale("log")
    ax2.set_title("TTFT p50 (log scale)")
    ax1.legend(fontsize=8)
    mc = report["machine"]
    fig.suptitle(
        f"SmolLM2-135M Q4_1, {report['args']['threads']} threads, max_tokens {report['args']['max_tokens']}"
        f" - {mc['cpu']}, {mc['cores']} cores - {mc['date']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def efficiency_table(report: dict[str, Any]) -> str:
    """Faceplate's own counters (/health) against the raw rates: how much of the wall time the work
    it did would take at raw speed (decode at the N-sequence rate, new prompt tokens at the prefill rate)."""
    raw = {r["n"]: r for r in (report.get("raw") or {}).get("results", [])}
    rows = [
        "| server | clients | generated | prompt tokens (reused) | wall s | s at raw speed | efficiency | steps | tokens/step |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for srv in report["servers"]:
        if not srv["name"].startswith("faceplate"):
            continue
        n_par = int(srv["name"].rsplit("np", 1)[1])
        for conc, m in sorted(srv["levels"].items()):
            e, r = m.get("engine"), raw.get(min(int(conc), n_par))
            if not e or not r or not e.get("steps"):
                continue
            new = e["prompt_tokens"] - e["prompt_tokens_reused"]
            need = e["generated_tokens"] / r["tok_s"] + new / r["prefill_tok_s"]
            rows.append(
                f"| {srv['label']} | {conc} | {e['generated_tokens']} | {e['prompt_tokens']} ({e['prompt_tokens_reused']}) | "
                f"{m['wall_s']:.1f} | {need:.1f} | {need / m['wall_s']:.0%} | {e['steps']} | {e['tokens_per_step']:.2f} |"
            )
    return "\n".join(rows) if len(rows) > 2 else ""


def markdown(report: dict[str, Any]) -> str:
    mc, a = report["machine"], report["args"]
    parts = [
        f"Measured {mc['date']} on {mc['cpu']}, {mc['cores']} cores ({mc['flags']}), {mc['memory']}, Python {mc['python']}; "
        f"`{a['command']}`: {a['duration']:g} s per level, drain cap {a['drain_cap']:g} s, max_tokens {a['max_tokens']}, "
        f"temperature 0.7, {a['threads']} threads, total {report['total_s'] / 60:.1f} min.",
        "",
        table(report),
        "",
    ]
    other = [m.get("other_cpu_cores", 0) for srv in report["servers"] for m in srv["levels"].values()]
    other += [r.get("other_cpu_cores", 0) for r in (report.get("raw") or {}).get("results", [])]
    if other:
        noisy = sum(1 for o in other if o >= 0.3)
        parts += [
            f"Other processes on the machine used {sum(other) / len(other):.2f} cores on average during the measurements "
            f"(max {max(other):.2f}; {noisy} of {len(other)} measurements at ≥ 0.3 cores: those are slowed down).",
            "",
        ]
    pt = prefix_table(report)
    if pt:
        parts += ["Shared prefix (time to first token, temperature 0, max_tokens 8):", "", pt, ""]
    et = efficiency_table(report)
    if et:
        parts += [
            'Where Faceplate\'s time went (its /health counters; "s at raw speed" is what the same decode and prompt work '
            "takes in raw_decode.py, so efficiency = raw-speed time ÷ wall time, drain included):",
            "",
            et,
            "",
        ]
    raw = (report.get("raw") or {}).get("results", [])
    if raw:
        us = sum(r["sampler_chain_us_per_token"] for r in raw) / len(raw)
        parts += [
            f"Faceplate's sampler chain (temperature + seeded draw over the whole vocabulary) costs {us:.0f} µs per token.",
            "",
        ]
    parts += ["Targets (ratios from this run):", "", targets_table(targets(report))]
    return "\n".join(parts)


def save_readme(md: str) -> None:
    readme = BENCH_DIR / "README.md"
    text = readme.read_text() if readme.exists() else ""
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    block = f"{start}\n{md}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n## Latest results\n\n" + block + "\n"
    readme.write_text(text)


# ---------------------------------------------------------------------------- cli


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: levels 1,8, 8 s each, no peer with interrupts, short raw run"
    )
    ap.add_argument("--levels", default=None, help="concurrency levels (default 1,2,4,8,16,32)")
    ap.add_argument("--duration", type=float, default=None, help="seconds of load per level (default 20)")
    ap.add_argument(
        "--drain-cap", type=float, default=None, help="seconds in-flight requests get after the deadline (default 15)"
    )
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-parallel", type=int, default=8, help="Faceplate's --n-parallel for the main run")
    ap.add_argument("--wide-n-parallel", type=int, default=32, help="a second Faceplate run with this --n-parallel (0: skip)")
    ap.add_argument("--wide-levels", default="16,32", help="levels for the second Faceplate run")
    ap.add_argument(
        "--servers",
        default="faceplate,faceplate-wide,llama-server,llamacpp-nointerrupt,llamacpp",
        help="which servers, in order (llama-server is built once and cached: scripts/build_llama_server.py)",
    )
    ap.add_argument("--raw-steps", type=int, default=None, help="decode steps per N in the raw ceiling (default 128)")
    ap.add_argument("--skip-raw", action="store_true")
    ap.add_argument("--wait-quiet", type=float, default=120.0, help="wait up to this many s for an idle machine first")
    ap.add_argument("--wait-quiet-level", type=float, default=30.0, help="and up to this many s before each level")
    ap.add_argument("--retries", type=int, default=None, help="measure again when other processes disturbed it (default 2)")
    ap.add_argument(
        "--save", action="store_true", help="copy the chart to bench/chat_load.png and the table into bench/README.md"
    )
    ap.add_argument("--out", default=str(OUT_DIR))
    ap.add_argument("--report", metavar="JSON", help="no run: print the table and chart of a saved run (with --save: save them)")
    args = ap.parse_args(argv)
    if args.quick:
        args.levels = args.levels or "1,8"
        args.duration = args.duration or 8.0
        args.drain_cap = args.drain_cap if args.drain_cap is not None else 8.0
        args.raw_steps = args.raw_steps or 32
        args.retries = args.retries if args.retries is not None else 0
        if args.servers == ap.get_default("servers"):
            args.servers = "faceplate,llama-server,llamacpp-nointerrupt"
    args.levels = args.levels or "1,2,4,8,16,32"
    args.duration = args.duration or 20.0
    args.drain_cap = args.drain_cap if args.drain_cap is not None else 15.0
    args.raw_steps = args.raw_steps or 128
    args.retries = args.retries if args.retries is not None else 2
    return args


def finish(report: dict[str, Any], out_dir: Path, *, save: bool) -> None:
    chart_path = out_dir / "chat_load.png"
    chart(report, chart_path)
    md = markdown(report)
    (out_dir / "chat_load-latest.md").write_text(md + "\n")
    print("\n" + md, flush=True)
    print(f"\nwrote {chart_path}", flush=True)
    if save:
        shutil.copyfile(chart_path, BENCH_DIR / "chat_load.png")
        save_readme(md)
        print(f"saved {BENCH_DIR / 'chat_load.png'} and the table in {BENCH_DIR / 'README.md'}", flush=True)


def load_report(path: Path) -> dict[str, Any]:
    report = json.loads(path.read_text())
    for srv in report["servers"]:
        srv["levels"] = {int(k): v for k, v in srv.get("levels", {}).items()}
    return report


async def amain(args: argparse.Namespace) -> int:
    if args.report:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        finish(load_report(Path(args.report)), out_dir, save=args.save)
        return 0
    t_start = time.perf_counter()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    levels = [int(x) for x in args.levels.split(",") if x]
    wide_levels = [c for c in (int(x) for x in args.wide_levels.split(",") if x) if c in levels]
    path = model_path()
    mc = machine()
    print(f"machine: {mc}\nmodel: {path}", flush=True)
    data_dir = out_dir / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    plans: list[Plan] = []
    for key in [k.strip() for k in args.servers.split(",") if k.strip()]:
        if key == "faceplate":
            plans.append(Plan(faceplate(path, args.threads, args.n_parallel, data_dir), levels, prefix=True))
        elif key == "faceplate-wide" and args.wide_n_parallel and wide_levels:
            plans.append(Plan(faceplate(path, args.threads, args.wide_n_parallel, data_dir), wide_levels, prefix=False))
        elif key == "llamacpp-nointerrupt":
            plans.append(Plan(llamacpp(path, args.threads, interrupt=False), levels, prefix=True))
        elif key == "llamacpp":
            plans.append(Plan(llamacpp(path, args.threads, interrupt=True), levels, prefix=False))
        elif key == "llama-server":
            plans.append(Plan(llama_server(path, args.threads, args.n_parallel), levels, prefix=True))
        elif key != "faceplate-wide":
            raise SystemExit(f"unknown server {key!r}")

    report: dict[str, Any] = {
        "machine": mc,
        "model": str(path),
        "args": {**vars(args), "command": "bench/chat_load.py " + " ".join(sys.argv[1:])},
    }
    busy = wait_for_quiet(max_wait=args.wait_quiet)
    if busy >= 0.3:
        print(f"WARNING: other processes keep {busy:.2f} cores busy; results will be noisy", flush=True)
    report["cpu_busy_before"] = busy
    # Every server is started first (idle ones use no CPU), then each level runs on every server
    # in turn, right after the raw ceiling for that N: on a shared, noisy machine, what is compared
    # is measured minutes apart at most, not a whole run apart.
    raw: list[dict[str, Any]] = []
    report["raw"] = {"results": raw}
    results = {id(p): {"name": p.server.name, "label": p.server.label, "levels": {}} for p in plans}
    report["servers"] = [results[id(p)] for p in plans]
    # Ctrl-C / SIGTERM: stop at the next step and still stop every server this run started.
    stopping: list[int] = []
    loop, main_task = asyncio.get_running_loop(), asyncio.current_task()
    assert main_task is not None

    def on_signal(signum: int) -> None:
        stopping.append(signum)
        main_task.cancel()

    def check() -> None:
        if stopping:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        for p in plans:
            check()
            results[id(p)].update(await prepare(p, args, out_dir))
        for conc in levels:
            check()
            print(f"\n== {conc} client{'s' if conc > 1 else ''}", flush=True)
            if not args.skip_raw:
                raw.extend(run_raw(args, out_dir, [conc]))
            for p in plans:
                check()
                if conc in p.levels and "error" not in results[id(p)]:
                    await one_level(p, results[id(p)], conc, args)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: stopping the servers", flush=True)
        for p in plans:
            p.server.stop()
        return 130
    finally:
        for p in plans:
            if p.server.alive():
                await finalize(p, results[id(p)])
            p.server.stop()
    report["total_s"] = time.perf_counter() - t_start

    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out_dir / f"chat_load-{stamp}.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "chat_load-latest.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {out_dir / f'chat_load-{stamp}.json'}", flush=True)
    finish(report, out_dir, save=args.save)
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
