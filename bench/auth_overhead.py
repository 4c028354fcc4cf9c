"""What do API keys, rate limits and usage accounting cost? Requests/s with them on vs off.

Starts two servers side by side in one run (machines here are noisy: compare ratios):

* ``off``: no key anywhere, so requests are anonymous: no key lookup, no limiter, usage
  still recorded (Call.finish always records);
* ``on``:  a stored key (``sk-fp-...``, SQLite store) with rpm/tpm limits high enough never
  to refuse: every request pays the key lookup (cached), both token buckets, the
  rate-limit headers, and usage.

and measures, with several concurrent httpx clients, a cheap endpoint (``GET /v1/models``:
auth only) and a 1-token chat completion (auth + limiter + usage + the model), alternating
the two servers round by round. ``--engine fake`` serves the deterministic fake engine
instead of the bundled model, so the overhead is not hidden behind the model's time;
``--engine both`` (the default) measures both. ``--redis-url`` makes the ``on`` server
keep its limits in Redis.

    .venv/bin/python bench/auth_overhead.py [--clients 8] [--seconds 5] [--rounds 3]

Writes the table to stdout and to bench/out/auth_overhead.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.serverproc import ServerProcess, free_port, launch  # noqa: E402

from faceplate.config import DEFAULT_CHAT_MODEL_ID, bundled_chat_model_path  # noqa: E402

CHAT = DEFAULT_CHAT_MODEL_ID
BODY = {"model": CHAT, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1}


def serve_fake(argv: list[str]) -> None:
    """The ``faceplate serve`` wiring (store, auth, limiter, usage) around the fake engine."""
    import uvicorn

    from faceplate.app import create_app
    from faceplate.config import load_settings
    from faceplate.engines.fake import FakeEngine
    from faceplate.engines.registry import Registry
    from faceplate.server import build_services, close_services

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-url")
    a = p.parse_args(argv)
    settings = load_settings(overrides={"port": a.port, "redis_url": a.redis_url, "log_level": "warning"})
    services = build_services(settings, Registry([FakeEngine(CHAT, n_parallel=64, max_queue=1024)]))
    app = create_app(services, on_shutdown=[lambda: close_services(services)])
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", http="httptools", loop="uvloop", lifespan="on")


def start(engine: str, data_dir: Path, log_dir: Path, redis_url: str | None) -> ServerProcess:
    port = free_port()
    env = {**os.environ, "FACEPLATE_DATA_DIR": str(data_dir)}
    extra = ["--redis-url", redis_url] if redis_url else []
    if engine == "fake":
        cmd = [sys.executable, __file__, "--serve-fake", "--port", str(port), *extra]
    else:
        model = f"{CHAT}={bundled_chat_model_path()}"
        cmd = [
            sys.executable,
            "-m",
            "faceplate",
            "serve",
            "--port",
            str(port),
            "--model",
            model,
            "--log-level",
            "warning",
            *extra,
        ]
    return launch(cmd, port, log_dir / f"{engine}-{data_dir.name}.log", env=env, cwd=ROOT)


@dataclass
class Result:
    rps: float
    p50_ms: float
    errors: int
    cpu_us: float  # server CPU time (user + system, all threads) per request


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(srv: ServerProcess, key: str | None, what: str, clients: int, seconds: float) -> Result:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            if what == "models":
                r = await client.get("/v1/models")
            else:
                r = await client.post("/v1/chat/completions", json=BODY)
            if r.status_code != 200:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=srv.root, headers=headers, limits=limits, timeout=60) as client:
        for _ in range(2):  # warm up: connections, the key cache
            await (client.get("/v1/models") if what == "models" else client.post("/v1/chat/completions", json=BODY))
        started, cpu0 = time.monotonic(), cpu_seconds(srv.proc.pid)
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        elapsed, cpu = time.monotonic() - started, cpu_seconds(srv.proc.pid) - cpu0
    done = max(1, len(latencies))
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    return Result(len(latencies) / elapsed, p50, errors, cpu / done * 1e6)


async def _asgi_call(app: Any, path: str, method: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # never disconnects
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def asgi_cpu_us(mode: str, what: str, n: int, redis_url: str | None) -> float:
    """CPU per request of the app alone (no HTTP server, no client): the app called as an ASGI function."""
    from faceplate.app import create_app
    from faceplate.config import Settings
    from faceplate.engines.fake import FakeEngine
    from faceplate.engines.registry import Registry
    from faceplate.server import build_services, close_services

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=tmp, redis_url=redis_url if mode == "on" else None)
        svc = build_services(settings, Registry([FakeEngine(CHAT, words=1)]))
        headers: list[tuple[bytes, bytes]] = []
        if mode == "on":
            assert svc.store is not None
            _, secret = svc.store.keys.create("bench", rpm=10**9, tpm=10**12)
            svc.auth.enable_store()
            headers = [(b"authorization", f"Bearer {secret}".encode())]
        app = create_app(svc)
        path, method, body = (
            ("/v1/models", "GET", b"") if what == "models" else ("/v1/chat/completions", "POST", json.dumps(BODY).encode())
        )
        for _ in range(200):
            assert await _asgi_call(app, path, method, headers, body) == 200
        cpu0 = time.process_time()
        for _ in range(n):
            await _asgi_call(app, path, method, headers, body)
        cpu = time.process_time() - cpu0
        await close_services(svc)
    return cpu / n * 1e6


def asgi_table(rounds: int, redis_url: str | None) -> list[str]:
    lines = [
        "",
        f"In-process app CPU per request (fake engine, ASGI call, no HTTP; best of {rounds} rounds of 3000 requests):",
        "",
        "| request | off CPU µs/req | on CPU µs/req | on − off µs | on/off |",
        "|---|---:|---:|---:|---:|",
    ]
    for what in ("models", "chat"):
        best = {"off": float("inf"), "on": float("inf")}
        for _ in range(rounds):
            for mode in ("off", "on"):
                best[mode] = min(best[mode], asyncio.run(asgi_cpu_us(mode, what, 3000, redis_url)))
        label = "GET /v1/models" if what == "models" else "chat, max_tokens=1"
        off, on = best["off"], best["on"]
        lines.append(f"| {label} | {off:.0f} | {on:.0f} | {on - off:.0f} | {on / off:.3f} |")
    return lines


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-fake":
        serve_fake(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=["fake", "real", "both"], default="both")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--model-seconds", type=float, default=10.0, help="round length for chat on the real model (slower)")
    p.add_argument("--redis-url", help="keep the 'on' server's limits in Redis")
    args = p.parse_args()

    from faceplate.store import Store

    engines = ["fake", "real"] if args.engine == "both" else [args.engine]
    rows: list[tuple[str, str, Result, Result]] = []
    with tempfile.TemporaryDirectory(prefix="faceplate-bench-") as tmp:
        root = Path(tmp)
        (root / "off").mkdir()
        store = Store.open(f"sqlite:///{root / 'on' / 'faceplate.db'}")
        _, secret = store.keys.create("bench", rpm=10**9, tpm=10**12)
        store.close()
        for engine in engines:
            off = start(engine, root / "off", root, None)
            on = start(engine, root / "on", root, args.redis_url)
            try:
                for what in ("models", "chat"):
                    results: dict[str, list[Result]] = {"off": [], "on": []}
                    seconds = args.model_seconds if (engine, what) == ("real", "chat") else args.seconds
                    for _ in range(args.rounds):
                        results["off"].append(asyncio.run(load(off, None, what, args.clients, seconds)))
                        results["on"].append(asyncio.run(load(on, secret, what, args.clients, seconds)))

                    def med(rs: list[Result]) -> Result:
                        return Result(
                            statistics.median(r.rps for r in rs),
                            statistics.median([r.p50_ms for r in rs if r.p50_ms == r.p50_ms] or [float("nan")]),
                            sum(r.errors for r in rs),
                            statistics.median(r.cpu_us for r in rs),
                        )

                    rows.append((engine, what, med(results["off"]), med(results["on"])))
            finally:
                off.stop()
                on.stop()

    limiter = "Redis" if args.redis_url else "in-process"
    lines = [
        f"Auth overhead: {args.clients} concurrent clients, {args.rounds} rounds of {args.seconds:g} s per server "
        f"({args.model_seconds:g} s for chat on the real model), alternating, median of rounds; "
        f"'on' = stored key + {limiter} rpm/tpm limits + usage; CPU = server process CPU time per request.",
        "",
        "| engine | request | off req/s | on req/s | on/off | off p50 ms | on p50 ms | off CPU µs/req | on CPU µs/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for engine, what, off_r, on_r in rows:
        label = "GET /v1/models" if what == "models" else "chat, max_tokens=1"
        lines.append(
            f"| {engine} | {label} | {off_r.rps:.0f} | {on_r.rps:.0f} | {on_r.rps / off_r.rps:.3f} | "
            f"{off_r.p50_ms:.1f} | {on_r.p50_ms:.1f} | {off_r.cpu_us:.0f} | {on_r.cpu_us:.0f} | {off_r.errors + on_r.errors} |"
        )
    lines += asgi_table(args.rounds, args.redis_url)
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "auth_overhead.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
