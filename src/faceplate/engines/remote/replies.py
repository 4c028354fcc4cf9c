"""An upstream's stream chunks -> engine events; its error bodies -> Faceplate's error tree.

Whatever the upstream sends (vLLM's integer ``code``, TGI's bare-string ``error``, llama.cpp's
usage on every stream, finish reasons of its own), the client only ever sees what Faceplate's
own translators build from these events, so ids, ``created``, ``model`` and the usage chunk
are OpenAI's by construction. Finished events wait for the end of the stream: the usage the
upstream reports last settles each choice's token count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from faceplate.engines.base import Finished, FinishReason, GenerationEvent, TextDelta, TokenLogprob, ToolCallDelta, TopLogprob
from faceplate.errors import FaceplateError, InvalidRequest, Overloaded, UpstreamFailed

_REASONS: dict[str, FinishReason] = {"length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}


def _bytes(token: str, given: Any) -> tuple[int, ...]:
    return tuple(given) if isinstance(given, list) else tuple(token.encode())


def _chat_logprobs(lp: Any) -> tuple[TokenLogprob, ...]:
    content = (lp or {}).get("content") or []
    return tuple(
        TokenLogprob(
            t["token"],
            float(t["logprob"]),
            _bytes(t["token"], t.get("bytes")),
            tuple(
                TopLogprob(a["token"], float(a["logprob"]), _bytes(a["token"], a.get("bytes")))
                for a in t.get("top_logprobs") or []
            ),
        )
        for t in content
    )


def _completion_logprobs(lp: Any) -> tuple[TokenLogprob, ...]:
    if not lp:
        return ()
    if "content" in lp:  # llama-server answers completions with the chat form
        return _chat_logprobs(lp)
    tokens, values, tops = lp.get("tokens") or [], lp.get("token_logprobs") or [], lp.get("top_logprobs") or []
    out = []
    for i, token in enumerate(tokens):
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        alts = tuple(TopLogprob(t, float(v), tuple(t.encode())) for t, v in top.items())
        value = values[i] if i < len(values) and values[i] is not None else 0.0
        out.append(TokenLogprob(token, float(value), tuple(token.encode()), alts))
    return tuple(out)


@dataclass
class _Choice:
    tokens: int = 0
    reason: FinishReason | None = None
    calls: dict[Any, int] = field(default_factory=dict)  # the upstream's call index (or id) -> ours


@dataclass
class StreamReader:
    """One upstream request's chunks. ``n`` choices; ``chat`` or legacy completions."""

    n: int
    chat: bool
    choices: list[_Choice] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    done: bool = False  # saw [DONE]

    def __post_init__(self) -> None:
        self.choices = [_Choice() for _ in range(self.n)]

    def feed(self, data: str) -> list[GenerationEvent]:
        """One SSE ``data:`` payload -> the text and tool-call events it carries."""
        if data.strip() == "[DONE]":
            self.done = True
            return []
        try:
            obj = json.loads(data)
        except ValueError:
            raise UpstreamFailed("The upstream sent an event that is not JSON.") from None
        if not isinstance(obj, dict):
            raise UpstreamFailed("The upstream sent an event that is not a JSON object.")
        if obj.get("error") is not None:
            raise error_from(500, obj)
        self._usage(obj)
        events: list[GenerationEvent] = []
        for c in obj.get("choices") or []:
            i = c.get("index", 0)
            if not isinstance(i, int) or not 0 <= i < self.n:
                raise UpstreamFailed(f"The upstream sent a choice index ({i!r}) it was not asked for.")
            events.extend(self._chat_choice(i, c) if self.chat else self._text_choice(i, c))
            if c.get("finish_reason"):
                self.choices[i].reason = _REASONS.get(c["finish_reason"], "stop")
        return events

    def _usage(self, obj: dict[str, Any]) -> None:
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)
            details = usage.get("prompt_tokens_details") or {}
            self.cached_tokens = int(details.get("cached_tokens") or self.cached_tokens)
        timings = obj.get("timings")  # llama-server: what its prompt cache served
        if isinstance(timings, dict) and isinstance(timings.get("cache_n"), int):
            self.cached_tokens = max(self.cached_tokens, timings["cache_n"])

    def _chat_choice(self, i: int, c: dict[str, Any]) -> list[GenerationEvent]:
        delta = c.get("delta") or {}
        out: list[GenerationEvent] = []
        text = delta.get("content")
        logprobs = _chat_logprobs(c.get("logprobs"))
        if text or logprobs:
            count = len(logprobs) or 1
            self.choices[i].tokens += count
            out.append(TextDelta(i, text or "", logprobs, tokens=count))
        for call in delta.get("tool_calls") or []:
            out.append(self._call(i, call))
        return out

    def _call(self, i: int, call: dict[str, Any]) -> ToolCallDelta:
        choice, fn = self.choices[i], call.get("function") or {}
        key = call.get("index", call.get("id"))  # Ollama sends whole calls with no index
        if key not in choice.calls:
            choice.calls[key] = len(choice.calls)
            choice.tokens += 1
            return ToolCallDelta(
                i, choice.calls[key], call.get("id") or f"call_{i}_{len(choice.calls)}", fn.get("name"), fn.get("arguments") or ""
            )
        return ToolCallDelta(i, choice.calls[key], arguments=fn.get("arguments") or "")

    def _text_choice(self, i: int, c: dict[str, Any]) -> list[GenerationEvent]:
        text = c.get("text")
        logprobs = _completion_logprobs(c.get("logprobs"))
        if not text and not logprobs:
            return []
        count = len(logprobs) or 1
        self.choices[i].tokens += count
        return [TextDelta(i, text or "", logprobs, tokens=count)]

    def finish(self) -> list[Finished]:
        """The Finished events, once the stream has ended; a stream cut before its end is a 502."""
        if not self.done and any(c.reason is None for c in self.choices):
            raise UpstreamFailed("The upstream closed the stream before it finished.")
        counted = [c.tokens for c in self.choices]
        # A content chunk holds at least one token, so our count is a floor: the upstream's total settles it
        # upward (chunks of several tokens), never below (llama-server counts one choice of n).
        if self.completion_tokens is not None and self.completion_tokens > sum(counted):
            counted[-1] += self.completion_tokens - sum(counted)
        return [Finished(i, c.reason or "stop", counted[i], cached_tokens=self.cached_tokens) for i, c in enumerate(self.choices)]


def whole_as_chunk(obj: Any) -> str:
    """A whole chat.completion or text_completion (from a server that ignores ``stream``) as one stream
    chunk carrying all of it, so it is read like any stream."""
    if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
        return json.dumps(obj)  # an error body or nonsense: the reader judges it
    choices = []
    for c in obj["choices"]:
        message = c.get("message") if isinstance(c, dict) else None
        if isinstance(message, dict):  # chat: the message becomes a delta; calls get their index
            calls = [{"index": j, **call} for j, call in enumerate(message.get("tool_calls") or [])]
            c = {**c, "delta": {"content": message.get("content"), "tool_calls": calls}}
        choices.append(c)
    return json.dumps({**obj, "choices": choices})


def _message_of(body: Any) -> tuple[str, str | None, Any]:
    """(message, type, code) from any of the shapes upstreams use."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err), err.get("type"), err.get("code")
    if isinstance(err, str):  # TGI {"error": "...", "error_type": ...}, Ollama's older form
        return err, body.get("error_type"), None
    if isinstance(body, dict) and body.get("object") == "error":  # vLLM before its wrapped form
        return str(body.get("message")), body.get("type"), body.get("code")
    if isinstance(body, dict) and "detail" in body:  # FastAPI's own validation errors
        return json.dumps(body["detail"])[:1000], None, None
    return (json.dumps(body)[:1000] if body is not None else "no body"), None, None


def error_from(status: int, body: Any, retry_after: float | None = None) -> FaceplateError:
    """The client's error for an upstream's answer: OpenAI's envelope, a string code, the right status."""
    message, kind, code = _message_of(body)
    param = (body.get("error") or {}).get("param") if isinstance(body, dict) and isinstance(body.get("error"), dict) else None
    text_code = code if isinstance(code, str) and not code.isdigit() else None
    if status in (400, 413, 422):
        low = f"{message} {kind}".lower()
        if text_code is None and ("context" in low and any(w in low for w in ("length", "window", "size")) or "too long" in low):
            text_code = "context_length_exceeded"  # vLLM, llama-server (exceed_context_size_error), TGI say it in words
            param = param or "messages"
        return InvalidRequest(message, param=param if isinstance(param, str) else None, code=text_code)
    if status in (429, 503):  # the upstream's capacity, not the client's key: retryable, with its Retry-After
        return Overloaded(f"The server behind this model is busy: {message}", retry_after_s=retry_after or 1.0)
    # 401/403/404 mean the gateway's own configuration (key, model name) is wrong, not the client's request.
    return UpstreamFailed(f"The server behind this model failed ({status}): {message}")


def retryable(status: int) -> bool:
    """Statuses another upstream may answer well: overload and gateway failures, never a client error."""
    return status in (429, 500, 502, 503, 504)
