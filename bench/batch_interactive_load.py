"""The load bench/batch_interactive.py puts on a server and what it records: the streaming
interactive clients, the batch and its poller, each request, poll and phase."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batch_interactive_workload import API_KEY, batch_jsonl, interactive_prompt  # noqa: E402
from common import MODEL_ID, cpu_busy_seconds, proc_cpu_seconds, wait_for_quiet  # noqa: E402
from openai import OpenAI  # noqa: E402
from tests.serverproc import ServerProcess  # noqa: E402

QUIET = 0.3  # cores other processes may use before a phase starts (waited for up to --wait-quiet s)
STAGGER_S = 0.3  # client k starts k x this after the first
TERMINAL = ("completed", "failed", "expired", "cancelled")

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
