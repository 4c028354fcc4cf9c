"""A deterministic chat engine for fast API tests: real behaviour, no model.

Tokens are UTF-8 bytes (vocabulary 256 + an end token). The "model" emits words drawn
from a fixed list by a PRNG seeded from the prompt and the request seed, so the same
input always gives the same output. It honours n, max_tokens, stop, logprobs, the
queue bound and cancellation exactly as the real scheduler does; it is never used to
claim that a real model works.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from faceplate.engines.base import (
    ChatRequest,
    CompletionRequest,
    CpuPool,
    Finished,
    GenerationEvent,
    Priority,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    TopLogprob,
    chat_capabilities,
)
from faceplate.engines.chat_template import ChatTemplate
from faceplate.engines.fit import check_prompt_ids, fit
from faceplate.engines.textstream import TextStream
from faceplate.engines.toolcall_events import ToolCallEvents
from faceplate.errors import Overloaded
from faceplate.structured.plan import plan

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "héllo", "wörld", "日本", "🙂", "."]
END = 256


@dataclass(frozen=True)
class FakePrepared:
    tokens: tuple[int, ...]
    params: SamplingParams
    n: int
    echo_text: str = ""
    tool_calls: bool = False
    max_new_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        return len(self.tokens)


class FakeEngine:
    kind: Literal["chat"] = "chat"

    def __init__(
        self, model_id: str = "fake-model", *, n_ctx: int = 2048, n_parallel: int = 8, max_queue: int = 32, words: int = 40
    ) -> None:
        self.model_id = model_id
        self.n_ctx = n_ctx
        self.vocab_size = 257
        self.n_parallel = n_parallel
        self.max_queue = max_queue
        self.max_jobs = max_queue
        self.words = words  # answer length before the end token
        self.template = ChatTemplate(None, {})
        self.running = 0
        self.cancelled = 0
        self.delay_s = 0.0  # per token; tests raise it to hold requests open
        self.script: list[str] | None = None  # tests set it: each choice's output text, instead of words
        self.priorities: list[Priority] = []
        self._slots = asyncio.Semaphore(n_parallel)
        self._waiting = 0

    async def prepare_chat(self, request: ChatRequest, cpu: CpuPool) -> FakePrepared:
        return await cpu.run(self._prepare_chat, request)

    def _prepare_chat(self, request: ChatRequest) -> FakePrepared:
        p = plan(request, template_supports_tools=self.template.supports_tools)  # the same 400s as a real engine
        tokens = list(self.template.render(p.messages, tools=p.template_tools).encode())
        return self._prepared(tokens, request.sampling, request.n, "messages", tool_calls=p.tool_calls)

    async def prepare_completion(self, request: CompletionRequest, cpu: CpuPool) -> FakePrepared:
        if isinstance(request.prompt, str):
            tokens = list(request.prompt.encode())
        else:
            check_prompt_ids(request.prompt, self.vocab_size)
            tokens = list(request.prompt)
        echo = bytes(t for t in tokens if t < 256).decode(errors="replace") if request.echo else ""
        return self._prepared(tokens or [END], request.sampling, request.n, "prompt", echo=echo)

    def _prepared(
        self, tokens: list[int], params: SamplingParams, n: int, param: str, *, echo: str = "", tool_calls: bool = False
    ) -> FakePrepared:
        max_new = fit(params, n, len(tokens), n_ctx=self.n_ctx, n_vocab=self.vocab_size, max_n=self.n_parallel, param=param)
        return FakePrepared(tuple(tokens), params, n, echo, tool_calls, max_new)

    def generate(self, prepared: FakePrepared, priority: Priority = "interactive") -> AsyncIterator[GenerationEvent]:  # type: ignore[override]
        self.priorities.append(priority)  # tests read which queue each request asked for
        if self._waiting >= self.max_queue:
            raise Overloaded("The model is at capacity and its queue is full. Please retry shortly.")
        self._waiting += 1
        stream = _FakeStream(self, prepared)
        return ToolCallEvents(stream, prepared.n) if prepared.tool_calls else stream

    def _tokens(self, prepared: FakePrepared, choice: int) -> list[int]:
        if self.script is not None:
            return [*self.script[choice % len(self.script)].encode(), END]
        digest = hashlib.sha256(bytes(b % 256 for b in prepared.tokens)).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big") ^ ((prepared.params.seed or 0) + choice))
        if prepared.params.seed is None and prepared.params.temperature > 0:
            rng = random.Random()
        text = " ".join(rng.choice(WORDS) for _ in range(self.words))
        return [*text.encode(), END]

    async def _run(self, prepared: FakePrepared) -> AsyncIterator[GenerationEvent]:
        try:
            await self._slots.acquire()
        except BaseException:
            self.cancelled += 1
            raise
        finally:
            self._waiting -= 1
        self.running += prepared.n
        try:
            params = prepared.params
            streams = [self._tokens(prepared, c) for c in range(prepared.n)]
            texts = [TextStream(params.stop) for _ in range(prepared.n)]
            done = [False] * prepared.n
            reported = [0] * prepared.n
            step = 0
            while not all(done):
                for c in range(prepared.n):
                    if done[c]:
                        continue
                    token = streams[c][step]
                    reason = None
                    if token == END:
                        out, reason = texts[c].flush(), "stop"
                    else:
                        out = texts[c].feed(bytes([token]), self._logprob(token, params.top_logprobs))
                        if out.stopped:
                            reason = "stop"
                        elif params.max_tokens is not None and step + 1 >= params.max_tokens:
                            reason = "length"
                            tail = texts[c].flush()
                            out.text += tail.text
                            out.logprobs += tail.logprobs
                    if out.text or out.logprobs:
                        yield TextDelta(c, out.text, tuple(out.logprobs), step + 1 - reported[c])
                        reported[c] = step + 1
                    if reason:
                        done[c] = True
                        yield Finished(c, reason, step + 1)  # type: ignore[arg-type]
                step += 1
                await asyncio.sleep(self.delay_s)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        finally:
            self.running -= prepared.n
            self._slots.release()

    def _logprob(self, token: int, top: int | None) -> TokenLogprob | None:
        if top is None:
            return None
        piece = bytes([token])
        alts = tuple(TopLogprob(chr(65 + i), math.log(0.5 / (i + 1)), (65 + i,)) for i in range(top))
        return TokenLogprob(piece.decode(errors="replace"), math.log(0.5), (token,), alts)

    def capabilities(self) -> dict[str, Any]:
        return chat_capabilities(context_length=self.n_ctx, max_n=self.n_parallel)

    def stats(self) -> dict[str, Any]:
        return {"running_sequences": self.running, "queued_requests": self._waiting, "cancelled": self.cancelled}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class _FakeStream:
    """One request's events; closing it before the first read still gives its queue place back."""

    def __init__(self, engine: FakeEngine, prepared: FakePrepared) -> None:
        self._engine = engine
        self._gen = engine._run(prepared)
        self._started = False
        self._closed = False

    def __aiter__(self) -> _FakeStream:
        return self

    async def __anext__(self) -> GenerationEvent:
        self._started = True
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._started:
            self._engine._waiting -= 1
            self._engine.cancelled += 1
        await self._gen.aclose()
