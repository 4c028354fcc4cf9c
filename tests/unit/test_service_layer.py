"""The service layer with no HTTP at all, over a tiny message-level engine that has no tokenizer.

This is the path a batch worker or the Responses API takes, and the shape a remote
OpenAI-compatible engine has: it gets messages, tools and sampling, never token ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from faceplate.access.auth import ANONYMOUS, Authenticator, Principal
from faceplate.access.limits import MemoryLimiter
from faceplate.config import Settings
from faceplate.engines.base import (
    ChatEngine,
    ChatRequest,
    CompletionRequest,
    CpuPool,
    Finished,
    GenerationEvent,
    TextDelta,
    ToolCallDelta,
)
from faceplate.engines.registry import Registry
from faceplate.errors import RateLimited
from faceplate.protocol.chat import ChatCompletionRequest
from faceplate.service import generate
from faceplate.service.cpu import InlineCpu
from faceplate.service.services import Services
from tests import spec
from tests.recorders import Recorder


@dataclass(frozen=True)
class Job:
    prompt_tokens: int
    max_new_tokens: int
    echo_text: str
    words: tuple[str, ...]
    call: str | None  # the tool to call, if any
    n: int


class MessageEngine:
    """Echoes the last user message word by word, or calls the first tool. No tokenizer anywhere."""

    kind: Literal["chat"] = "chat"
    max_jobs = 16

    def __init__(self, model_id: str = "remote-like", *, fail_after: int | None = None) -> None:
        self.model_id = model_id
        self.fail_after = fail_after
        self.open_streams = 0
        self.closed_unstarted = 0
        self.prepared = 0

    async def prepare_chat(self, request: ChatRequest, cpu: CpuPool) -> Job:
        self.prepared += 1
        words = tuple((request.messages[-1].content or "").split())
        call = request.tools[0].name if request.tools and request.tool_choice.mode != "none" else None
        prompt = sum(len((m.content or "").split()) for m in request.messages)  # "counts tokens" without a tokenizer
        return Job(prompt, request.sampling.max_tokens or 100, "", words, call, request.n)

    async def prepare_completion(self, request: CompletionRequest, cpu: CpuPool) -> Job:
        text = request.prompt if isinstance(request.prompt, str) else ""
        return Job(len(text.split()), 16, text if request.echo else "", tuple(text.split()), None, request.n)

    def generate(self, prepared: Job, priority: str = "interactive") -> AsyncIterator[GenerationEvent]:  # type: ignore[override]
        self.open_streams += 1
        return Stream(self, prepared)

    def stats(self) -> dict[str, Any]:
        return {"open_streams": self.open_streams}

    def capabilities(self) -> dict[str, Any]:
        return {"chat_completions": True, "tools": True}

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class Stream:
    def __init__(self, engine: MessageEngine, job: Job) -> None:
        self.engine, self.job = engine, job
        self.started = self.closed = False
        self._gen = self._events()

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> GenerationEvent:
        self.started = True
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.engine.open_streams -= 1
            self.engine.closed_unstarted += not self.started
            await self._gen.aclose()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        for choice in range(self.job.n):
            if self.job.call:
                yield ToolCallDelta(choice, 0, f"call_{choice}", self.job.call, "")
                yield ToolCallDelta(choice, 0, arguments='{"city":')
                yield ToolCallDelta(choice, 0, arguments='"Paris"}')
                yield Finished(choice, "tool_calls", 5)
                continue
            for i, word in enumerate(self.job.words[: self.job.max_new_tokens]):
                if self.engine.fail_after is not None and i >= self.engine.fail_after:
                    raise RuntimeError("upstream broke")
                yield TextDelta(choice, (" " if i else "") + word, tokens=1)
                await asyncio.sleep(0)
            yield Finished(choice, "stop", min(len(self.job.words), self.job.max_new_tokens), cached_tokens=2)


def services(engine: MessageEngine, **kw: Any) -> tuple[Services, Recorder]:
    usage = Recorder()
    svc = Services(Settings(), Registry([engine]), Authenticator([]), usage=usage, cpu=InlineCpu(), **kw)  # type: ignore[arg-type]
    return svc, usage


def body(**kw: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "remote-like", "messages": [{"role": "user", "content": "one two three"}], **kw}
    )


def test_the_engine_fits_the_interface() -> None:
    assert isinstance(MessageEngine(), ChatEngine)
    assert not hasattr(MessageEngine(), "tokenize")


async def test_collected_chat_completion_without_http() -> None:
    engine = MessageEngine()
    svc, usage = services(engine)
    reply = await generate.chat(svc, ANONYMOUS, body(n=2))
    obj = await reply.collect()
    spec.validate_chat_completion(obj, profile="strict")
    assert [c["message"]["content"] for c in obj["choices"]] == ["one two three"] * 2
    assert obj["usage"]["prompt_tokens"] == 3 and obj["usage"]["completion_tokens"] == 6
    assert obj["usage"]["prompt_tokens_details"]["cached_tokens"] == 2
    assert [(r.status, r.prompt_tokens, r.completion_tokens) for r in usage.records] == [(200, 3, 6)]
    assert engine.open_streams == 0


async def test_streamed_tool_calls_without_http() -> None:
    engine = MessageEngine()
    svc, usage = services(engine)
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    reply = await generate.chat(svc, ANONYMOUS, body(tools=tools, stream=True, stream_options={"include_usage": True}))
    chunks = [c async for c in reply.chunks()]
    for c in chunks:
        spec.validate_chat_chunk(c)
    calls = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "call_0", "type": "function", "function": {"name": "weather", "arguments": ""}}
    assert "".join(tc["function"]["arguments"] for tc in calls) == '{"city":"Paris"}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert [r.status for r in usage.records] == [200]


async def test_legacy_functions_come_back_as_function_call() -> None:
    svc, _ = services(MessageEngine())
    functions = [{"name": "weather", "parameters": {"type": "object"}}]
    obj = await (await generate.chat(svc, ANONYMOUS, body(functions=functions))).collect()
    choice = obj["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"] == {"name": "weather", "arguments": '{"city":"Paris"}'}


async def test_a_reply_closed_before_it_started_frees_everything_once() -> None:
    engine = MessageEngine()
    svc, usage = services(engine)
    reply = await generate.chat(svc, ANONYMOUS, body(stream=True))
    assert engine.open_streams == 1
    await reply.aclose()
    await reply.aclose()
    assert engine.open_streams == 0 and engine.closed_unstarted == 1
    assert [r.status for r in usage.records] == [499]


async def test_a_reply_abandoned_mid_stream_counts_what_was_generated() -> None:
    engine = MessageEngine()
    svc, usage = services(engine)
    reply = await generate.chat(svc, ANONYMOUS, body(stream=True))
    chunks = reply.chunks()
    await chunks.__anext__()  # the role chunk
    await chunks.__anext__()  # "one"
    await chunks.aclose()
    assert engine.open_streams == 0
    assert [(r.status, r.completion_tokens) for r in usage.records] == [(499, 1)]


async def test_an_engine_bug_is_recorded_as_500_not_499() -> None:
    engine = MessageEngine(fail_after=1)
    svc, usage = services(engine)
    reply = await generate.chat(svc, ANONYMOUS, body())
    with pytest.raises(RuntimeError):
        await reply.collect()
    assert [(r.status, r.completion_tokens) for r in usage.records] == [(500, 1)]
    assert engine.open_streams == 0


async def test_limits_are_admitted_before_prepare_and_settled_to_the_real_count() -> None:
    clock = [0.0]
    limiter = MemoryLimiter(window_s=60, clock=lambda: clock[0])
    engine = MessageEngine()
    svc, usage = services(engine, limiter=limiter)
    key = Principal(key_id="k1", name="small", rpm=1, tpm=1000)
    # No max_tokens: a bounded reservation (token_reservation), never the whole context.
    reply = await generate.chat(svc, key, body())
    await reply.collect()
    assert usage.records[-1].status == 200
    with pytest.raises(RateLimited) as over:  # the rpm check fails before the engine prepares anything
        await generate.chat(svc, key, body())
    assert over.value.type == "requests"
    assert engine.prepared == 1
    assert [r.status for r in usage.records] == [200, 429]
