"""Routing gain: what prefix affinity buys over round robin and least-loaded across two upstreams.

    .venv/bin/python bench/routing_gain.py --save    # about 8 minutes on the shared 2-core machine; redraws the chart
    .venv/bin/python bench/routing_gain.py --quick   # smoke run: ~200-token system prompts, 3 turns, about 2-3 minutes
    .venv/bin/python bench/routing_gain.py --report bench/out/routing_gain.json --save   # re-render a saved run

Two upstream sets, each behind three Faceplate gateways (``faceplate serve --config``, one per
``[routing] policy``: round_robin, least_loaded, affinity) that share the set's two upstreams:

- **faceplate**: two real ``faceplate serve --model smollm2-135m-instruct=<bundled gguf> --threads 1
  --n-parallel 4``, pinned one per core with ``taskset`` (the gateways and this load generator are not
  pinned and share both cores);
- **mockai**: two ``tests/upstreams/mockai`` with ``--prefill-ms-per-kchar`` (200): a prefill delay
  proportional to the prompt characters not covered by a prefix it has seen, and no CPU cost. This
  isolates what routing does to the cache from the noise of a shared machine.

The workload (bench/routing_gain_workload.py), the same for every policy: 4 tenants, each with its
own ~1.1k-token system prompt; 2 sessions per tenant, 8 in all, run concurrently; 6 turns per session,
one after the other, each adding the assistant's answer and a new short user message; ``max_tokens``
16, temperature 0, streamed with ``stream_options.include_usage``. No ``prompt_cache_key`` or ``user``:
affinity hashes the start of the conversation, its first 2,048 chars (routing.PREFIX_CHARS): here the
tenant's system prompt, so both sessions of a tenant share a preferred upstream.

Rounds. Every round plays the workload once per policy, in a rotated order, and starts the system
prompts with a new tag, so nothing cached by an earlier round matches (and affinity's hash, so each
round draws a new split of sessions over upstreams).

Measured per request: TTFT (request sent to the first content chunk), usage (``prompt_tokens`` and
``prompt_tokens_details.cached_tokens``, which the gateway passes through from the upstream).
"Recomputed" = prompt_tokens − cached_tokens summed over a round; "upstreams evaluated" is the same
from the real upstreams' own ``/health`` counters (``prompt_tokens − prompt_tokens_reused``);
"whole history cached" counts follow-up turns whose cached tokens cover the session's previous
prompt (the session found its own sequence); "split" is the requests each upstream got (the
gateway's ``/health`` pool counters). "Other CPU" is the cores that processes not ours used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))

from common import MODEL_ID, OUT_DIR, cpu_busy_seconds, machine, model_path, proc_cpu_seconds  # noqa: E402
from routing_gain_report import POLICIES, chart, summarize, table  # noqa: E402
from routing_gain_workload import Workload, play_round  # noqa: E402
from tests.gateway import start_gateway  # noqa: E402
from tests.serverproc import ServerProcess, free_port, launch  # noqa: E402
from tests.upstreams.launch import mockai_command  # noqa: E402


def pinned(cmd: list[str], core: int) -> list[str]:
    n = os.cpu_count() or 1
    return ["taskset", "-c", str(core % n), *cmd] if shutil.which("taskset") and n >= 2 else cmd


def start_upstreams(kind: str, args: argparse.Namespace, tmp: Path) -> list[ServerProcess]:
    ups = []
    for i in range(2):
        port = free_port()
        if kind == "faceplate":
            cmd = [
                sys.executable, "-m", "faceplate", "serve", "--host", "127.0.0.1", "--port", str(port),
                "--model", f"{MODEL_ID}={model_path()}", "--threads", "1", "--n-parallel", str(args.n_parallel),
                "--log-level", "warning",
            ]  # fmt: skip
        else:
            cmd = mockai_command(port, model=MODEL_ID, prefill_ms_per_kchar=args.prefill_ms_per_kchar)
        env = {**os.environ, "FACEPLATE_DATA_DIR": str(tmp / f"{kind}-{i}")}
        ups.append(launch(pinned(cmd, i), port, OUT_DIR / f"routing_gain-{kind}-{i}.log", env=env, cwd=ROOT, timeout=240))
    return ups


def counters(kind: str, up: ServerProcess) -> dict[str, int]:
    if kind != "faceplate":
        return {}
    stats = httpx.get(up.root + "/health", timeout=10).json()["models"][MODEL_ID]
    return {k: int(stats[k]) for k in ("prompt_tokens", "prompt_tokens_reused", "completed")}


def split(gw: ServerProcess) -> list[int]:
    """Requests sent to each upstream, then the placements (affinity, balanced, queued), from the gateway's counters."""
    pool = httpx.get(gw.root + "/health", timeout=10).json()["models"][MODEL_ID]
    return [int(u["requests"]) for u in pool["upstreams"]] + [int(v) for v in pool["placements"].values()]


def run_set(kind: str, args: argparse.Namespace, w: Workload, tmp: Path, rounds: int) -> list[dict[str, Any]]:
    ups = start_upstreams(kind, args, tmp)
    gws: dict[str, ServerProcess] = {}
    out: list[dict[str, Any]] = []
    try:
        members = [{"id": MODEL_ID, "url": u.root, "kind": "faceplate" if kind == "faceplate" else "openai"} for u in ups]
        for policy in POLICIES:
            log_dir = tmp / f"gw-{kind}-{policy}"
            log_dir.mkdir()
            gws[policy] = start_gateway(members, log_dir=log_dir, routing={"policy": policy}, args=["--log-level", "warning"])
        # Warm-up, straight to each upstream: the first request of a process pays one-off costs.
        warm = replace(w, tenants=1, sessions_per_tenant=1, turns=1, sentences=4)
        for u in ups:
            asyncio.run(play_round(u.root, warm, "warm-up", 0, f"warm-{u.port}"))
        pids = [os.getpid()] + [p.proc.pid for p in [*ups, *gws.values()]]
        for rnd in range(1, rounds + 1):
            order = POLICIES[rnd - 1 :] + POLICIES[: rnd - 1]
            for policy in order:
                gw = gws[policy]
                c0, s0 = [counters(kind, u) for u in ups], split(gw)
                busy0, own0 = cpu_busy_seconds(), sum(proc_cpu_seconds(p) for p in pids)
                samples, wall = asyncio.run(play_round(gw.root, w, policy, rnd, f"{kind[0]}{rnd}-{policy}"))
                busy, own = cpu_busy_seconds() - busy0, sum(proc_cpu_seconds(p) for p in pids) - own0
                c1, s1 = [counters(kind, u) for u in ups], split(gw)
                delta = [{k: b[k] - a[k] for k in b} for a, b in zip(c0, c1, strict=True)]
                upstream = {k: sum(d[k] for d in delta) for k in delta[0]} if delta[0] else {}
                rec = {
                    "set": kind,
                    "policy": policy,
                    "round": rnd,
                    "wall_s": wall,
                    "split": [b - a for a, b in zip(s0[:2], s1[:2], strict=True)],
                    "placements": [b - a for a, b in zip(s0[2:], s1[2:], strict=True)],  # affinity, balanced, queued
                    "upstream": upstream,
                    "other_cpu": max(0.0, (busy - own) / wall),
                    "samples": [{**asdict(s), "recomputed": s.recomputed} for s in samples],
                }
                out.append(rec)
                errors = sum(1 for s in samples if s.error)
                recomputed = sum(s.recomputed for s in samples if not s.error)
                print(
                    f"{kind:9} round {rnd} {policy:12} wall {wall:6.1f}s  recomputed {recomputed:6d}  "
                    f"split {rec['split']}  placements {rec['placements']}  errors {errors}  other CPU {rec['other_cpu']:.2f}",
                    file=sys.stderr,
                )
                for s in samples:
                    if s.error:
                        print(f"  session {s.session} turn {s.turn}: {s.error}", file=sys.stderr)
    finally:
        for p in [*gws.values(), *ups]:
            p.stop()
    return out


def render(raw: dict[str, Any], save: bool) -> None:
    facts, a = raw["machine"], raw["args"]
    rows = summarize(raw["rounds"])
    text = [
        f"Measured {facts['date']} on {facts['cpu']}, {facts['cores']} cores ({facts['flags']}), {facts['memory']}, "
        f"Python {facts['python']}; `bench/routing_gain.py{' --quick' if a['quick'] else ''}`: {a['tenants']} tenants × "
        f"{a['sessions_per_tenant']} sessions × {a['turns']} turns, max_tokens {a['max_tokens']}, "
        f"{a['sentences']} policy sentences per system prompt, upstream --n-parallel {a['n_parallel']}, mockai "
        f"{a['prefill_ms_per_kchar']:g} ms per kchar; total {raw['wall_s'] / 60:.1f} min.",
        "",
        table(rows),
    ]
    report = "\n".join(text)
    print("\n" + report)
    (OUT_DIR / "routing_gain.md").write_text(report + "\n")
    title = (
        f"{facts['date']}, {facts['cpu']}, {facts['cores']} cores; {a['tenants']} tenants × {a['sessions_per_tenant']} "
        f"sessions × {a['turns']} turns, max_tokens {a['max_tokens']}"
    )
    path = BENCH / "routing_gain.png" if save else OUT_DIR / "routing_gain.png"
    chart(rows, title, path)
    print(f"\nchart: {path}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~200-token system prompts, 3 turns, one round (mockai: two)")
    ap.add_argument("--sets", default="faceplate,mockai", help="upstream sets to run: faceplate, mockai")
    ap.add_argument("--rounds", type=int, default=1, help="rounds on the real upstreams (each plays every policy)")
    ap.add_argument("--mock-rounds", type=int, default=5, help="rounds on the mockai upstreams")
    ap.add_argument("--tenants", type=int, default=4)
    ap.add_argument("--sessions-per-tenant", type=int, default=2)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--sentences", type=int, default=65, help="policy sentences per system prompt (65: ~1.1k tokens)")
    ap.add_argument("--stagger", type=float, default=0.0, help="session i starts i × this many seconds into a round")
    ap.add_argument("--think", type=float, default=0.5, help="pause before a follow-up turn: uniform in [0, this) s")
    ap.add_argument("--n-parallel", type=int, default=4, help="sequences per real upstream")
    ap.add_argument("--prefill-ms-per-kchar", type=float, default=200.0, help="mockai's prefill model")
    ap.add_argument("--save", action="store_true", help="draw bench/routing_gain.png (else bench/out/routing_gain.png)")
    ap.add_argument("--report", type=Path, help="re-render a saved bench/out/routing_gain.json, run nothing")
    args = ap.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if args.report:
        render(json.loads(args.report.read_text()), args.save)
        return
    if args.quick:
        args.sentences, args.turns, args.rounds, args.mock_rounds = 12, 3, 1, 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on kill, too
    w = Workload(args.tenants, args.sessions_per_tenant, args.turns, args.max_tokens, args.sentences, args.stagger, args.think)
    facts, t0 = machine(), time.monotonic()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="faceplate-routing-gain-") as tmp:
        for kind in args.sets.split(","):
            n = args.rounds if kind == "faceplate" else args.mock_rounds
            (Path(tmp) / kind).mkdir()
            rounds += run_set(kind, args, w, Path(tmp) / kind, n)
    raw = {"machine": facts, "args": vars(args) | {"report": None}, "wall_s": time.monotonic() - t0, "rounds": rounds}
    (OUT_DIR / "routing_gain.json").write_text(json.dumps(raw, indent=1, default=str))
    render(raw, args.save)


if __name__ == "__main__":
    main()
