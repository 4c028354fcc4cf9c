"""The closed-loop client of bench/soak.py: every kind of call in its mix, the hang-ups and the refusals."""

from __future__ import annotations

import base64
import contextlib
import json
import random
import select
import socket
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import openai  # noqa: E402
from common import PROMPTS  # noqa: E402
from openai import OpenAI  # noqa: E402
from soak_calls import Outcome, Result, by_status, check, sse_data, stream_error  # noqa: E402
from soak_mix import AUTH, CHAT, CITIES, CITY_SCHEMA, DIMENSIONS, EMB, KEY, MIX, REQUEST_TIMEOUT, WEATHER_TOOL, sentence  # noqa: E402
from tests.serverproc import ServerProcess  # noqa: E402


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
