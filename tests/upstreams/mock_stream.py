"""Deterministic generation for mockai: what to answer (a ``Plan``) and how to write it, as one
JSON body or as a list of SSE events.

Text is the words ``tok0 tok1 tok2 ...``, one token per word (``"tok0"``, ``" tok1"``, ...). The
natural length is 16 tokens (or the ``chunks`` control); ``max_tokens`` / ``max_completion_tokens``
below it cuts the text with finish_reason "length". ``stop`` cuts at the first match ("stop").
``response_format`` json_object/json_schema answers ``{}`` (tokens ``{`` and ``}``); tool_choice
"required" or a named function answers one tool call with arguments ``{}`` (finish "tool_calls").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tests.upstreams.mock_flavours import Flavour

DEFAULT_TOKENS = 16


@dataclass
class Plan:
    kind: str  # "chat" | "completion"
    model: str
    n: int  # choices per prompt
    prompts: int  # completions: prompts in the request (choices = prompts * n)
    tokens: list[str]
    finish: str
    prompt_tokens: int
    cached_tokens: int
    tool_name: str | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    include_usage: bool = False
    id: str = "chatcmpl-mock"
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def choices(self) -> int:
        return self.prompts * self.n

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens) * self.choices


def words(count: int) -> list[str]:
    return [f"tok{i}" if i == 0 else f" tok{i}" for i in range(count)]


def cut_tokens(tokens: list[str], max_tokens: int | None, stop: Any) -> tuple[list[str], str]:
    """Apply max_tokens then stop strings; return the tokens emitted and the finish_reason."""
    finish = "stop"
    if max_tokens is not None and max_tokens < len(tokens):
        tokens, finish = tokens[:max_tokens], "length"
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str) and s]
    text = "".join(tokens)
    hits = [text.find(s) for s in stops if s and text.find(s) >= 0]
    if hits:
        end, out, pos = min(hits), [], 0
        for tok in tokens:
            if pos >= end:
                break
            out.append(tok[: end - pos])
            pos += len(tok)
        tokens, finish = out, "stop"
    return tokens, finish


def forced_tool(body: dict[str, Any], honours_tool_choice: bool) -> str | None:
    """The function name a forced tool call answers with, or None (no tools, "auto", "none")."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or not honours_tool_choice:
        return None
    if isinstance(choice, dict):
        return (choice.get("function") or {}).get("name") or _tool_name(tools[0])
    if choice == "required":
        return _tool_name(tools[0])
    return None


def _tool_name(tool: Any) -> str:
    return str(((tool or {}).get("function") or {}).get("name") or "tool") if isinstance(tool, dict) else "tool"


# ---------------------------------------------------------------- pieces shared by bodies and chunks


def logprob(j: int) -> float:
    return -round(0.05 * (1 + j % 7), 4)


def token_logprob(tok: str, j: int, top: int) -> dict[str, Any]:
    lp = logprob(j)
    alts = [(tok, lp)] + [(f"alt{m}", round(lp - 0.5 * m, 4)) for m in range(1, top)]
    return {
        "token": tok,
        "logprob": lp,
        "bytes": list(tok.encode()),
        "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in alts[:top]],
    }


def legacy_logprobs(tokens: list[str], start: int, offset: int, top: int) -> dict[str, Any]:
    offsets, pos = [], offset
    for tok in tokens:
        offsets.append(pos)
        pos += len(tok)
    return {
        "tokens": tokens,
        "token_logprobs": [logprob(start + j) for j in range(len(tokens))],
        "top_logprobs": [
            {e["token"]: e["logprob"] for e in token_logprob(t, start + j, max(top, 1))["top_logprobs"]}
            for j, t in enumerate(tokens)
        ],
        "text_offset": offsets,
    }


def usage(plan: Plan, flavour: Flavour) -> dict[str, Any]:
    u: dict[str, Any] = {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": plan.cached_tokens, "audio_tokens": 0},
    }
    if flavour.name == "openai" and plan.kind == "chat":
        u["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return u


def timings(plan: Plan) -> dict[str, Any]:
    """llama-server's per-request timings (per choice: it only ever has one)."""
    pred = len(plan.tokens)
    return {
        "cache_n": plan.cached_tokens,
        "prompt_n": plan.prompt_tokens - plan.cached_tokens,
        "prompt_ms": 1.0,
        "prompt_per_token_ms": 0.1,
        "prompt_per_second": 10000.0,
        "predicted_n": pred,
        "predicted_ms": float(pred),
        "predicted_per_token_ms": 1.0,
        "predicted_per_second": 1000.0,
    }


def _tool_call(plan: Plan, i: int) -> dict[str, Any]:
    return {"id": f"call_mock{i}", "type": "function", "function": {"name": plan.tool_name, "arguments": "".join(plan.tokens)}}


def _envelope(plan: Plan, flavour: Flavour, obj: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": plan.id, "object": obj, "created": plan.created, "model": plan.model}
    if flavour.name == "openai":
        if plan.kind == "chat":
            out["service_tier"] = "default"
        out["system_fingerprint"] = "fp_mockai"
    return out


# ---------------------------------------------------------------- whole bodies


def response_body(plan: Plan, flavour: Flavour) -> dict[str, Any]:
    text = "".join(plan.tokens)
    choices: list[dict[str, Any]] = []
    for i in range(plan.choices):
        if plan.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            if plan.tool_name:
                message["content"] = None
                message["tool_calls"] = [_tool_call(plan, i)]
            lp = None
            if plan.logprobs:
                lp = {"content": [token_logprob(t, j, plan.top_logprobs) for j, t in enumerate(plan.tokens)], "refusal": None}
            choices.append({"index": i, "message": message, "logprobs": lp, "finish_reason": plan.finish})
        else:
            lp = legacy_logprobs(plan.tokens, 0, 0, plan.top_logprobs) if plan.logprobs else None
            choices.append({"index": i, "text": text, "logprobs": lp, "finish_reason": plan.finish})
    body = _envelope(plan, flavour, "chat.completion" if plan.kind == "chat" else "text_completion")
    body["choices"] = choices
    body["usage"] = usage(plan, flavour)
    if flavour.name == "llama-server":
        body["timings"] = timings(plan)
    return body


# ---------------------------------------------------------------- stream events


@dataclass
class Event:
    data: dict[str, Any]
    content: bool  # a token chunk (what the chunk-counting fault controls count)


def stream_events(plan: Plan, flavour: Flavour) -> list[Event]:
    """Every SSE event of the stream, in order, without the final ``[DONE]``."""
    chat = plan.kind == "chat"
    llama = flavour.name == "llama-server"
    base = _envelope(plan, flavour, "chat.completion.chunk" if chat else "text_completion")
    if plan.include_usage:
        base["usage"] = None

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {**base, "choices": choices}

    events: list[Event] = []
    if chat:
        for i in range(plan.choices):
            delta: dict[str, Any] = {"role": "assistant", "content": None if llama or plan.tool_name else ""}
            if plan.tool_name:
                call = _tool_call(plan, i)
                call["function"]["arguments"] = ""
                delta["tool_calls"] = [{"index": 0, **call}]
            if not llama:
                delta["refusal"] = None
            events.append(Event(chunk([{"index": i, "delta": delta, "logprobs": None, "finish_reason": None}]), False))
    offset = 0
    for j, tok in enumerate(plan.tokens):
        for i in range(plan.choices):
            if chat:
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": tok}}]} if plan.tool_name else {"content": tok}
                lp = {"content": [token_logprob(tok, j, plan.top_logprobs)], "refusal": None} if plan.logprobs else None
                choice = {"index": i, "delta": delta, "logprobs": lp, "finish_reason": None}
            else:
                lp = legacy_logprobs([tok], j, offset, plan.top_logprobs) if plan.logprobs else None
                choice = {"index": i, "text": tok, "logprobs": lp, "finish_reason": None}
            events.append(Event(chunk([choice]), True))
        offset += len(tok)
    for i in range(plan.choices):
        if chat:
            last = {"index": i, "delta": {}, "logprobs": None, "finish_reason": plan.finish}
        else:
            last = {"index": i, "text": "", "logprobs": None, "finish_reason": plan.finish}
        events.append(Event(chunk([last]), False))
    if llama:  # llama-server: usage and timings ride on the finishing chunk, asked for or not
        events[-1].data.update(usage=usage(plan, flavour), timings=timings(plan))
    if plan.include_usage:
        final = chunk([])
        final["usage"] = usage(plan, flavour)
        if llama:
            final["timings"] = timings(plan)
        events.append(Event(final, False))
    return events
