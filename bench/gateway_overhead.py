"""What does a gateway add? Direct vs Faceplate (--upstream) vs the LiteLLM proxy, in one run.

    .venv/bin/python bench/gateway_overhead.py            # ~4 minutes: 5 rounds of 3 s phases
    .venv/bin/python bench/gateway_overhead.py --quick    # ~1 minute: 3 rounds of 1 s phases
    .venv/bin/python bench/gateway_overhead.py --save     # then update bench/gateway_overhead.png and README
    .venv/bin/python bench/gateway_overhead.py --report bench/out/gateway_overhead.json --save   # re-render

One upstream, the deterministic ``mockai`` (tests/upstreams, flavour openai), and three targets:

* A ``direct``: the client talks to mockai itself;
* B ``faceplate``: ``python -m faceplate serve --upstream mock=openai+URL`` (this checkout's src/);
* C ``litellm``: ``litellm --config cfg.yaml --num_workers 1`` from its own venv
  (bench/litellm_proxy.py, pinned with hashes in bench/litellm-requirements.txt), no database.

With 2+ CPUs the gateways run on one CPU (``taskset``) and mockai + this load generator on another.
Phases (closed loop, ``--seconds`` each): non-stream at 1 and 16 clients (~200-byte request, 16
tokens back), streams of 100 chunks (``--interval-ms`` apart at the upstream) at 1 and 16 clients.
Rounds interleave the targets (order rotated every round); each figure is the median of the round
figures. CPU = utime + stime of the gateway's processes (/proc, children included) over the phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(ROOT))

import gateway_overhead_report as report  # noqa: E402
import litellm_proxy  # noqa: E402
from common import OUT_DIR, Server, machine, wait_for_quiet  # noqa: E402
from gateway_load import TreeCPU, cpu_list, pin, run_phase  # noqa: E402

MODEL = "mock"
TARGETS = ("direct", "faceplate", "litellm")
# (phase key, stream?, clients)
PHASES = (("ns_c1", False, 1), ("ns_c16", False, 16), ("st_c1", True, 1), ("st_c16", True, 16))
NONSTREAM_TOKENS = 16
API_KEY = "sk-bench-gateway-overhead"  # both gateways check it (sent to the direct target too, which ignores it)
STREAM_CHUNKS = 100
IDLE_S = 3.0


def mock_command() -> list[str]:
    try:
        from tests.upstreams.launch import mockai_command
    except ImportError as exc:  # the mock lives on its own branch until it lands
        raise SystemExit(f"tests/upstreams (mockai) is missing here: {exc}") from exc
    cmd = mockai_command(0, "openai", model=MODEL)
    cmd[cmd.index("--port") + 1] = "{port}"
    return cmd


def pinned(argv: list[str], cpus: set[int] | None) -> list[str]:
    if not cpus:
        return argv
    return ["taskset", "-c", ",".join(map(str, sorted(cpus))), *argv]


def make_servers(args: argparse.Namespace, tmp: Path, gw_cpus: set[int] | None, lg_cpus: set[int] | None) -> dict[str, Server]:
    servers: dict[str, Server] = {"mock": Server("mockai", "mockai", pinned(mock_command(), lg_cpus), "/health")}
    if "faceplate" in args.targets:
        argv = [sys.executable, "-m", "faceplate", "serve", "--host", "127.0.0.1", "--port", "{port}"]
        argv += ["--upstream", f"{MODEL}=openai+{{mock}}", "--api-key", API_KEY, "--log-level", "warning"]
        env = {"PYTHONPATH": str(ROOT / "src"), "FACEPLATE_DATA_DIR": str(tmp / "faceplate-data")}
        servers["faceplate"] = Server("faceplate", "Faceplate", pinned(argv, gw_cpus), "/health", env)
    if "litellm" in args.targets:
        litellm_proxy.ensure_venv()
        argv = litellm_proxy.proxy_argv(tmp / "litellm.yaml", 0)
        argv[argv.index("--port") + 1] = "{port}"
        env = litellm_proxy.PROXY_ENV
        servers["litellm"] = Server("litellm", "LiteLLM proxy", pinned(argv, gw_cpus), "/health/liveliness", env)
    return servers


def start_all(servers: dict[str, Server], tmp: Path, log_dir: Path) -> None:
    mock = servers["mock"]
    mock.start(log_dir, timeout=60)
    for name, srv in servers.items():
        if name == "mock":
            continue
        srv.argv = [a.replace("{mock}", mock.root) for a in srv.argv]
        if name == "litellm":
            litellm_proxy.write_config(tmp / "litellm.yaml", mock.root, MODEL, API_KEY)
        t0 = time.monotonic()
        srv.start(log_dir, timeout=180)
        print(f"{srv.label} ready in {time.monotonic() - t0:.1f} s on {srv.root}", file=sys.stderr)


def configure_mock(mock: Server, *, stream: bool, interval_ms: float) -> None:
    cfg = {"chunks": STREAM_CHUNKS, "interval_ms": interval_ms} if stream else {"chunks": NONSTREAM_TOKENS, "interval_ms": 0}
    httpx.post(mock.root + "/mock/config", json=cfg, timeout=10).raise_for_status()


def versions(servers: dict[str, Server]) -> dict[str, str]:
    import aiohttp

    out = {"aiohttp (load generator)": aiohttp.__version__}
    if "litellm" in servers:
        out["litellm"] = litellm_proxy.installed_version()
    if "faceplate" in servers:
        rev = os.popen(f"git -C {ROOT} rev-parse --short HEAD 2>/dev/null").read().strip()
        out["faceplate"] = rev or "?"
    return out


async def measure(args: argparse.Namespace, servers: dict[str, Server]) -> dict[str, Any]:
    """Idle CPU, warm-up, then the interleaved rounds: {"phases": target -> phase -> [round summary]}."""
    mock = servers["mock"]
    roots = {t: (mock.root if t == "direct" else servers[t].root) for t in args.targets}
    pids = {t: (None if t == "direct" else servers[t].proc.pid) for t in args.targets}  # type: ignore[union-attr]
    upstream_pid = mock.proc.pid  # type: ignore[union-attr]
    results: dict[str, dict[str, list[dict[str, Any]]]] = {t: {k: [] for k, _, _ in PHASES} for t in args.targets}

    async def phase(target: str, stream: bool, clients: int, seconds: float) -> dict[str, Any]:
        ph = await run_phase(
            target,
            roots[target],
            MODEL,
            stream=stream,
            clients=clients,
            seconds=seconds,
            gateway_pid=pids[target],
            upstream_pid=upstream_pid,
            api_key=API_KEY,
            warmup=1,
        )
        return ph.summary()

    # Idle: what each gateway burns with no request (health and load polls, timers).
    idle = {t: TreeCPU(pid) for t, pid in pids.items() if pid}
    for c in idle.values():
        c.start()
    await asyncio.sleep(IDLE_S)
    idle_ms_per_s = {t: c.seconds() / IDLE_S * 1e3 for t, c in idle.items()}
    # Warm-up, not recorded: first requests, lazy imports, connection pools.
    for stream in (False, True):
        configure_mock(mock, stream=stream, interval_ms=args.interval_ms)
        for t in args.targets:
            s = await phase(t, stream, 16, 0.5)
            if s["errors"]:
                print(f"warm-up {t}: {s['errors']} errors, e.g. {s['error_sample']}", file=sys.stderr)
    order = list(args.targets)
    for r in range(args.rounds):
        if args.wait_quiet > 0:
            busy = await asyncio.to_thread(wait_for_quiet, args.wait_quiet, 0.3, 1.0)
            if busy >= 0.3:
                print(f"round {r + 1}: other processes use {busy:.2f} cores, measuring anyway", file=sys.stderr)
        t_round = time.monotonic()
        for key, stream, clients in PHASES:
            configure_mock(mock, stream=stream, interval_ms=args.interval_ms)
            for t in order:
                s = await phase(t, stream, clients, args.seconds)
                results[t][key].append(s)
                if s["errors"]:
                    print(f"round {r + 1} {t} {key}: {s['errors']} errors, e.g. {s['error_sample']}", file=sys.stderr)
        took = time.monotonic() - t_round
        print(f"round {r + 1}/{args.rounds} done in {took:.1f} s (order {'/'.join(order)})", file=sys.stderr)
        order = order[1:] + order[:1]
    return {"phases": results, "idle_cpu_ms_per_s": idle_ms_per_s}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 rounds of 1 s phases, no waiting for quiet (about a minute)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0, help="length of one phase (one target, one load)")
    p.add_argument("--interval-ms", type=float, default=5.0, help="upstream delay between stream chunks")
    p.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset of " + ",".join(TARGETS))
    p.add_argument("--wait-quiet", type=float, default=15.0, help="before a round, wait up to S s for other load to stop")
    p.add_argument("--no-pin", action="store_true", help="do not pin gateways and load generator to separate CPUs")
    p.add_argument("--save", action="store_true", help="write bench/gateway_overhead.png and the README block")
    p.add_argument("--report", type=Path, help="re-render a saved JSON run instead of measuring")
    args = p.parse_args()
    if args.report:
        run = json.loads(args.report.read_text())
        report.render(run, save=args.save)
        return 0
    if args.quick:
        args.rounds, args.seconds, args.wait_quiet = 3, 1.0, 0.0
    args.targets = [t for t in args.targets.split(",") if t]
    if "direct" not in args.targets or any(t not in TARGETS for t in args.targets):
        raise SystemExit(f"--targets: 'direct' plus any of {TARGETS}")

    cpus = cpu_list()
    gw_cpus = lg_cpus = None
    if len(cpus) >= 2 and not args.no_pin and shutil.which("taskset"):
        lg_cpus, gw_cpus = {cpus[0]}, {cpus[1]}
        pin(lg_cpus)
    started = time.monotonic()
    log_dir = OUT_DIR / "gateway_overhead-logs"
    with tempfile.TemporaryDirectory(prefix="gwbench-") as tmpdir:
        tmp = Path(tmpdir)
        servers = make_servers(args, tmp, gw_cpus, lg_cpus)
        try:
            start_all(servers, tmp, log_dir)
            results = asyncio.run(measure(args, servers))
            for name, srv in servers.items():
                if not srv.alive():
                    raise SystemExit(f"{name} died during the run:\n{srv.log_tail()}")
            ver = versions(servers)
        finally:
            for srv in servers.values():
                srv.stop()
    run = {
        "machine": machine(),
        "versions": ver,
        "args": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "interval_ms": args.interval_ms,
            "wait_quiet": args.wait_quiet,
            "quick": args.quick,
            "targets": args.targets,
            "pinned": {"gateway": sorted(gw_cpus), "load generator + mockai": sorted(lg_cpus)} if gw_cpus and lg_cpus else None,
            "nonstream_tokens": NONSTREAM_TOKENS,
            "stream_chunks": STREAM_CHUNKS,
        },
        "total_s": time.monotonic() - started,
        "results": results["phases"],
        "idle_cpu_ms_per_s": results["idle_cpu_ms_per_s"],
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "gateway_overhead.json").write_text(json.dumps(run, indent=1))
    report.render(run, save=args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
