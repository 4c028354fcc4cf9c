"""The token-level request the llama.cpp scheduler runs: what ``LlamaCppEngine.prepare_*`` produces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faceplate.engines.base import SamplingParams


@dataclass(frozen=True)
class TokenRequest:
    request_id: str
    tokens: tuple[int, ...]  # the whole prompt, never empty (the scheduler refuses an empty one)
    params: SamplingParams
    n: int = 1
    grammar: Any = None  # an llguidance LLMatcher compiled by prepare; each sequence runs a copy
    tool_calls: bool = False  # parse tool-call markup out of the output into ToolCallDelta events
    echo_text: str = ""
    max_new_tokens: int = 0  # most tokens a choice may generate

    @property
    def prompt_tokens(self) -> int:
        return len(self.tokens)
