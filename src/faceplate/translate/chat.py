"""Engine events -> chat.completion.chunk objects and the collected chat.completion."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from faceplate.engines.base import Finished, GenerationEvent, TextDelta, TokenLogprob, ToolCallDelta
from faceplate.translate.common import SYSTEM_FINGERPRINT, Choices, finish_reason, finite, usage

ToolsMode = Literal["tools", "functions"] | None  # how calls are reported: tool_calls, or the legacy function_call


def chat_logprob(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": finite(lp.logprob),
        "bytes": list(lp.bytes),
        "top_logprobs": [{"token": t.token, "logprob": finite(t.logprob), "bytes": list(t.bytes)} for t in lp.top],
    }


def _reason(reason: str, mode: ToolsMode) -> str:
    return "function_call" if reason == "tool_calls" and mode == "functions" else reason


@dataclass
class ChatTranslator:
    id: str
    model: str
    n: int
    logprobs: bool
    include_usage: bool
    tools_mode: ToolsMode = None
    created: int = field(default_factory=lambda: int(time.time()))

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "service_tier": "default",
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _one(
        self, index: int, delta: dict[str, Any], lp: dict[str, Any] | None = None, reason: str | None = None
    ) -> dict[str, Any]:
        return self._chunk([{"index": index, "delta": delta, "logprobs": lp, "finish_reason": reason}])

    def opening(self) -> list[dict[str, Any]]:
        return [self._one(i, {"role": "assistant", "content": "", "refusal": None}) for i in range(self.n)]

    def _call_delta(self, ev: ToolCallDelta) -> dict[str, Any]:
        if self.tools_mode == "functions":
            return {"function_call": {"name": ev.name, "arguments": ev.arguments} if ev.name else {"arguments": ev.arguments}}
        if ev.name is not None:
            call = {"index": ev.call, "id": ev.id, "type": "function", "function": {"name": ev.name, "arguments": ev.arguments}}
        else:
            call = {"index": ev.call, "function": {"arguments": ev.arguments}}
        return {"tool_calls": [call]}

    def events(self, ev: GenerationEvent) -> list[dict[str, Any]]:
        if isinstance(ev, TextDelta):
            if not ev.text and not ev.logprobs:
                return []
            lp = {"content": [chat_logprob(x) for x in ev.logprobs], "refusal": None} if self.logprobs else None
            return [self._one(ev.index, {"content": ev.text} if ev.text else {}, lp)]
        if isinstance(ev, ToolCallDelta):
            return [self._one(ev.index, self._call_delta(ev))]
        assert isinstance(ev, Finished)
        return [self._one(ev.index, {}, None, _reason(finish_reason(ev), self.tools_mode))]

    def usage_chunk(self, prompt_tokens: int, choices: Choices) -> dict[str, Any]:
        chunk = self._chunk([])
        chunk["usage"] = usage(prompt_tokens, choices.completion_tokens, cached_tokens=choices.cached_tokens)
        return chunk

    def build(self, choices: Choices, prompt_tokens: int) -> dict[str, Any]:
        out = []
        for i, c in enumerate(choices.items):
            lp = {"content": [chat_logprob(x) for x in c.logprobs], "refusal": None} if self.logprobs else None
            text = "".join(c.text)
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            if c.calls:
                message["content"] = text or None
                if self.tools_mode == "functions":
                    first = c.calls[0]
                    message["function_call"] = {"name": first.name, "arguments": "".join(first.arguments)}
                else:
                    message["tool_calls"] = [
                        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": "".join(call.arguments)}}
                        for call in c.calls
                    ]
            reason = _reason(c.finish_reason or "stop", self.tools_mode)
            out.append({"index": i, "message": message, "logprobs": lp, "finish_reason": reason})
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": out,
            "usage": usage(prompt_tokens, choices.completion_tokens, cached_tokens=choices.cached_tokens),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
