"""Usage accounting: one record per request, written off the request path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class UsageRecord:
    key_id: str | None
    model: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    status: int
    latency_ms: float
    created: float


class UsageSink(Protocol):
    def record(self, rec: UsageRecord) -> None:
        """Must not block: implementations queue and write in the background."""
        ...


class NullUsage:
    def record(self, rec: UsageRecord) -> None:
        return None
