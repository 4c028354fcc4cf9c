"""Engine-neutral requests, events and the two engine protocols.

No HTTP and no wire schema here: ``translate.py`` converts the OpenAI request into
these frozen dataclasses, and engine events back into OpenAI objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]


@dataclass(frozen=True)
class Constraint:
    """A grammar the output must match: ``spec`` is an llguidance grammar (JSON-schema or Lark based).

    ``kind`` says what it came from (json_schema, json_object, tool_calls); ``param`` names the
    request field to blame if it cannot be compiled.
    """

    kind: str
    spec: str
    param: str = "response_format"


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int | None = None  # None: until the context is full
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    top_logprobs: int | None = None  # None: no logprobs; 0..20 alternatives otherwise
    constraint: Constraint | None = None
    ignore_eos: bool = False


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_tokens: tuple[int, ...]
    params: SamplingParams
    n: int = 1


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
class Finished:
    index: int
    reason: FinishReason
    completion_tokens: int


GenerationEvent = TextDelta | Finished


@runtime_checkable
class ChatEngine(Protocol):
    """A text-generation model. ``generate`` yields events for every choice until each has Finished.

    Closing the iterator early (client gone) cancels the work and frees its resources.
    """

    model_id: str
    kind: Literal["chat"]
    n_ctx: int
    vocab_size: int
    template_supports_tools: bool

    def render_chat(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None) -> str: ...

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def token_bytes(self, token: int) -> bytes: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]: ...

    async def prepare(self, request: GenerationRequest) -> None:
        """Engine-specific validation that may take a moment (compiling a grammar); raises a 400."""
        ...

    def check_admission(self, request: GenerationRequest) -> None:
        """Raise Overloaded now, before a stream starts, when the queue is full."""
        ...

    def stats(self) -> dict[str, Any]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


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

    def count_tokens(self, inputs: Sequence[str | Sequence[int]]) -> list[int]: ...

    async def embed(self, inputs: Sequence[str | Sequence[int]]) -> EmbeddingResult: ...

    def stats(self) -> dict[str, Any]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


Engine = ChatEngine | EmbeddingEngine
