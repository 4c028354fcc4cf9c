"""What each kind of upstream server is known to do, before and besides what the probe finds.

A kind says where its health and load are read, which non-OpenAI sampling fields it accepts,
and how its requests differ (llama-server and TGI know ``max_tokens`` only). Capability flags
seeded here are overwritten by the start-up probe (``faceplate.check.probe``) when it answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# Known deviations the probe confirms; the seeds keep a gateway honest while an upstream is down at start-up.
_EXTRAS_ALL = frozenset({"top_k", "min_p", "repetition_penalty", "ignore_eos"})


@dataclass(frozen=True)
class Kind:
    name: str
    health_path: str = "/health"
    load_path: str | None = None
    max_n: int = 128
    tool_choice_forced: bool = True
    logprobs: bool = True
    embeddings: bool = True
    extras: frozenset[str] = frozenset()
    max_tokens_field: str = "max_completion_tokens"
    placement: bool = True  # False: a fleet router, which places requests itself
    renames: dict[str, str] = field(default_factory=dict)  # our sampling field -> the upstream's name

    def parse_load(self, body: bytes, model: str) -> int | None:
        """Requests running or waiting on the upstream, from its ``load_path`` answer; None if unreadable."""
        try:
            return _LOAD_PARSERS[self.name](body, model)
        except (KeyError, ValueError, TypeError, AttributeError):
            return None


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("openai", health_path="/v1/models"),
        Kind("vllm", load_path="/metrics", extras=_EXTRAS_ALL),
        Kind("sglang", load_path="/get_load", extras=_EXTRAS_ALL),
        Kind(
            "llama-server",
            load_path="/slots",
            max_n=1,
            extras=frozenset({"top_k", "min_p", "repetition_penalty", "ignore_eos"}),
            renames={"repetition_penalty": "repeat_penalty"},
            max_tokens_field="max_tokens",
        ),
        Kind("tgi", max_n=1, logprobs=True, embeddings=False, max_tokens_field="max_tokens"),
        Kind(
            "ollama", health_path="/api/version", max_n=1, tool_choice_forced=False, logprobs=False, max_tokens_field="max_tokens"
        ),
        Kind("faceplate", load_path="/health", extras=frozenset({"top_k", "min_p", "repetition_penalty"})),
        Kind("router", health_path="/health", placement=False),
    )
}


def _metric(text: str, name: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})?\s+([0-9.eE+-]+)\s*$", text, re.M):
        total += float(m.group(1))
    return total


def _vllm(body: bytes, model: str) -> int:
    text = body.decode()
    if "vllm:num_requests_running" not in text:
        raise ValueError("no vLLM gauges")
    return int(_metric(text, "vllm:num_requests_running") + _metric(text, "vllm:num_requests_waiting"))


def _sglang(body: bytes, model: str) -> int:
    data: Any = json.loads(body)
    items = data if isinstance(data, list) else [data]
    return int(sum(int(d.get("num_reqs", 0)) + int(d.get("num_waiting_reqs", 0)) for d in items))


def _llama_server(body: bytes, model: str) -> int:
    slots = json.loads(body)
    return sum(1 for s in slots if s.get("is_processing"))


def _faceplate(body: bytes, model: str) -> int:
    stats = json.loads(body)["models"][model]
    return int(stats.get("running_sequences", stats.get("running", 0))) + int(stats.get("queued_requests", 0))


_LOAD_PARSERS = {"vllm": _vllm, "sglang": _sglang, "llama-server": _llama_server, "faceplate": _faceplate}

# Start-up detection: the first of these GETs answering as described names the kind.
DETECT: tuple[tuple[str, str, str], ...] = (
    ("ollama", "/api/version", "version"),
    ("tgi", "/info", "model_id"),
    ("llama-server", "/props", "default_generation_settings"),
    ("sglang", "/get_model_info", "model_path"),
    ("vllm", "/version", "version"),
    ("faceplate", "/health/live", "status"),
)
