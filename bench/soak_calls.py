"""One call of bench/soak.py: its Result, the Outcome that ends it, and the helpers that judge an answer's
status or read an SSE stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Result:
    kind: str
    variant: str
    start: float  # s since the load started
    latency: float  # s, call to last byte (or to the hang-up)
    outcome: str  # one of OUTCOMES
    status: int | None = None
    detail: str = ""
    retry_after: str | None = None


class Outcome(Exception):
    """Raised inside a call to end it with this outcome."""

    def __init__(self, outcome: str, status: int | None = None, detail: str = "", retry_after: str | None = None) -> None:
        super().__init__(detail)
        self.outcome, self.status, self.detail, self.retry_after = outcome, status, detail, retry_after


def check(cond: bool, detail: str) -> None:
    if not cond:
        raise Outcome("failed", 200, f"malformed answer: {detail}")


def by_status(status: int, headers: Any, text: str, expected: int = 200) -> Outcome:
    """The outcome of a status that is not the expected one (or is: ok)."""
    retry = headers.get("retry-after") if headers is not None else None
    if status == expected:
        return Outcome("4xx" if status >= 400 else "ok", status, "", retry)
    if status == 503:
        return Outcome("503", status, "" if retry else f"503 without Retry-After: {text[:300]}", retry)
    if status >= 500:
        return Outcome("5xx", status, text[:500], retry)
    if 400 <= status < 500:
        return Outcome("4xx", status, f"unexpected: {text[:500]}", retry)
    return Outcome("failed", status, f"status {status}: {text[:300]}", retry)


def sse_data(response: httpx.Response) -> Iterator[Any]:
    """The JSON payloads of an SSE response's data lines (``[DONE]`` as the string)."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[6:]
            yield payload if payload == "[DONE]" else json.loads(payload)


def stream_error(obj: Any) -> str | None:
    if isinstance(obj, dict):
        if "error" in obj and obj.get("type") is None:
            return json.dumps(obj["error"])[:300]
        if obj.get("type") == "error":
            return json.dumps(obj)[:300]
        if obj.get("type") == "response.failed":
            return json.dumps(obj.get("response", {}).get("error"))[:300]
    return None
