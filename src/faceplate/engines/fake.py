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
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

from faceplate.engines.base import Finished, GenerationEvent, GenerationRequest, TextDelta, TokenLogprob, TopLogprob
from faceplate.engines.chat_template import ChatTemplate
from faceplate.engines.textstream import TextStream
from faceplate.errors import InvalidRequest, Overloaded

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "héllo", "wörld", "日本", "🙂", "."]
END = 256


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
        self.words = words  # answer length before the end token
        self.template = ChatTemplate(None, {})
        self.running = 0
        self.cancelled = 0
        self.delay_s = 0.0  # per token; tests raise it to hold requests open
        self._slots = asyncio.Semaphore(n_parallel)
        self._waiting = 0

    @property
    def template_supports_tools(self) -> bool:
        return self.template.supports_tools

    def render_chat(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None) -> str:
        return self.template.render(messages, tools=tools)

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> list[int]:
        return list(text.encode())

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(t for t in tokens if t < 256).decode(errors="replace")

    def token_bytes(self, token: int) -> bytes:
        return bytes([token]) if token < 256 else b""

    async def prepare(self, request: GenerationRequest) -> None:
        return None  # constraints were validated when translated; the fake does not apply them

    def check_admission(self, request: GenerationRequest) -> None:
        if request.n > self.n_parallel:
            raise InvalidRequest(f"n={request.n} is more than this model can generate at once ({self.n_parallel}).", param="n")
        if self._waiting >= self.max_queue:
            raise Overloaded("The model is at capacity and its queue is full. Please retry shortly.")

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        self.check_admission(request)
        self._waiting += 1
        return self._run(request)

    def _tokens(self, request: GenerationRequest, choice: int) -> list[int]:
        digest = hashlib.sha256(bytes(b % 256 for b in request.prompt_tokens)).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big") ^ ((request.params.seed or 0) + choice))
        if request.params.seed is None and request.params.temperature > 0:
            rng = random.Random()
        text = " ".join(rng.choice(WORDS) for _ in range(self.words))
        return [*text.encode(), END]

    async def _run(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        admitted = False
        try:
            await self._slots.acquire()
            admitted = True
            self._waiting -= 1
            self.running += request.n
            streams = [self._tokens(request, c) for c in range(request.n)]
            texts = [TextStream(request.params.stop) for _ in range(request.n)]
            done = [False] * request.n
            reported = [0] * request.n
            step = 0
            limit = request.params.max_tokens
            while not all(done):
                for c in range(request.n):
                    if done[c]:
                        continue
                    token = streams[c][step]
                    reason = None
                    if token == END:
                        out, reason = texts[c].flush(), "stop"
                    else:
                        out = texts[c].feed(bytes([token]), self._logprob(token, request.params.top_logprobs))
                        if out.stopped:
                            reason = "stop"
                        elif limit is not None and step + 1 >= limit:
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
            if admitted:
                self.running -= request.n
                self._slots.release()
            else:
                self._waiting -= 1

    def _logprob(self, token: int, top: int | None) -> TokenLogprob | None:
        if top is None:
            return None
        piece = bytes([token])
        alts = tuple(TopLogprob(chr(65 + i), math.log(0.5 / (i + 1)), (65 + i,)) for i in range(top))
        return TokenLogprob(piece.decode(errors="replace"), math.log(0.5), (token,), alts)

    def stats(self) -> dict[str, Any]:
        return {"running_sequences": self.running, "queued_requests": self._waiting, "cancelled": self.cancelled}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
