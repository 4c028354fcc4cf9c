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
import io
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from common import MODEL_ID, OUT_DIR, cpu_busy_seconds, machine, model_path, percentile, proc_cpu_seconds, wait_for_quiet  # noqa: E402
from openai import APIError, OpenAI  # noqa: E402
from tests.serverproc import ServerProcess, free_port, launch  # noqa: E402

API_KEY = "sk-bench-batch-interactive-0123456789"
QUIET = 0.3  # cores other processes may use before a phase starts (waited for up to --wait-quiet s)
STAGGER_S = 0.3  # client k starts k x this after the first
TERMINAL = ("completed", "failed", "expired", "cancelled")

# ---------------------------------------------------------------------------- prompts

QUESTIONS = [
    "Why is the sky blue?",
    "What does a bicycle chain do?",
    "How do bees make honey?",
    "What is a prime number?",
    "Why do leaves change colour in autumn?",
    "How does a compass work?",
    "What is the capital of Italy known for?",
    "Why do we need sleep?",
    "How is bread made?",
    "What causes thunder?",
    "How do fish breathe underwater?",
    "What is a good way to learn a new language?",
    "Why does ice float on water?",
    "How do airplanes stay in the air?",
    "What is recycling good for?",
    "How does a rainbow form?",
    "Why do cats purr?",
    "What is the difference between a lake and a sea?",
    "How does a battery store energy?",
    "Give me three tips for a job interview.",
]

REVIEW_PARTS = (
    ["The blender", "This kettle", "The hiking boots", "My new headphones", "The desk lamp", "This backpack",
     "The coffee grinder", "The phone case", "This tent", "The toaster", "The office chair", "These gloves"],
    ["arrived quickly and", "broke after a week and", "looks great but", "is heavier than expected and",
     "works exactly as described and", "was missing a part and", "feels cheap but", "is very quiet and"],
    ["I would buy it again.", "the support never answered.", "it does the job.", "I returned it.",
     "my family loves it.", "the price was fair.", "the manual is useless.", "it exceeded my hopes."],
)  # fmt: skip


def interactive_prompt(phase: str, client: int, i: int) -> str:
    return f"[{phase} c{client} #{i}] {QUESTIONS[(client * 7 + i) % len(QUESTIONS)]} Answer in two sentences."


def review(i: int) -> str:
    rng = random.Random(4242 + i)
    return " ".join(rng.choice(part) for part in REVIEW_PARTS)


def batch_jsonl(n: int, max_tokens: int, tag: str) -> bytes:
    lines = []
    for i in range(n):
        body = {
            "model": MODEL_ID,
            "messages": [
                {
                    "role": "user",
                    "content": f"[{tag} line {i}] Label this product review as positive, negative or mixed, "
                    f"in one word: {review(i)}",
                }
            ],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        lines.append({"custom_id": f"{tag}-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


# ---------------------------------------------------------------------------- measurement


@dataclass
class Request:
    config: str
    phase: str  # alone | batch
    client: int
    i: int
    start: float  # s since the phase's t0
    ttft_s: float
    end: float
    content_chunks: int
    completion_tokens: int
    finish_reason: str
    itl_s: float | None  # mean gap between content chunks after the first (the decode step time it saw)
    max_gap_s: float | None  # the longest gap between two content chunks
    part: str = ""  # alone: "before" or "after" the batch
    overlapped: bool = True  # ended while batch lines were still running (always true for "alone")


@dataclass
class Poll:
    t: float  # s since the phase's t0
    status: str
    completed: int
    failed: int
    total: int
    batch_sequences: int
    running_sequences: int
    busy_cpu_s: float = 0.0  # the machine's busy CPU-seconds so far (all processes)
    ours_cpu_s: float = 0.0  # the server's and this script's CPU-seconds so far


@dataclass
class Phase:
    config: str
    phase: str
    requests: list[Request] = field(default_factory=list)
    polls: list[Poll] = field(default_factory=list)
    other_cpu: float = 0.0
    wall_s: float = 0.0
    # batch phases only (s since t0)
    batch_id: str = ""
    in_progress_t: float | None = None
    clients_start_t: float | None = None
    clients_end_t: float | None = None
    done_t: float | None = None  # first poll with every line done
    final_status: str = ""
    server_in_progress_at: int | None = None
    server_completed_at: int | None = None
    output_lines: int = 0
    output_tokens_mean: float = 0.0
    output_prompt_tokens_mean: float = 0.0
    output_sample: list[str] = field(default_factory=list)


def stream_one(client: OpenAI, prompt: str, max_tokens: int) -> tuple[float, int, int, str, float | None, float | None]:
    """One streamed chat completion: (TTFT s, content chunks, completion tokens, finish reason, mean ITL s, max gap s)."""
    t0 = time.perf_counter()
    first: float | None = None
    chunks = tokens = 0
    reason = ""
    stream = client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    last = t0
    gap: float | None = None
    with stream:
        for chunk in stream:
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if choice.delta.content:
                    chunks += 1
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    else:
                        gap = max(gap or 0.0, now - last)
                    last = now
                if choice.finish_reason:
                    reason = choice.finish_reason
    end = time.perf_counter()
    itl = (last - first) / (chunks - 1) if first is not None and chunks > 1 else None
    return ((first if first is not None else end) - t0), chunks, tokens, reason, itl, gap


class Bench:
    def __init__(self, server: ServerProcess, config: str, args: argparse.Namespace) -> None:
        self.server, self.config, self.args = server, config, args
        self.client = self.sdk()
        self.warm_batch_id = ""

    def sdk(self) -> OpenAI:
        return OpenAI(base_url=self.server.base_url, api_key=API_KEY, max_retries=0, timeout=600)

    def cpu(self) -> float:
        return proc_cpu_seconds(os.getpid()) + proc_cpu_seconds(self.server.proc.pid)

    def run_clients(self, phase: Phase, tag: str, t0: float, stop: threading.Event, i0: int, i1: int, part: str = "") -> None:
        """The interactive clients, in threads, requests i0..i1-1 each; appended to ``phase.requests``."""
        a = self.args
        lock = threading.Lock()
        errors: list[BaseException] = []

        def loop(c: int) -> None:
            client = self.sdk()
            time.sleep(c * STAGGER_S)
            try:
                for i in range(i0, i1):
                    if stop.is_set():
                        return
                    start = time.perf_counter() - t0
                    ttft, chunks, tokens, reason, itl, gap = stream_one(client, interactive_prompt(tag, c, i), a.max_tokens)
                    end = time.perf_counter() - t0
                    with lock:
                        phase.requests.append(
                            Request(self.config, phase.phase, c, i, start, ttft, end, chunks, tokens, reason, itl, gap, part)
                        )
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)
            finally:
                client.close()

        threads = [threading.Thread(target=loop, args=(c,), name=f"client-{c}") for c in range(a.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise errors[0]

    def measured(self, phase: Phase, body: Any) -> None:
        """Run ``body()`` as (part of) a phase, after waiting for the machine to be quiet; add up the
        other processes' CPU-seconds and the wall time (``other_cpu`` holds CPU-seconds until ``finish``)."""
        if self.args.wait_quiet > 0:
            wait_for_quiet(max_wait=self.args.wait_quiet, threshold=QUIET, window=1.0)
        busy0, ours0, t0 = cpu_busy_seconds(), self.cpu(), time.monotonic()
        body()
        phase.wall_s += time.monotonic() - t0
        phase.other_cpu += max(0.0, cpu_busy_seconds() - busy0 - (self.cpu() - ours0))

    @staticmethod
    def finish(phase: Phase) -> Phase:
        phase.other_cpu = phase.other_cpu / phase.wall_s if phase.wall_s else 0.0
        return phase

    def alone(self, phase: Phase, part: str, i0: int, i1: int) -> None:
        """Clients alone, with the same poller traffic as a batch phase (the finished warm-up batch)."""

        def body() -> None:
            t0 = time.perf_counter()
            stop, done = threading.Event(), threading.Event()
            errors: list[BaseException] = []
            poller = threading.Thread(
                target=self.poll, args=(phase, self.warm_batch_id, t0, None, stop, done, errors), name="poller"
            )
            poller.start()
            try:
                self.run_clients(phase, "A", t0, threading.Event(), i0, i1, part)
            finally:
                done.set()
                poller.join()
            if errors:
                raise errors[0]

        self.measured(phase, body)

    def submit_batch(self, lines: int, tag: str) -> str:
        content = batch_jsonl(lines, self.args.batch_max_tokens, tag)
        uploaded = self.client.files.create(file=(f"{tag}.jsonl", io.BytesIO(content)), purpose="batch")
        batch = self.client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
        return batch.id

    def wait_batch(self, batch_id: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            batch = self.client.batches.retrieve(batch_id)
            if batch.status in TERMINAL:
                return batch
            if time.monotonic() > deadline:
                raise RuntimeError(f"batch {batch_id} still {batch.status} after {timeout:.0f}s: {batch.request_counts}")
            time.sleep(0.2)

    def warm_up(self) -> None:
        for k in range(2):
            stream_one(self.client, interactive_prompt("W", 9, k), self.args.max_tokens)
        self.warm_batch_id = self.submit_batch(4, "warm")
        done = self.wait_batch(self.warm_batch_id, timeout=300)
        if done.status != "completed":
            raise RuntimeError(f"warm-up batch ended {done.status}: {done}")

    def with_batch(self) -> Phase:
        a = self.args
        phase = Phase(self.config, "batch")
        stop = threading.Event()  # every line done: the clients stop
        errors: list[BaseException] = []

        def body() -> None:
            t0 = time.perf_counter()
            phase.batch_id = self.submit_batch(a.lines, f"{self.config}-B")
            started = threading.Event()  # in_progress with --lead lines done: the clients may start
            poller = threading.Thread(
                target=self.poll, args=(phase, phase.batch_id, t0, started, stop, None, errors), name="poller"
            )
            poller.start()
            try:
                while not started.wait(0.2):
                    if not poller.is_alive():
                        raise RuntimeError(f"the poller stopped before the batch started: {errors}")
                if not stop.is_set():
                    phase.clients_start_t = time.perf_counter() - t0
                    self.run_clients(phase, "B", t0, stop, 0, a.requests)
                    phase.clients_end_t = time.perf_counter() - t0
            finally:
                poller.join()  # ends when the batch does (or on an error, or --batch-timeout)
            if errors:
                raise errors[0]

        self.measured(phase, body)
        final = self.client.batches.retrieve(phase.batch_id)
        phase.final_status = final.status
        phase.server_in_progress_at = final.in_progress_at
        phase.server_completed_at = final.completed_at
        if phase.done_t is not None:
            for r in phase.requests:
                r.overlapped = r.end <= phase.done_t
        if final.output_file_id:
            out = [json.loads(x) for x in self.client.files.content(final.output_file_id).content.splitlines()]
            usage = [x["response"]["body"].get("usage") or {} for x in out]
            phase.output_lines = len(out)
            phase.output_tokens_mean = sum(u.get("completion_tokens", 0) for u in usage) / max(1, len(usage))
            phase.output_prompt_tokens_mean = sum(u.get("prompt_tokens", 0) for u in usage) / max(1, len(usage))
            phase.output_sample = [x["response"]["body"]["choices"][0]["message"]["content"] for x in out[:3]]
        return phase

    def poll(
        self,
        phase: Phase,
        batch_id: str,
        t0: float,
        started: threading.Event | None,
        stop: threading.Event,
        done: threading.Event | None,
        errors: list[BaseException],
    ) -> None:
        """Every --poll s: the batch's request counts and the engine's slot use. In a batch phase
        (``started`` given) it sets ``started`` once the batch is in progress with --lead lines done
        and ``stop`` once every line is done, and returns when the batch ends; else it polls (the
        same traffic) until ``done`` is set."""
        a = self.args
        client = self.sdk()
        http = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {API_KEY}"})
        try:
            while done is None or not done.is_set():
                batch = client.batches.retrieve(batch_id)
                engine = http.get(self.server.root + "/health").json()["models"][MODEL_ID]
                t = time.perf_counter() - t0
                if started is None:
                    time.sleep(a.poll)
                    continue
                rc = batch.request_counts
                ok, failed, total = (rc.completed, rc.failed, rc.total) if rc else (0, 0, 0)
                phase.polls.append(
                    Poll(
                        t,
                        batch.status,
                        ok,
                        failed,
                        total,
                        engine["batch_sequences"],
                        engine["running_sequences"],
                        cpu_busy_seconds(),
                        self.cpu(),
                    )
                )
                if batch.status != "validating" and phase.in_progress_t is None:
                    phase.in_progress_t = t
                if phase.in_progress_t is not None and ok + failed >= min(a.lead, total):
                    started.set()
                if (total and ok + failed >= total) or batch.status in TERMINAL:
                    if phase.done_t is None:
                        phase.done_t = t
                        stop.set()
                        started.set()
                    if batch.status in TERMINAL:
                        return
                if t > a.batch_timeout:
                    raise RuntimeError(f"batch {batch_id} still {batch.status} after {t:.0f}s: {rc}")
                time.sleep(a.poll)
        except BaseException as exc:  # noqa: BLE001 - reported by the phase
            errors.append(exc)
            stop.set()
            if started is not None:
                started.set()
        finally:
            client.close()
            http.close()


# ---------------------------------------------------------------------------- report


def completed_at(polls: list[Poll], t: float) -> float:
    """Lines done at time t, linearly interpolated between polls."""
    before = [p for p in polls if p.t <= t]
    after = [p for p in polls if p.t >= t]
    if not before:
        return 0.0
    if not after:
        return float(before[-1].completed + before[-1].failed)
    p, q = before[-1], after[0]
    a, b = p.completed + p.failed, q.completed + q.failed
    return float(a) if q.t == p.t else a + (b - a) * (t - p.t) / (q.t - p.t)


def other_cpu(polls: list[Poll], windows: list[tuple[float, float]]) -> float | None:
    """Cores other processes used on average over the windows, from the polls nearest inside each."""
    busy = ours = secs = 0.0
    for w0, w1 in windows:
        inside = [p for p in polls if w0 <= p.t <= w1 and p.busy_cpu_s > 0]
        if len(inside) < 2:
            continue
        a, b = inside[0], inside[-1]
        busy, ours, secs = busy + b.busy_cpu_s - a.busy_cpu_s, ours + b.ours_cpu_s - a.ours_cpu_s, secs + b.t - a.t
    return max(0.0, (busy - ours) / secs) if secs > 0 else None


def summarize(phase: Phase) -> dict[str, Any]:
    reqs = [r for r in phase.requests if r.overlapped]
    ttft = [r.ttft_s for r in reqs]
    row: dict[str, Any] = {
        "config": phase.config,
        "phase": phase.phase,
        "requests": len(reqs),
        "after_batch": len(phase.requests) - len(reqs),
        "ttft_p50": percentile(ttft, 50),
        "ttft_p90": percentile(ttft, 90),
        "ttft_p99": percentile(ttft, 99),
        "ttft_max": max(ttft) if ttft else None,
        "tokens_mean": (sum(r.completion_tokens for r in reqs) / len(reqs)) if reqs else None,
        "itl_p50": percentile([r.itl_s for r in reqs if r.itl_s is not None], 50),
        "max_gap_p50": percentile([r.max_gap_s for r in reqs if r.max_gap_s is not None], 50),
        "p50_before": percentile([r.ttft_s for r in reqs if r.part == "before"], 50),
        "p50_after": percentile([r.ttft_s for r in reqs if r.part == "after"], 50),
        "other_cpu": phase.other_cpu,
        "wall_s": phase.wall_s,
    }
    if phase.phase != "batch" or phase.in_progress_t is None:
        return row
    polls = phase.polls
    total = max((p.total for p in polls), default=0)
    end = phase.done_t if phase.done_t is not None else polls[-1].t
    row["lines"] = total
    row["final_status"] = phase.final_status
    row["failed_lines"] = max((p.failed for p in polls), default=0)
    row["batch_s"] = end - phase.in_progress_t
    row["batch_rate"] = (completed_at(polls, end)) / row["batch_s"] if row["batch_s"] > 0 else None
    row["batch_slots_max"] = max((p.batch_sequences for p in polls), default=-1)
    row["running_max"] = max((p.running_sequences for p in polls), default=-1)
    if reqs:
        w0, w1 = min(r.start for r in reqs), max(r.end for r in reqs)
        row["window_s"] = w1 - w0
        row["rate_with"] = (completed_at(polls, w1) - completed_at(polls, w0)) / (w1 - w0)
        lead = (phase.in_progress_t, w0)
        tail = (w1, end)
        lines_alone = (completed_at(polls, lead[1]) - completed_at(polls, lead[0])) + (
            completed_at(polls, tail[1]) - completed_at(polls, tail[0])
        )
        secs_alone = (lead[1] - lead[0]) + max(0.0, tail[1] - tail[0])
        row["rate_alone"] = lines_alone / secs_alone if secs_alone > 0 else None
        row["alone_s"] = secs_alone
        inside = [p for p in polls if w0 <= p.t <= w1]
        row["batch_slots_with"] = max((p.batch_sequences for p in inside), default=-1)
        window = other_cpu(polls, [(w0, w1)])  # while the clients ran, not over the whole phase
        row["other_cpu"] = phase.other_cpu if window is None else window
        row["other_cpu_alone"] = other_cpu(polls, [lead, tail])
    return row


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}s"


def fmt_c(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def fmt_x(v: float | None, base: float | None) -> str:
    return "-" if v is None or not base else f"{v / base:.2f}x"


def settings_of(config: str, n_parallel: int) -> str:
    conc, slots = config_settings(config, n_parallel)
    return f"concurrency {conc}, slots {slots}"


def table(rows: list[dict[str, Any]], n_parallel: int) -> str:
    head = (
        "| config (batch_concurrency, batch_slots) | phase | requests | TTFT p50 | TTFT p90 | TTFT p99 | p50 vs alone "
        "| p99 vs alone | ITL p50 | batch lines/s | batch slots held (max) | other CPU |"
    )
    lines = [head, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    alone = {r["config"]: r for r in rows if r["phase"] == "alone"}
    for r in rows:
        base = alone.get(r["config"])
        name = f"{r['config']} ({settings_of(r['config'], n_parallel)})"
        itl = "-" if r["itl_p50"] is None else f"{r['itl_p50'] * 1000:.0f}ms"
        ttft = [fmt_s(r["ttft_p50"]), fmt_s(r.get("ttft_p90")), fmt_s(r["ttft_p99"])]
        if r["phase"] == "alone":
            cells = [name, "clients alone", str(r["requests"]), *ttft, "1.00x", "1.00x", itl, "-", "-", fmt_c(r["other_cpu"])]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        n = str(r["requests"]) + (f" (+{r['after_batch']} after)" if r["after_batch"] else "")
        ratios = [fmt_x(r["ttft_p50"], base and base["ttft_p50"]), fmt_x(r["ttft_p99"], base and base["ttft_p99"])]
        rate = f"{r['rate_with']:.2f}" if r.get("rate_with") is not None else "-"
        cells = [
            name,
            "clients + batch",
            n,
            *ttft,
            *ratios,
            itl,
            rate,
            str(r.get("batch_slots_with", "-")),
            fmt_c(r["other_cpu"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
        rate = f"{r['rate_alone']:.2f}" if r.get("rate_alone") is not None else "-"
        slots = str(r.get("batch_slots_max", "-"))
        cells = [name, "batch alone (before + after the clients)", *["-"] * 7, rate, slots, fmt_c(r.get("other_cpu_alone"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(rows: list[dict[str, Any]], phases: list[Phase]) -> str:
    out = []
    for r in rows:
        if r["phase"] == "alone":
            out.append(
                f"- {r['config']}, clients alone: TTFT p50 {fmt_s(r['p50_before'])} before the batch, "
                f"{fmt_s(r['p50_after'])} after it; mean completion tokens {r['tokens_mean'] or 0:.1f}; "
                f"longest gap between two chunks of a request, median {fmt_s(r.get('max_gap_p50'))}."
            )
            continue
        if "lines" not in r:
            continue
        ph = next(p for p in phases if p.config == r["config"] and p.phase == "batch")
        server_s = (
            f"{ph.server_completed_at - ph.server_in_progress_at} s by its own in_progress_at/completed_at"
            if ph.server_completed_at and ph.server_in_progress_at
            else "no server timestamps"
        )
        out.append(
            f"- {r['config']}, batch: {r['lines']} lines {r['final_status']} ({r['failed_lines']} failed) "
            f"{r['batch_s']:.0f} s after in_progress was seen ({server_s}): {r['batch_rate']:.2f} lines/s overall; "
            f"the clients overlapped it for {r.get('window_s', 0):.0f} s and it ran alone for {r.get('alone_s', 0):.0f} s; "
            f"{ph.output_lines} output lines, {ph.output_prompt_tokens_mean:.1f} prompt and {ph.output_tokens_mean:.1f} "
            f"completion tokens per line on average "
            f"(first answers: {', '.join(repr(x) for x in ph.output_sample)}); the clients' requests had "
            f"{r['tokens_mean'] or 0:.1f} completion tokens on average and their longest gap between two chunks "
            f"had a median of {fmt_s(r.get('max_gap_p50'))}; most sequences running at once {r['running_max']}."
        )
    return "\n".join(out)


def chart(phases: list[Phase], rows: list[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(r["config"] for r in rows))
    fig, axes = plt.subplots(1, 2 + len(configs), figsize=(5 + 4.2 * (1 + len(configs)), 4.4))
    ax1, ax2, timelines = axes[0], axes[1], axes[2:]
    width = 0.38
    for k, (label, style) in enumerate((("clients alone", "alone"), ("clients + batch", "batch"))):
        xs = [i + (k - 0.5) * width for i in range(len(configs))]
        got = [next((r for r in rows if r["config"] == c and r["phase"] == style), None) for c in configs]
        p50 = [r["ttft_p50"] or 0 if r else 0 for r in got]
        p99 = [r["ttft_p99"] or 0 if r else 0 for r in got]
        color = "tab:blue" if style == "alone" else "tab:orange"
        ax1.bar(xs, p99, width, color=color, alpha=0.35, label=f"{label}, p99")
        ax1.bar(xs, p50, width, color=color, label=f"{label}, p50")
    ax1.set_xticks(range(len(configs)), configs)
    ax1.set_ylabel("time to first token, s")
    ax1.set_title("interactive TTFT (4 streaming clients)", fontsize=9)
    ax1.legend(fontsize=7)
    ax1.grid(True, axis="y", alpha=0.3)
    batch_rows = [next((r for r in rows if r["config"] == c and r["phase"] == "batch"), {}) for c in configs]
    for k, (key, label, color) in enumerate(
        (("rate_alone", "batch alone", "tab:green"), ("rate_with", "batch + 4 clients", "tab:red"))
    ):
        xs = [i + (k - 0.5) * width for i in range(len(configs))]
        ax2.bar(xs, [r.get(key) or 0 for r in batch_rows], width, color=color, label=label)
    ax2.set_xticks(range(len(configs)), configs)
    ax2.set_ylabel("batch lines/s")
    ax2.set_title("batch throughput", fontsize=9)
    ax2.legend(fontsize=7)
    ax2.grid(True, axis="y", alpha=0.3)
    for ax, config in zip(timelines, configs, strict=True):
        alone = next((p for p in phases if p.config == config and p.phase == "alone"), None)
        batch = next((p for p in phases if p.config == config and p.phase == "batch"), None)
        if batch is None or batch.in_progress_t is None:
            continue
        t0 = batch.in_progress_t
        reqs = [r for r in batch.requests if r.overlapped]
        ax.scatter([r.start - t0 for r in reqs], [r.ttft_s for r in reqs], s=8, color="tab:orange", label="TTFT, clients + batch")
        if alone and alone.requests:
            p50 = percentile([r.ttft_s for r in alone.requests], 50)
            ax.axhline(p50, color="tab:blue", lw=1, ls="--", label="TTFT p50, clients alone")
        ax.set_xlabel("s since the batch went in_progress")
        ax.set_ylabel("TTFT, s")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        twin = ax.twinx()
        polls = [p for p in batch.polls if p.t >= t0]
        twin.plot([p.t - t0 for p in polls], [p.completed + p.failed for p in polls], "k-", lw=1, alpha=0.6, label="lines done")
        twin.set_ylabel("batch lines done")
        twin.set_ylim(bottom=0)
        ax.set_title(f"{config}: timeline", fontsize=9)
        handles = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- main


def config_settings(config: str, n_parallel: int) -> tuple[int, int]:
    """(batch_concurrency, batch_slots) of a configuration."""
    return {
        "default": (2, max(1, n_parallel // 2)),
        "nocap": (n_parallel, n_parallel),
        "wide": (n_parallel, max(1, n_parallel // 2)),
    }[config]


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


def load_phases(raw: dict[str, Any]) -> list[Phase]:
    phases = []
    for d in raw["phases"]:
        requests = [Request(**{"max_gap_s": None, **r}) for r in d["requests"]]
        polls = [Poll(**q) for q in d["polls"]]
        phases.append(Phase(**{**d, "requests": requests, "polls": polls}))
    return phases


def render(raw: dict[str, Any], save: bool) -> None:
    """The tables (stdout, bench/out/batch_interactive.md) and, with ``save``, the chart, from raw results."""
    facts, args, wall = raw["machine"], argparse.Namespace(**raw["args"]), raw["wall_s"]
    phases = load_phases(raw)
    configs = list(dict.fromkeys(p.config for p in phases))
    load0 = raw.get("load_avg_start")
    rows = [summarize(p) for p in phases]
    title = (
        f"{facts['date']}, {facts['cpu']}, {facts['cores']} cores; SmolLM2-135M Q4_1, --threads {args.threads}, "
        f"--n-parallel {args.n_parallel}; {args.clients} clients x {args.requests} streamed requests "
        f"(max_tokens {args.max_tokens}) vs a {args.lines}-line batch (max_tokens {args.batch_max_tokens})"
    )
    text = [
        f"Measured {facts['date']} on {facts['cpu']}, {facts['cores']} cores ({facts['flags']}), {facts['memory']}, "
        f"Python {facts['python']}; `bench/batch_interactive.py` (--lines {args.lines} --requests {args.requests} "
        f"--clients {args.clients} --max-tokens {args.max_tokens} --batch-max-tokens {args.batch_max_tokens} "
        f"--threads {args.threads} --n-parallel {args.n_parallel} --configs {','.join(configs)}), total "
        f"{wall / 60:.1f} min; load average at the start {'?' if load0 is None else f'{load0:.2f}'}.",
        "",
        table(rows, args.n_parallel),
        "",
        notes(rows, phases),
    ]
    report = "\n".join(text)
    print("\n" + report)
    (OUT_DIR / "batch_interactive.md").write_text(report + "\n")
    if save:
        chart(phases, rows, title, BENCH / "batch_interactive.png")
        print(f"\nchart: {BENCH / 'batch_interactive.png'}", file=sys.stderr)


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
