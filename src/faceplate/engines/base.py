"""Engine-neutral requests, events and the two engine interfaces.

No HTTP and no wire schema here. A chat engine takes *messages* (with tools, tool choice,
response format, sampling, ``n``), not tokens: the local llama.cpp engine keeps its chat
template, tokenizer, prefix cache and grammars inside, and a remote OpenAI-compatible
engine implements the same interface with no tokenizer at all. Token-level facts (token
counts, logprob bytes) travel on the events.

Two phases, so a request is metered between them:
- ``prepare`` validates and does the CPU work (template, tokenization, grammar) in the
  given ``CpuPool``, raising 400s; the result knows its prompt token count;
- ``generate`` queues it (503 when the engine is full) and yields events until every
  choice has Finished. Closing the iterator early cancels the work and frees its slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]
# Who is waiting: a client ("interactive") or a Batch API line ("batch"). An engine admits
# interactive work first and caps the slots batch work may hold, so batches never starve clients.
Priority = Literal["interactive", "batch"]
T = TypeVar("T")


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int | None = None  # None: until the context is full
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # token ids of the model's own vocabulary
    top_logprobs: int | None = None  # None: no logprobs; 0..20 alternatives otherwise
    ignore_eos: bool = False
    top_k: int = 0  # the extras other servers accept: 0 / 0.0 / 1.0 mean off
    min_p: float = 0.0
    repetition_penalty: float = 1.0


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the wire carries it


@dataclass(frozen=True)
class Message:
    """One chat turn. ``role`` is system, user, assistant or tool (developer arrives as system)."""

    role: str
    content: str | None
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The message as OpenAI's wire and Hugging Face chat templates both spell it."""
        item: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            item["name"] = self.name
        if self.tool_calls:
            item["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            item["tool_call_id"] = self.tool_call_id
        return item


@dataclass(frozen=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolChoice:
    """none | auto | required, or ``function`` with ``name``: call exactly that one."""

    mode: Literal["none", "auto", "required", "function"] = "auto"
    name: str | None = None


@dataclass(frozen=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None  # json_schema only
    name: str | None = None
    strict: bool = False
    param: str = "response_format"  # the request field to blame when the schema is bad


@dataclass(frozen=True)
class ChatRequest:
    request_id: str
    messages: tuple[Message, ...]
    sampling: SamplingParams = SamplingParams()
    n: int = 1
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = ToolChoice("none")
    parallel_tool_calls: bool = True
    response_format: ResponseFormat = ResponseFormat()
    tools_param: str = "tools"  # the request field to blame for a bad tool (``functions`` for the legacy form)
    affinity: str | None = None  # what keeps a conversation on one replica: prompt_cache_key, user, a Responses chain


@dataclass(frozen=True)
class CompletionRequest:
    """A legacy text completion of one prompt: text, or token ids of the model's own vocabulary."""

    request_id: str
    prompt: str | tuple[int, ...]
    sampling: SamplingParams = SamplingParams()
    n: int = 1
    echo: bool = False
    affinity: str | None = None


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """A cheap guess (about four characters a token) to admit with, before any tokenizer has run;
    usage settles to the real count (a remote engine's stands until its upstream reports one)."""
    chars = sum(len(m.content or "") + sum(len(c.arguments) for c in m.tool_calls) for m in request.messages)
    return chars // 4 + 4 * len(request.messages)


class Prepared(Protocol):
    """A request an engine has checked and made ready to run."""

    prompt_tokens: int
    max_new_tokens: int  # most tokens a choice may generate (for the rate-limit reservation)
    echo_text: str  # completions with echo: the prompt as text; "" otherwise


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...]


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """New text for choice ``index``; ``logprobs`` are the tokens this text came from."""

    index: int
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    tokens: int = 0  # tokens generated since the previous delta of this choice (for usage if cancelled)


@dataclass(frozen=True)
class ToolCallDelta:
    """Part of tool call ``call`` of choice ``index``: its first delta has ``id`` and ``name``."""

    index: int
    call: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Finished:
    index: int
    reason: FinishReason
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens served from a cache


GenerationEvent = TextDelta | ToolCallDelta | Finished


# ---------------------------------------------------------------- engines


class CpuPool(Protocol):
    """A bounded executor for CPU work (503 when saturated); separate from store I/O."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T: ...


@runtime_checkable
class ChatEngine(Protocol):
    model_id: str
    kind: Literal["chat"]
    max_jobs: int  # most requests it can hold queued at once: a request needing more is a 400, not a 503

    async def prepare_chat(self, request: ChatRequest, cpu: CpuPool) -> Prepared:
        """Validate and ready a chat request (400 on bad input); knows its prompt token count."""
        ...

    async def prepare_completion(self, request: CompletionRequest, cpu: CpuPool) -> Prepared: ...

    def generate(self, prepared: Prepared, priority: Priority = "interactive") -> AsyncIterator[GenerationEvent]:
        """Queue it now (Overloaded if the engine is full) and return its events."""
        ...

    def capabilities(self) -> dict[str, Any]:
        """What it supports (tools, json_schema, logprobs, most n, context length), shown on /v1/models/{id}."""
        ...

    def stats(self) -> dict[str, Any]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def chat_capabilities(*, context_length: int, max_n: int) -> dict[str, Any]:
    """A local engine's: everything under its own grammar and sampler."""
    return {
        "chat_completions": True,
        "completions": True,
        "embeddings": False,
        "tools": True,
        "tool_choice": ["none", "auto", "required", "function"],
        "parallel_tool_calls": True,
        "response_format": ["text", "json_object", "json_schema"],
        "json_schema_strict": True,
        "logprobs": True,
        "max_top_logprobs": 20,
        "max_n": max_n,
        "context_length": context_length,
        "seed": True,
    }


def embedding_capabilities(engine: EmbeddingEngine) -> dict[str, Any]:
    return {
        "chat_completions": False,
        "completions": False,
        "embeddings": True,
        "dimensions": engine.dimensions,
        "shorter_dimensions": engine.supports_dimensions,
        "max_input_tokens": engine.max_input_tokens,
        "encoding_format": ["float", "base64"],
    }


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: np.ndarray  # float32, shape (n_inputs, dimensions), L2-normalised when the model normalises
    token_counts: tuple[int, ...] = field(default=())


@runtime_checkable
class EmbeddingEngine(Protocol):
    model_id: str
    kind: Literal["embedding"]
    dimensions: int
    max_input_tokens: int
    supports_dimensions: bool  # truncation + renormalisation is meaningful (Matryoshka-style or opted in)
    token_ids: Literal["openai", "model"]  # token-array inputs: OpenAI's cl100k_base ids, or the model's own

    def count_tokens(self, inputs: Sequence[str | Sequence[int]]) -> list[int]: ...

    async def embed(self, inputs: Sequence[str | Sequence[int]], priority: Priority = "interactive") -> EmbeddingResult: ...

    def stats(self) -> dict[str, Any]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


Engine = ChatEngine | EmbeddingEngine
