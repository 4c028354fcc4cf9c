"""Is the Batch API polite to live traffic? Interactive time to first token with and without a running batch.

    .venv/bin/python bench/batch_interactive.py --save    # full run, ~16 min on the shared 2-core machine; redraws the chart
    .venv/bin/python bench/batch_interactive.py           # the same, without touching bench/batch_interactive.png
    .venv/bin/python bench/batch_interactive.py --quick   # smoke run: --lines 40 --requests 6 --lead 4 --configs default, ~2 min
    .venv/bin/python bench/batch_interactive.py --report bench/out/batch_interactive.json --save   # redraw a saved run

What it measures. A 500-line chat batch (``--lines``) runs on a real ``faceplate serve`` while 4
interactive clients (``--clients``) stream chat completions; the table gives the batch's lines/s
and the clients' time to first token (TTFT) p50/p99, with and without the batch, side by side in
one run. Batch lines run at a lower engine priority: the llama.cpp scheduler admits interactive
jobs first, lets batch jobs hold at most ``batch_slots`` slots (default half of ``--n-parallel``),
and prefills a client's prompt before any batch prompt; the batch worker runs at most
``batch_concurrency`` lines at once (default 2). So a running batch should cost a client only the
extra work in each step it shares with batch lines (their decode tokens, and a batch prompt's
prefill in a step where no client's prompt waits), never a wait for a slot.

The server. One ``faceplate serve`` per configuration (``--configs``), started by the script: the
bundled SmolLM2-135M-Instruct GGUF only, ``--threads 1`` (the machines here are 2-core and shared;
llama.cpp with 2 threads on 2 cores slows down many times over as soon as another process takes a
core, see responses_chain.py), ``--n-parallel 8``, an API key, a fresh temporary
``FACEPLATE_DATA_DIR`` (the batch store and files live there). Configurations, set by environment:

- **default**: the settings as shipped: ``batch_concurrency`` 2, ``batch_slots`` 4 (n_parallel / 2);
- **nocap**: ``FACEPLATE_BATCH_CONCURRENCY`` and ``FACEPLATE_BATCH_SLOTS`` = n_parallel (8): the worker
  runs 8 lines at once and they may hold every slot (a client's request is still admitted first,
  but only into a slot a batch line has freed, and its prompt still goes first): what the cap and
  the worker's concurrency buy together;
- **wide** (not in the default run, ``--configs default,wide,nocap``): ``FACEPLATE_BATCH_CONCURRENCY``
  = n_parallel, ``batch_slots`` left at 4: the engine's cap alone holding back a worker that asks for
  more (nocap minus wide is what the cap buys; wide minus default what the worker's concurrency does).

Per configuration, after a warm-up (two chat requests and a 4-line batch run to completion):

1. **clients alone**, first half: each of the 4 clients (a thread with its own ``openai`` client)
   sends streamed chat completions one after another (closed loop, no pause; client k starts
   k x 0.3 s after the first), each a short question (``max_tokens`` 32, temperature 0,
   ``stream_options.include_usage``). TTFT = time from the SDK call to the first chunk with content
   (the empty role chunk does not count); ITL = the request's mean gap between content chunks.
   Each prompt starts with its own tag (phase, client, request number), so no request finds
   another's prompt in the prefix cache; request number i of client k asks the same question in
   every phase.
2. **clients + batch**: upload a ``--lines``-line chat JSONL (``client.files.create(purpose="batch")``),
   ``client.batches.create``, and poll ``client.batches.retrieve`` and ``/health`` (for the slots
   batch lines hold) every ``--poll`` s (0.5). Each line asks for a one-word label of a short product
   review (``max_tokens`` ``--batch-max-tokens``, 16; temperature 0). Once the batch is
   ``in_progress`` with ``--lead`` (20) lines done, the clients send ``--requests`` (20) each. A client
   stops as soon as the poller sees every line done, and only requests that ended before that
   count (the table says how many ran after); the defaults size the batch to outlast the clients
   by minutes. After the clients stop, the batch runs alone to ``completed``.
3. **clients alone**, second half, once the batch has completed.

The two halves of "clients alone" (``--requests`` per client in all, half before the batch, half
after) bracket the batch phase, so slow drift of a shared machine hits both sides alike; the notes
give each half's p50. The same poller traffic (retrieving the finished warm-up batch, ``/health``)
runs during them. Ratios compare with the same server's "clients alone".

Batch lines/s, from the poller's ``request_counts`` (completed + failed) and its own clock (the
batch's ``in_progress_at``/``completed_at`` are whole seconds): **with clients** = lines done
between the first measured request's start and the last one's end, over that time; **alone** =
lines done before the clients started (after ``in_progress``) plus after they stopped, over those
times; the notes give the batch's total time and the output file's tokens per line. "Batch slots
held" is the most ``batch_sequences`` the engine reported while the clients ran (clients + batch
row) or at any time (batch alone row). Percentiles are nearest rank: with 80 requests, p99 is the
largest, so read it as "the slow tail", not as a precise 99th percentile.

Fairness on a noisy machine: before each phase the script waits (up to ``--wait-quiet`` s) for
other processes to use under 0.3 cores, and the "other CPU" column says how many cores they used
on average (the machine's busy CPU minus the server's and this script's): over the clients'
requests for the two client rows, over the batch's time without clients for the "batch alone"
row. Each configuration has its own server and its own "clients alone" baseline, so a comparison
spans minutes, not the whole run. ITL p50 (the median of each request's mean gap between chunks)
and, in the notes, each request's longest gap show what a batch line's decode tokens and its
prompt's prefill cost a stream.

Tables go to stdout and bench/out/batch_interactive.md, raw numbers (every request, every poll) to
bench/out/batch_interactive.json, server logs to bench/out/batch_interactive-<config>.log;
``--save`` also draws bench/batch_interactive.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from batch_interactive_load import Bench, Phase  # noqa: E402
from batch_interactive_report import fmt_s, render, summarize  # noqa: E402
from batch_interactive_workload import API_KEY, config_settings  # noqa: E402
from common import MODEL_ID, OUT_DIR, machine, model_path  # noqa: E402
from openai import APIError  # noqa: E402
from tests.serverproc import ServerProcess, free_port, launch  # noqa: E402

# ---------------------------------------------------------------------------- main


def start_server(args: argparse.Namespace, config: str, data_dir: Path) -> ServerProcess:
    port = free_port()
    cmd = [
        sys.executable, "-m", "faceplate", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--model", f"{MODEL_ID}={model_path()}", "--threads", str(args.threads),
        "--n-parallel", str(args.n_parallel), "--api-key", API_KEY, "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "FACEPLATE_DATA_DIR": str(data_dir)}
    for name in ("FACEPLATE_BATCH_CONCURRENCY", "FACEPLATE_BATCH_SLOTS"):
        env.pop(name, None)
    if config != "default":
        conc, slots = config_settings(config, args.n_parallel)
        env["FACEPLATE_BATCH_CONCURRENCY"] = str(conc)
        env["FACEPLATE_BATCH_SLOTS"] = str(slots)
    return launch(cmd, port, OUT_DIR / f"batch_interactive-{config}.log", env=env, cwd=ROOT)


def measure(args: argparse.Namespace, configs: list[str]) -> dict[str, Any]:
    """Run every configuration; the raw results, as saved in bench/out/batch_interactive.json."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on kill, too
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    facts = machine()
    started = time.monotonic()
    load0 = os.getloadavg()
    phases: list[Phase] = []
    for config in configs:
        data_dir = Path(tempfile.mkdtemp(prefix=f"faceplate-batch-interactive-{config}-"))
        t_start = time.monotonic()
        server = start_server(args, config, data_dir)
        print(f"[{config}] server up in {time.monotonic() - t_start:.0f}s (log {server.log_path})", file=sys.stderr)
        bench = Bench(server, config, args)
        try:
            bench.warm_up()
            alone = Phase(config, "alone")
            half = (args.requests + 1) // 2
            bench.alone(alone, "before", 0, half)
            print(f"[{config}] clients alone, before the batch: {alone.wall_s:.0f}s", file=sys.stderr, flush=True)
            batch = Bench.finish(bench.with_batch())
            s = summarize(batch)
            print(
                f"[{config}] clients + batch: {s['requests']} requests (+{s['after_batch']} after), TTFT p50 "
                f"{fmt_s(s['ttft_p50'])} p99 {fmt_s(s['ttft_p99'])}; batch {s.get('final_status')} in "
                f"{s.get('batch_s', 0):.0f}s, {s.get('rate_with') or 0:.2f} lines/s with clients, "
                f"{s.get('rate_alone') or 0:.2f} alone; {batch.wall_s:.0f}s, other CPU {batch.other_cpu:.2f}",
                file=sys.stderr,
                flush=True,
            )
            bench.alone(alone, "after", half, args.requests)
            Bench.finish(alone)
            s = summarize(alone)
            print(
                f"[{config}] clients alone (before + after): {s['requests']} requests, TTFT p50 {fmt_s(s['ttft_p50'])} "
                f"(before {fmt_s(s['p50_before'])}, after {fmt_s(s['p50_after'])}) p99 {fmt_s(s['ttft_p99'])}, "
                f"{alone.wall_s:.0f}s, other CPU {alone.other_cpu:.2f}",
                file=sys.stderr,
                flush=True,
            )
            phases += [alone, batch]
        except (APIError, RuntimeError, httpx.HTTPError) as exc:
            body = getattr(exc, "body", None)
            tail = server.log()[-4000:]
            print(
                f"\nFAILED [{config}]: {type(exc).__name__}: {exc}\nbody: {body}\n--- server log tail ---\n{tail}",
                file=sys.stderr,
            )
            server.stop()
            raise SystemExit(1) from None
        finally:
            server.stop()
            shutil.rmtree(data_dir, ignore_errors=True)
    wall = time.monotonic() - started

    return {
        "machine": facts,
        "args": vars(args),
        "wall_s": wall,
        "load_avg_start": load0[0],
        "phases": [asdict(p) for p in phases],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=500, help="request lines in the measured batch")
    ap.add_argument(
        "--requests", type=int, default=20, help="requests per client with the batch, and alone (half before, half after)"
    )
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--lead", type=int, default=20, help="batch lines done before the clients start")
    ap.add_argument("--max-tokens", type=int, default=32, help="max_tokens of the interactive requests")
    ap.add_argument("--batch-max-tokens", type=int, default=16, help="max_tokens of each batch line")
    ap.add_argument("--configs", default="default,nocap", help="comma-separated: default, nocap, wide")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads (1: see the docstring)")
    ap.add_argument("--n-parallel", type=int, default=8)
    ap.add_argument("--poll", type=float, default=0.5, help="s between polls of the batch and /health")
    ap.add_argument("--batch-timeout", type=float, default=1200, help="give up on a batch after this many s")
    ap.add_argument(
        "--wait-quiet", type=float, default=20, help="before each phase, wait up to this many s for other load to stop"
    )
    ap.add_argument("--save", action="store_true", help="draw bench/batch_interactive.png")
    ap.add_argument("--report", type=Path, help="only redo the tables (and chart, with --save) from a saved run's JSON")
    ap.add_argument("--quick", action="store_true", help="smoke run: --lines 40 --requests 6 --lead 4 --configs default")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(lines=40, requests=6, lead=4, configs="default")
    args = ap.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        config_settings(c, args.n_parallel)  # KeyError on an unknown name

    if args.report:
        render(json.loads(args.report.read_text()), args.save)
        return
    raw = measure(args, configs)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "batch_interactive.json").write_text(json.dumps(raw, indent=1, default=str))
    render(raw, args.save)


if __name__ == "__main__":
    main()
