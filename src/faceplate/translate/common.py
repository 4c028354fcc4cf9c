"""What every wire family shares: ids, usage objects, and choices collected from events.

Non-streaming is the stream collected: ``Choices.add`` consumes exactly the events a
stream would send, so the two can never disagree.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from faceplate.engines.base import Finished, GenerationEvent, TextDelta, TokenLogprob, ToolCallDelta

SYSTEM_FINGERPRINT = "fp_faceplate"
LOGPROB_FLOOR = -9999.0  # OpenAI's value for "impossible": JSON has no -Infinity


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def finite(logprob: float) -> float:
    return logprob if math.isfinite(logprob) else LOGPROB_FLOOR


def usage(prompt_tokens: int, completion_tokens: int, *, cached_tokens: int = 0, chat: bool = True) -> dict[str, Any]:
    u: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if chat:
        u["prompt_tokens_details"] = {"cached_tokens": cached_tokens, "audio_tokens": 0}
        u["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return u


@dataclass
class CallText:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class Choice:
    """One choice, collected: text, tool calls, logprobs, how it ended and what it cost."""

    text: list[str] = field(default_factory=list)
    calls: list[CallText] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0


@dataclass
class Choices:
    """Every choice of one reply, filled from its events; counts what was generated even if cut short."""

    items: list[Choice]
    cached_tokens: int = 0

    @classmethod
    def of(cls, n: int) -> Choices:
        return cls([Choice() for _ in range(n)])

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.items)

    def add(self, ev: GenerationEvent) -> None:
        c = self.items[ev.index]
        if isinstance(ev, TextDelta):
            c.text.append(ev.text)
            c.logprobs.extend(ev.logprobs)
            c.completion_tokens += ev.tokens
        elif isinstance(ev, ToolCallDelta):
            while len(c.calls) <= ev.call:
                c.calls.append(CallText())
            call = c.calls[ev.call]
            call.id = ev.id or call.id
            call.name = ev.name or call.name
            call.arguments.append(ev.arguments)
        else:
            c.finish_reason = finish_reason(ev)
            c.completion_tokens = ev.completion_tokens
            self.cached_tokens = max(self.cached_tokens, ev.cached_tokens)


def finish_reason(ev: Finished) -> str:
    return "stop" if ev.reason == "cancelled" else ev.reason


class Translator(Protocol):
    """Engine events -> one wire family's stream chunks and collected object."""

    def opening(self) -> list[dict[str, Any]]: ...

    def events(self, ev: GenerationEvent) -> list[dict[str, Any]]: ...

    def usage_chunk(self, prompt_tokens: int, choices: Choices) -> dict[str, Any]: ...

    def build(self, choices: Choices, prompt_tokens: int) -> dict[str, Any]: ...
