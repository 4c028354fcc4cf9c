"""Wire <-> engine: OpenAI requests into GenerationRequests, engine events into OpenAI objects.

Non-streaming is the stream collected: ``collect_chat`` and ``collect_completion``
consume exactly the events a stream would send.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from faceplate.structured.plan import plan as structured
from faceplate.engines.base import (
    ChatEngine,
    Finished,
    GenerationEvent,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    TokenLogprob,
)
from faceplate.errors import ContextLengthExceeded, InvalidRequest
from faceplate.protocol.chat import ChatCompletionRequest, TextPart
from faceplate.protocol.completions import CompletionRequest
from faceplate.protocol.sampling import SamplingFields
from faceplate.structured.plan import ToolsMode
from faceplate.structured.tools import Piece, ToolCallParser

SYSTEM_FINGERPRINT = "fp_faceplate"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


# ---------------------------------------------------------------- wire -> engine


def _text_of(content: Any, param: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            parts.append(part.text)
        elif getattr(part, "type", None) == "refusal":
            parts.append(part.refusal)
        else:
            raise InvalidRequest(
                f"This model does not accept '{part.type}' content; only text parts are supported.",
                param=f"{param}[{j}].type",
            )
    return "".join(parts)


def chat_messages(body: ChatCompletionRequest) -> list[dict[str, Any]]:
    """Wire messages as plain dicts for a chat template (HF conventions: developer renders as system)."""
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(body.messages):
        param = f"messages[{i}].content"
        role = "system" if msg.role == "developer" else msg.role
        item: dict[str, Any] = {"role": role, "content": _text_of(msg.content, param)}
        if msg.role == "assistant":
            calls = msg.tool_calls or []
            if msg.function_call is not None:
                calls = [*calls]
                item["function_call"] = msg.function_call.model_dump()
            if calls:
                item["tool_calls"] = [c.model_dump() for c in calls]
        elif msg.role == "tool":
            item["tool_call_id"] = msg.tool_call_id
        elif msg.role == "function":
            item["role"], item["name"] = "tool", msg.name
        if getattr(msg, "name", None) and "name" not in item:
            item["name"] = msg.name
        out.append(item)
    return out


def sampling_params(
    body: SamplingFields,
    *,
    engine: ChatEngine,
    prompt_len: int,
    max_tokens: int | None,
    top_logprobs: int | None,
    param: str,
) -> SamplingParams:
    limit = engine.n_ctx
    if prompt_len >= limit:
        raise ContextLengthExceeded(prompt_len, limit, param=param)
    if max_tokens is not None and prompt_len + max_tokens > limit:
        raise ContextLengthExceeded(prompt_len, limit, requested=max_tokens, param=param)
    bias: list[tuple[int, float]] = []
    for key, value in (body.logit_bias or {}).items():
        token = int(key)
        if token >= engine.vocab_size:  # type: ignore[attr-defined]
            raise InvalidRequest(f"Invalid logit_bias: token id {token} is outside the vocabulary.", param="logit_bias")
        bias.append((token, float(value)))
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=body.stop_list(),
        seed=body.seed,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        logit_bias=tuple(bias),
        top_logprobs=top_logprobs,
    )


def chat_generation(body: ChatCompletionRequest, engine: ChatEngine, request_id: str) -> tuple[GenerationRequest, ToolsMode]:
    chat_plan = structured.plan(body, chat_messages(body), template_supports_tools=engine.template_supports_tools)
    prompt = engine.render_chat(chat_plan.messages, chat_plan.template_tools)
    tokens = engine.tokenize(prompt, add_special=False, parse_special=True)
    params = sampling_params(
        body,
        engine=engine,
        prompt_len=len(tokens),
        max_tokens=body.completion_limit(),
        top_logprobs=(body.top_logprobs or 0) if body.logprobs else None,
        param="messages",
    )
    params = replace(params, constraint=chat_plan.constraint)
    request = GenerationRequest(request_id=request_id, prompt_tokens=tuple(tokens), params=params, n=body.n or 1)
    return request, chat_plan.tools_mode


def completion_generations(body: CompletionRequest, engine: ChatEngine, request_id: str) -> list[GenerationRequest]:
    out = []
    for prompt in body.prompts():
        if isinstance(prompt, str):
            tokens = engine.tokenize(prompt, add_special=True, parse_special=False)
        else:
            vocab = engine.vocab_size  # type: ignore[attr-defined]
            if any(t < 0 or t >= vocab for t in prompt):
                raise InvalidRequest(f"Invalid 'prompt': token ids must be between 0 and {vocab - 1}.", param="prompt")
            tokens = list(prompt)
        params = sampling_params(
            body,
            engine=engine,
            prompt_len=len(tokens),
            max_tokens=16 if body.max_tokens is None else body.max_tokens,
            top_logprobs=body.logprobs,
            param="prompt",
        )
        out.append(GenerationRequest(request_id=request_id, prompt_tokens=tuple(tokens), params=params, n=body.n or 1))
    return out


# ---------------------------------------------------------------- engine -> wire


def usage(prompt_tokens: int, completion_tokens: int, *, chat: bool = True) -> dict[str, Any]:
    u: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if chat:
        u["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        u["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return u


def chat_logprob(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.bytes),
        "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)} for t in lp.top],
    }


@dataclass
class ChatStream:
    """Turns engine events into chat.completion.chunk objects (tool-call markup into tool_calls deltas)."""

    id: str
    model: str
    n: int
    logprobs: bool
    include_usage: bool
    tools_mode: ToolsMode = None
    created: int = field(default_factory=lambda: int(time.time()))
    parsers: list[ToolCallParser] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parsers = [ToolCallParser() for _ in range(self.n)] if self.tools_mode else []

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

    def opening(self) -> list[dict[str, Any]]:
        return [
            self._chunk(
                [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
            for i in range(self.n)
        ]

    def _delta(self, piece: Piece) -> dict[str, Any]:
        if piece.index < 0:
            return {"content": piece.content}
        if self.tools_mode == "functions":
            fn = {"name": piece.name, "arguments": piece.arguments or ""} if piece.name else {"arguments": piece.arguments}
            return {"function_call": fn}
        if piece.name is not None:
            call = {
                "index": piece.index,
                "id": piece.call_id,
                "type": "function",
                "function": {"name": piece.name, "arguments": ""},
            }
        else:
            call = {"index": piece.index, "function": {"arguments": piece.arguments}}
        return {"tool_calls": [call]}

    def _pieces_chunk(self, index: int, pieces: list[Piece], lp: dict[str, Any] | None) -> list[dict[str, Any]]:
        return [self._chunk([{"index": index, "delta": self._delta(p), "logprobs": lp, "finish_reason": None}]) for p in pieces]

    def events(self, ev: GenerationEvent) -> list[dict[str, Any]]:
        if isinstance(ev, TextDelta):
            if not ev.text and not ev.logprobs:
                return []
            lp = {"content": [chat_logprob(x) for x in ev.logprobs], "refusal": None} if self.logprobs else None
            if not self.parsers:
                return [self._chunk([{"index": ev.index, "delta": {"content": ev.text}, "logprobs": lp, "finish_reason": None}])]
            return self._pieces_chunk(ev.index, self.parsers[ev.index].feed(ev.text), lp)
        out: list[dict[str, Any]] = []
        reason = _finish(ev)
        if self.parsers:
            parser = self.parsers[ev.index]
            out = self._pieces_chunk(ev.index, parser.finish(), None)
            reason = _tool_finish(reason, parser, self.tools_mode)
        out.append(self._chunk([{"index": ev.index, "delta": {}, "logprobs": None, "finish_reason": reason}]))
        return out

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        chunk = self._chunk([])
        chunk["usage"] = usage(prompt_tokens, completion_tokens)
        return chunk


def _tool_finish(reason: str, parser: ToolCallParser, mode: ToolsMode) -> str:
    if reason == "stop" and parser.calls:
        return "function_call" if mode == "functions" else "tool_calls"
    return reason


def _finish(ev: Finished) -> str:
    return "stop" if ev.reason == "cancelled" else ev.reason


@dataclass
class ChoiceText:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0


async def collect(events: AsyncIterator[GenerationEvent], choices: list[ChoiceText]) -> list[ChoiceText]:
    """Fill ``choices`` from the events; if cancelled half-way, they still count what was generated."""
    async for ev in events:
        c = choices[ev.index]
        if isinstance(ev, TextDelta):
            c.text.append(ev.text)
            c.logprobs.extend(ev.logprobs)
            c.completion_tokens += ev.tokens
        else:
            c.finish_reason = _finish(ev)
            c.completion_tokens = ev.completion_tokens
    return choices


def chat_completion(stream: ChatStream, choices: Sequence[ChoiceText], prompt_tokens: int) -> dict[str, Any]:
    out = []
    for i, c in enumerate(choices):
        lp = {"content": [chat_logprob(x) for x in c.logprobs], "refusal": None} if stream.logprobs else None
        text = "".join(c.text)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        reason = c.finish_reason or "stop"
        if stream.tools_mode:
            parser = ToolCallParser()
            pieces = parser.feed(text) + parser.finish()
            if parser.calls:
                message["content"] = "".join(p.content for p in pieces) or None
                if stream.tools_mode == "functions":
                    message["function_call"] = {"name": parser.calls[0].name, "arguments": parser.calls[0].arguments}
                else:
                    message["tool_calls"] = [
                        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                        for call in parser.calls
                    ]
                reason = _tool_finish(reason, parser, stream.tools_mode)
        out.append({"index": i, "message": message, "logprobs": lp, "finish_reason": reason})
    return {
        "id": stream.id,
        "object": "chat.completion",
        "created": stream.created,
        "model": stream.model,
        "choices": out,
        "usage": usage(prompt_tokens, sum(c.completion_tokens for c in choices)),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


# ---------------------------------------------------------------- legacy completions


def legacy_logprobs(lps: Sequence[TokenLogprob], offset: int) -> dict[str, Any]:
    offsets = []
    for lp in lps:
        offsets.append(offset)
        offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in lps],
        "token_logprobs": [lp.logprob for lp in lps],
        "top_logprobs": [{t.token: t.logprob for t in lp.top} for lp in lps],
        "text_offset": offsets,
    }


@dataclass
class CompletionStream:
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
        return [self._chunk([{"index": ev.index, "text": "", "logprobs": None, "finish_reason": _finish(ev)}])]

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        chunk = self._chunk([])
        chunk["usage"] = usage(prompt_tokens, completion_tokens, chat=False)
        return chunk


def completion(stream: CompletionStream, choices: Sequence[ChoiceText], prompt_tokens: int) -> dict[str, Any]:
    out = []
    for i, c in enumerate(choices):
        echo = stream.echo_texts[i]
        out.append(
            {
                "index": i,
                "text": echo + "".join(c.text),
                "logprobs": legacy_logprobs(c.logprobs, len(echo)) if stream.logprobs else None,
                "finish_reason": c.finish_reason or "stop",
            }
        )
    return {
        "id": stream.id,
        "object": "text_completion",
        "created": stream.created,
        "model": stream.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": out,
        "usage": usage(prompt_tokens, sum(c.completion_tokens for c in choices), chat=False),
    }
