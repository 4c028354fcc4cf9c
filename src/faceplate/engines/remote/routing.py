"""Where a request goes within a pool: the upstream holding its prefix, unless that one is busy.

The preferred upstream is a weighted rendezvous (highest-random-weight) hash of the request's
affinity key over the candidates: every replica computes the same answer with no shared
state, and adding or removing an upstream moves only that upstream's share of keys. It is
left only when clearly more loaded than the least loaded candidate (more than ``abs`` requests
more *and* more than ``rel`` times as many, SGLang's router rule); then the less loaded of two
random candidates takes it (power of two choices).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

from faceplate.engines.base import ChatRequest, CompletionRequest

T = TypeVar("T")
PREFIX_CHARS = 2048  # how much of the conversation's start names it


def affinity_key(request: ChatRequest | CompletionRequest) -> str:
    """The request's explicit affinity, else the start of the conversation (system prompt and first user turn)."""
    if request.affinity:
        return "k:" + request.affinity
    if isinstance(request, CompletionRequest):
        prompt = request.prompt if isinstance(request.prompt, str) else ",".join(map(str, request.prompt[:512]))
        return "p:" + prompt[:PREFIX_CHARS]
    # Each turn up to the first user one counts with its own bounded share: a long system prompt must
    # not crowd out the user turn, or every conversation of a tenant would be one key on one upstream.
    start = []
    for m in request.messages:
        start.append(f"{m.role}\x00{(m.content or '')[:PREFIX_CHARS]}")
        if m.role == "user":
            break
    return "c:" + "\x01".join(start)


def _unit(key: str, member: str) -> float:
    digest = hashlib.blake2b(f"{key}\x00{member}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 1) / (2**64 + 2)  # in (0, 1)


def rendezvous(key: str, members: Sequence[T], name: Callable[[T], str], weight: Callable[[T], float]) -> T:
    """Weighted HRW: the member with the highest ``-weight / ln(u)``; each member wins in proportion to its weight."""
    return max(members, key=lambda m: -weight(m) / math.log(_unit(key, name(m))))


def choose(
    key: str,
    members: Sequence[T],
    *,
    name: Callable[[T], str],
    weight: Callable[[T], float],
    load: Callable[[T], int],
    abs_gap: int,
    rel_gap: float,
    rng: random.Random | None = None,
) -> tuple[T, str]:
    """(the member, why: ``affinity`` or ``balanced``)."""
    preferred = rendezvous(key, members, name, weight)
    if len(members) == 1:
        return preferred, "affinity"
    least = min(load(m) for m in members)
    mine = load(preferred)
    if not (mine - least > abs_gap and mine > rel_gap * least):
        return preferred, "affinity"
    a, b = (rng or random).sample(list(members), 2)
    return (a if load(a) <= load(b) else b), "balanced"
