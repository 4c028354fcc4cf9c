"""mockai's state (stats, fault controls, the prefix cache, slots) and request reading: validation
the flavour's way, the generation plan, embeddings. The server itself is in ``mockai``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import math
import struct
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.upstreams import mock_flavours as fl
from tests.upstreams import mock_stream as ms

CONTROLS = (
    "chunks",
    "interval_ms",
    "ttfb_ms",
    "die_after",
    "stall_after",
    "status",
    "retry_after",
    "error_after",
    "ignore_stream",
)
CONFIG_ONLY = ("health_status",)
PREFIX_LRU = 256


@dataclass
class MockStats:
    requests: Counter[str] = field(default_factory=Counter)  # path -> count (not /mock/*)
    in_flight: int = 0  # generation requests inside the server (queued or running)
    running: int = 0  # ... holding a slot
    waiting: int = 0  # ... queued for a slot (--max-inflight)
    completed: int = 0
    aborted: int = 0  # the client went away before the response finished
    died: int = 0  # die_after cut the connection
    max_in_flight: int = 0
    max_running: int = 0
    last_body: dict[str, Any] | None = None
    last_headers: dict[str, str] = field(default_factory=dict)
    bodies: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=64))

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            **{k: getattr(self, k) for k in ("in_flight", "running", "waiting", "completed", "aborted", "died")},
            "max_in_flight": self.max_in_flight,
            "max_running": self.max_running,
            "last_body": self.last_body,
            "last_headers": self.last_headers,
        }


class MockState:
    def __init__(self, flavour: str, model: str, max_inflight: int | None, prefill_ms_per_kchar: float) -> None:
        self.flavour = fl.get_flavour(flavour)
        self.model = model
        self.max_inflight = max_inflight
        self.prefill_ms_per_kchar = prefill_ms_per_kchar
        self.stats = MockStats()
        self.config: dict[str, Any] = {}
        self.config_left: int | None = None
        self.prefixes: OrderedDict[str, None] = OrderedDict()
        self._sem = asyncio.Semaphore(max_inflight) if max_inflight else None
        self._busy = [False] * (max_inflight or 0)

    def reset(self) -> None:
        self.stats = MockStats()
        self.config, self.config_left = {}, None
        self.prefixes.clear()

    def set_config(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            key = key.replace("-", "_")
            if key == "count":
                self.config_left = None if value is None else int(value)
            elif key not in CONTROLS + CONFIG_ONLY:
                raise ValueError(f"unknown control {key!r}")
            elif value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = float(value)

    def controls(self, request: web.Request) -> dict[str, float]:
        """The fault controls for one generation request: instance config, then headers over it."""
        out = {k: v for k, v in self.config.items() if k in CONTROLS}
        if self.config_left is not None and self.config:
            self.config_left -= 1
            if self.config_left <= 0:
                self.config, self.config_left = {}, None
        for key in CONTROLS:
            value = request.headers.get("x-mock-" + key.replace("_", "-"))
            if value is not None:
                out[key] = float(value)
        return out

    def see_prompt(self, text: str) -> int:
        """Chars of ``text`` covered by the longest prefix of a prompt seen before; remember ``text``."""
        best = 0
        for seen in self.prefixes:
            best = max(best, common_prefix_len(seen, text))
        self.prefixes[text] = None
        self.prefixes.move_to_end(text)
        while len(self.prefixes) > PREFIX_LRU:
            self.prefixes.popitem(last=False)
        return best

    def busy_slots(self) -> list[bool]:
        if self._busy:
            return list(self._busy)
        return [i < self.stats.running for i in range(max(4, self.stats.running))]

    @contextlib.asynccontextmanager
    async def slot(self) -> Any:
        s = self.stats
        s.waiting += 1
        try:
            if self._sem is not None:
                await self._sem.acquire()
        finally:
            s.waiting -= 1
        index = self._busy.index(False) if self._busy else -1
        if index >= 0:
            self._busy[index] = True
        s.running += 1
        s.max_running = max(s.max_running, s.running)
        try:
            yield index
        finally:
            s.running -= 1
            if index >= 0:
                self._busy[index] = False
            if self._sem is not None:
                self._sem.release()


def common_prefix_len(a: str, b: str) -> int:
    """Length of the common prefix of ``a`` and ``b`` (binary search over C-speed slice compares)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class BadRequest(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- request reading


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _prompt_text(prompt: Any) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        return [" ".join(map(str, prompt))]
    if isinstance(prompt, list):
        return [p if isinstance(p, str) else " ".join(map(str, p)) for p in prompt] or [""]
    raise BadRequest("prompt: expected a string or an array")


def _int_field(body: dict[str, Any], name: str, low: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise BadRequest(f"{name}: expected an integer >= {low}")
    return value


def make_plan(state: MockState, kind: str, body: dict[str, Any], ctl: dict[str, float]) -> tuple[ms.Plan, str]:
    """Validate ``body`` the flavour's way and decide the answer; also return the rendered prompt."""
    flavour = state.flavour
    allowed = fl.CHAT_FIELDS if kind == "chat" else fl.COMPLETION_FIELDS
    if flavour.strict_fields:
        for key in body:
            if key not in allowed:
                raise BadRequest(f"Unrecognized request argument supplied: {key}")
        if not body.get("model"):
            raise BadRequest("you must provide a model parameter")
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("messages: expected a non-empty array of message objects")
        rendered = "\n".join(_content_text(m.get("content")) for m in messages)
        prompts = 1
    else:
        if "prompt" not in body:
            raise BadRequest("prompt: required")
        texts = _prompt_text(body["prompt"])
        rendered, prompts = "\n".join(texts), len(texts)
    n = _int_field(body, "n", 1) or 1
    if n > 1 and flavour.n == "refuse":
        raise BadRequest(fl.n_refusal(flavour), flavour.validation_status)
    if flavour.n == "one":
        n = 1
    newer = _int_field(body, "max_completion_tokens", 1) if flavour.max_completion_tokens else None
    max_tokens = newer or _int_field(body, "max_tokens", 1)
    natural = int(ctl.get("chunks", ms.DEFAULT_TOKENS))
    tool = ms.forced_tool(body, flavour.honours_tool_choice) if kind == "chat" else None
    fmt = (body.get("response_format") or {}).get("type") if isinstance(body.get("response_format"), dict) else None
    tokens = ["{", "}"] if tool or fmt in ("json_object", "json_schema") else ms.words(natural)
    tokens, finish = ms.cut_tokens(tokens, max_tokens, None if tool else body.get("stop"))
    if tool and finish == "stop":
        finish = "tool_calls"
    logprobs = body.get("logprobs")
    top = _int_field(body, "top_logprobs", 0) or 0
    if kind == "completion":
        top, logprobs = (logprobs or 0) if isinstance(logprobs, int) else 0, logprobs is not None and logprobs is not False
    stream_options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
    cached = state.see_prompt(rendered)
    plan = ms.Plan(
        kind=kind,
        model=str(body.get("model") or state.model),
        n=n,
        prompts=prompts,
        tokens=tokens,
        finish=finish,
        prompt_tokens=max(1, len(rendered) // 4),
        cached_tokens=cached // 4,
        tool_name=tool,
        logprobs=bool(logprobs),
        top_logprobs=top,
        include_usage=bool(stream_options.get("include_usage")),
        id=f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-mock{state.stats.requests.total()}",
    )
    return plan, rendered


def embed(text: str, dim: int) -> list[float]:
    raw = b""
    while len(raw) < 4 * dim:
        raw += hashlib.sha256(text.encode() + len(raw).to_bytes(4, "little")).digest()
    values = [(int.from_bytes(raw[4 * i : 4 * i + 4], "little") / 2**31) - 1.0 for i in range(dim)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embeddings_body(state: MockState, body: dict[str, Any]) -> dict[str, Any]:
    if state.flavour.strict_fields:
        for key in body:
            if key not in fl.EMBEDDING_FIELDS:
                raise BadRequest(f"Unrecognized request argument supplied: {key}")
    raw = body.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise BadRequest("input: expected a non-empty string or array")
    texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in raw]
    dim = _int_field(body, "dimensions", 1) or 8
    data = []
    for i, text in enumerate(texts):
        vec: Any = embed(text, dim)
        if body.get("encoding_format") == "base64":
            vec = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vec})
    tokens = sum(max(1, len(t) // 4) for t in texts)
    model = str(body.get("model") or state.model)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
