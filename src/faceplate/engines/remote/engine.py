"""Remote engines: a pool of upstream servers behind the same interfaces as the local engines.

The service layer cannot tell them apart: a chat request is checked against what every member
of the pool honours (a 400 for anything one would drop), its prompt tokens are estimated to
admit it and settled to the upstream's own count when it finishes, and ``n`` above what the
upstream allows is fanned out as several requests whose choices are merged by index.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from faceplate.engines.base import (
    ChatRequest,
    CompletionRequest,
    CpuPool,
    EmbeddingResult,
    GenerationEvent,
    Prepared,
    Priority,
    estimate_prompt_tokens,
)
from faceplate.engines.remote.client import Unreachable
from faceplate.engines.remote.pool import Pool, Upstream
from faceplate.engines.remote.requests import chat_body, completion_body
from faceplate.engines.remote.routing import affinity_key
from faceplate.engines.remote.stream import RemotePrepared, RemoteStream
from faceplate.errors import FaceplateError, UpstreamFailed

MAX_JOBS = 128
EMBED_TIMEOUT_S = 120.0


def _parts(n: int, max_n: int) -> list[int]:
    """Choices per upstream request: all in one when it takes ``n``, else one request per choice."""
    return [n] if n <= max_n else [1] * n


class RemoteChatEngine:
    kind: Literal["chat"] = "chat"

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.model_id = pool.model_id
        self.max_jobs = MAX_JOBS

    def _prepared(self, request: Any, path: str, build: Any, estimate: int, echo: str = "") -> RemotePrepared:
        caps = self.pool.caps
        parts = _parts(request.n, caps.max_n)
        first = self.pool.members[0]
        build(request, first.model, parts[0], first.kind, caps)  # refuses here what no member would honour

        def body_for(member: Upstream, req: Any, n: int) -> dict[str, Any]:
            return build(req, member.model, n, member.kind, caps)  # type: ignore[no-any-return]

        limit = request.sampling.max_tokens or 0
        return RemotePrepared(request, path, body_for, estimate, limit, echo_text=echo, parts=parts)

    async def prepare_chat(self, request: ChatRequest, cpu: CpuPool) -> Prepared:
        return self._prepared(request, "/v1/chat/completions", chat_body, estimate_prompt_tokens(request))

    async def prepare_completion(self, request: CompletionRequest, cpu: CpuPool) -> Prepared:
        prompt = request.prompt
        estimate = len(prompt) // 4 + 1 if isinstance(prompt, str) else len(prompt)
        echo = prompt if request.echo and isinstance(prompt, str) else ""
        return self._prepared(request, "/v1/completions", completion_body, estimate, echo)

    def generate(self, prepared: Prepared, priority: Priority = "interactive") -> AsyncIterator[GenerationEvent]:
        assert isinstance(prepared, RemotePrepared)
        return RemoteStream(self.pool, prepared, priority)

    async def count_prompt(self, prepared: Prepared) -> int:
        """The upstream's own count of a prompt (no tokenizer here): one token generated and the usage read.
        The prefill it costs warms the upstream's prefix cache for the request that usually follows."""
        assert isinstance(prepared, RemotePrepared)
        request = replace(prepared.request, n=1, sampling=replace(prepared.request.sampling, max_tokens=1, top_logprobs=None))
        probe = replace(prepared, request=request, parts=[1])
        stream = RemoteStream(self.pool, probe)
        try:
            async for _ in stream:
                pass
        finally:
            await stream.aclose()
        return probe.prompt_tokens

    def capabilities(self) -> dict[str, Any]:
        caps = self.pool.caps
        return {
            "chat_completions": caps.chat,
            "completions": caps.completions,
            "embeddings": False,
            "tools": caps.tools,
            "tool_choice": ["none", "auto", "required", "function"] if caps.tool_choice_forced else ["none", "auto"],
            "parallel_tool_calls": caps.tools,
            "response_format": ["text", "json_object", "json_schema"] if caps.json_schema else ["text"],
            "logprobs": caps.logprobs,
            "max_n": MAX_JOBS,  # above the upstream's own limit, choices are fanned out
            "upstreams": len(self.pool.members),
        }

    def stats(self) -> dict[str, Any]:
        return self.pool.stats()

    async def start(self) -> None:
        self.pool.start()  # health checks, load polls, shared circuits

    async def close(self) -> None:
        await self.pool.close()


class RemoteEmbeddingEngine:
    kind: Literal["embedding"] = "embedding"
    token_ids: Literal["openai", "model"] = "model"  # token arrays go upstream as they are
    supports_dimensions = False
    max_input_tokens = 1 << 20  # the upstream enforces its own limit (a 400 passed on)

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.model_id = pool.model_id

    @property
    def dimensions(self) -> int:
        return self.pool.caps.embedding_dimensions or 0

    def count_tokens(self, inputs: Sequence[str | Sequence[int]]) -> list[int]:
        """An estimate to admit with; usage settles to the upstream's count."""
        return [len(x) // 4 + 1 if isinstance(x, str) else len(x) for x in inputs]

    async def embed(self, inputs: Sequence[str | Sequence[int]], priority: Priority = "interactive") -> EmbeddingResult:
        request = CompletionRequest("emb", inputs[0] if isinstance(inputs[0], str) else tuple(inputs[0]))
        key, tried = affinity_key(request), set()
        error: FaceplateError | None = None
        for _ in range(self.pool.routing.retries + 1):
            try:
                member = await self.pool.acquire(key, tried, priority)
            except FaceplateError as exc:
                raise (error or exc) from None
            tried.add(member)
            body = {"model": member.model, "input": [x if isinstance(x, str) else list(x) for x in inputs]}
            try:
                answer = await member.http.post_json("/v1/embeddings", body, EMBED_TIMEOUT_S)
                member.breaker.success()
                return _result(answer, len(inputs), self.count_tokens(inputs))
            except Unreachable as exc:
                error = exc.error
                self.pool.failed(member, hard=exc.hard, retry_after=exc.retry_after)
            finally:
                await self.pool.release(member, priority)
        raise error or UpstreamFailed("No upstream answered.")

    def stats(self) -> dict[str, Any]:
        return self.pool.stats()

    async def start(self) -> None:
        self.pool.start()

    async def close(self) -> None:
        await self.pool.close()


def _result(answer: Any, count: int, estimates: list[int]) -> EmbeddingResult:
    try:
        rows = sorted(answer["data"], key=lambda d: d["index"])
        vectors = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        raise UpstreamFailed("The upstream's embedding answer is not OpenAI's shape.") from None
    if vectors.ndim != 2 or len(vectors) != count:
        raise UpstreamFailed(f"The upstream answered {len(vectors)} embeddings for {count} inputs.")
    total = (answer.get("usage") or {}).get("prompt_tokens")
    if not isinstance(total, int):
        return EmbeddingResult(vectors, tuple(estimates))
    whole = sum(estimates) or 1  # the upstream's total, shared out as the estimates were
    counts = [total * e // whole for e in estimates]
    counts[-1] += total - sum(counts)
    return EmbeddingResult(vectors, tuple(counts))
