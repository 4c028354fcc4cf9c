"""Engine events -> legacy text_completion chunks and objects."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from faceplate.engines.base import Finished, GenerationEvent, TextDelta, TokenLogprob
from faceplate.translate.common import SYSTEM_FINGERPRINT, Choices, finish_reason, finite, usage


def legacy_logprobs(lps: Sequence[TokenLogprob], offset: int) -> dict[str, Any]:
    offsets = []
    for lp in lps:
        offsets.append(offset)
        offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in lps],
        "token_logprobs": [finite(lp.logprob) for lp in lps],
        "top_logprobs": [{t.token: finite(t.logprob) for t in lp.top} for lp in lps],
        "text_offset": offsets,
    }


@dataclass
class CompletionTranslator:
    id: str
    model: str
    logprobs: bool
    include_usage: bool
    echo_texts: list[str]  # per choice: the prompt text to echo, or ""
    created: int = field(default_factory=lambda: int(time.time()))
    _offsets: dict[int, int] = field(default_factory=dict)

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def opening(self) -> list[dict[str, Any]]:
        return [
            self._chunk([{"index": i, "text": echo, "logprobs": None, "finish_reason": None}])
            for i, echo in enumerate(self.echo_texts)
            if echo
        ]

    def events(self, ev: GenerationEvent) -> list[dict[str, Any]]:
        if isinstance(ev, TextDelta):
            if not ev.text and not ev.logprobs:
                return []
            offset = self._offsets.get(ev.index, len(self.echo_texts[ev.index]))
            lp = legacy_logprobs(ev.logprobs, offset) if self.logprobs else None
            self._offsets[ev.index] = offset + len(ev.text)
            return [self._chunk([{"index": ev.index, "text": ev.text, "logprobs": lp, "finish_reason": None}])]
        if isinstance(ev, Finished):
            return [self._chunk([{"index": ev.index, "text": "", "logprobs": None, "finish_reason": finish_reason(ev)}])]
        return []  # completions have no tool calls

    def usage_chunk(self, prompt_tokens: int, choices: Choices) -> dict[str, Any]:
        chunk = self._chunk([])
        chunk["usage"] = usage(prompt_tokens, choices.completion_tokens, chat=False)
        return chunk

    def build(self, choices: Choices, prompt_tokens: int) -> dict[str, Any]:
        out = []
        for i, c in enumerate(choices.items):
            echo = self.echo_texts[i]
            out.append(
                {
                    "index": i,
                    "text": echo + "".join(c.text),
                    "logprobs": legacy_logprobs(c.logprobs, len(echo)) if self.logprobs else None,
                    "finish_reason": c.finish_reason or "stop",
                }
            )
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": out,
            "usage": usage(prompt_tokens, choices.completion_tokens, chat=False),
        }
