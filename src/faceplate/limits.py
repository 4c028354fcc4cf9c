"""Per-key rate limits. ``Unlimited`` is used when no key carries limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from faceplate.auth import Principal


@dataclass
class Lease:
    """An admitted request: the headers to send, and how to reconcile reserved tokens."""

    headers: dict[str, str] = field(default_factory=dict)

    async def settle(self, used_tokens: int) -> None:
        return None


class Limiter(Protocol):
    async def admit(self, principal: Principal, tokens: int) -> Lease:
        """Reserve one request and ``tokens`` tokens, or raise RateLimited."""
        ...


class Unlimited:
    async def admit(self, principal: Principal, tokens: int) -> Lease:
        return Lease()
