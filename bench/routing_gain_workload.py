"""The workload of bench/routing_gain.py: tenants with long system prompts, multi-turn sessions, and
the streaming client that plays one round of them against a gateway.

Each tenant has its own ~1k-token system prompt (the support policy of bench/common.py, sections in a
tenant-specific order, under the tenant's own name: different from the first words on, so no two
tenants share more than the chat template's header). A session is one tenant's conversation: turn k
sends the system prompt, every earlier user message and assistant answer, and a new short user
message. Sessions run concurrently; the turns of a session run one after the other.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LONG_SYSTEM_PROMPT, MODEL_ID  # noqa: E402

TENANTS = ["Northwind Outfitters", "Bluefin Travel", "Copperleaf Bank", "Driftwood Furniture"]
ASSISTANTS = ["Harbor", "Compass", "Ledger", "Grain"]

# Short follow-ups (~15-25 tokens each), cycled per session with a different start.
QUESTIONS = [
    "Hello, I have a question about an order I placed last week.",
    "The parcel has not moved for six days. What happens now?",
    "Can I change the delivery address before it ships?",
    "What if the item arrives damaged, who pays for the return?",
    "How long does a refund take once you receive it?",
    "Do I keep my loyalty points if I return part of the order?",
    "Can I speak to a person about this, please?",
    "Thanks. One last thing: do you ship to Norway?",
]


def system_prompt(tenant: int, tag: str, sentences: int) -> str:
    """Tenant ``tenant``'s system prompt: ``tag`` first (a new one per round, so nothing cached from an
    earlier round matches), then its own opening line and the policy's sentences rotated by tenant."""
    parts = [p.strip().rstrip(".") + "." for p in LONG_SYSTEM_PROMPT.split(". ") if p.strip()]
    shift = tenant * len(parts) // len(TENANTS)
    body = (parts[shift:] + parts[:shift])[:sentences]
    head = f"[{tag}] You are {ASSISTANTS[tenant]}, the assistant of {TENANTS[tenant]}. Follow the policy below."
    return " ".join([head, *body])


@dataclass
class Sample:
    """One request of a round."""

    policy: str
    round: int
    session: int
    tenant: int
    turn: int
    start_s: float  # since the round started
    ttft_s: float | None  # request sent to the first content chunk
    total_s: float
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def recomputed(self) -> int:
        return self.prompt_tokens - self.cached_tokens


@dataclass
class Workload:
    tenants: int = 4
    sessions_per_tenant: int = 2
    turns: int = 6
    max_tokens: int = 16
    sentences: int = 65  # of the policy text: 65 is all of it, ~1.1k tokens with SmolLM2's tokenizer
    stagger_s: float = 0.0  # session i starts i * stagger_s after the round
    think_s: float = 0.5  # before each follow-up turn, a pause drawn from [0, think_s) (seeded by session)


async def stream_chat(client: httpx.AsyncClient, url: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    body = {
        "model": MODEL_ID,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.monotonic()
    ttft, text, usage = None, [], None
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(f"stream error: {event['error']}")
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    ttft = ttft if ttft is not None else time.monotonic() - t0
                    text.append(piece)
            if event.get("usage"):
                usage = event["usage"]
    if usage is None:
        raise RuntimeError("no usage chunk (stream_options.include_usage was asked)")
    return {"ttft": ttft, "total": time.monotonic() - t0, "text": "".join(text), "usage": usage}


async def _session(
    client: httpx.AsyncClient, url: str, w: Workload, policy: str, rnd: int, tag: str, session: int, t0: float, out: list[Sample]
) -> None:
    tenant = session % w.tenants
    rng = random.Random(session)  # the same pauses for every policy and round
    await asyncio.sleep(session * w.stagger_s)
    messages = [{"role": "system", "content": system_prompt(tenant, tag, w.sentences)}]
    for turn in range(1, w.turns + 1):
        if turn > 1:  # a user reads and types: sessions drift out of lockstep, as they do in life
            await asyncio.sleep(rng.uniform(0, w.think_s))
        q = QUESTIONS[(session + turn - 1) % len(QUESTIONS)]
        messages.append({"role": "user", "content": f"(session {session}) {q}" if turn == 1 else q})
        start = time.monotonic()
        sample = Sample(policy, rnd, session, tenant, turn, start - t0, None, 0.0)
        try:
            r = await stream_chat(client, url, messages, w.max_tokens)
        except (httpx.HTTPError, RuntimeError, ValueError) as exc:
            sample.total_s, sample.error = time.monotonic() - start, f"{type(exc).__name__}: {exc}"[:300]
            out.append(sample)
            return  # the conversation cannot go on without its answer
        usage = r["usage"]
        sample.ttft_s, sample.total_s = r["ttft"], r["total"]
        sample.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        sample.cached_tokens = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        sample.completion_tokens = int(usage.get("completion_tokens") or 0)
        out.append(sample)
        messages.append({"role": "assistant", "content": r["text"]})


async def play_round(
    url: str, w: Workload, policy: str, rnd: int, tag: str, timeout_s: float = 300.0
) -> tuple[list[Sample], float]:
    """All sessions of one round against the gateway at ``url``; (samples, wall seconds)."""
    out: list[Sample] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10), limits=limits) as client:
        t0 = time.monotonic()
        n = w.tenants * w.sessions_per_tenant
        await asyncio.gather(*(_session(client, url, w, policy, rnd, tag, s, t0, out) for s in range(n)))
        return out, time.monotonic() - t0
