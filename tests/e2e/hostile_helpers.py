"""Shared by the hostile end-to-end tests: authenticated requests, strict JSON, and the check that the server survived."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from tests.e2e.conftest import E2E_KEY
from tests.e2e.keys_helpers import CHAT
from tests.serverproc import ServerProcess

AUTH = {"authorization": f"Bearer {E2E_KEY}"}


def strict_json(text: str) -> Any:
    """JSON as JavaScript's JSON.parse reads it: NaN and Infinity are errors."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def post(
    server: ServerProcess, path: str, body: Any, *, timeout: float = 60, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, headers={**AUTH, **(headers or {})}, timeout=timeout)


def chat(content: str = "Say hi.", **kw: Any) -> dict[str, Any]:
    return {"model": CHAT, "messages": [{"role": "user", "content": content}], **kw}


def health_ok(server: ServerProcess) -> None:
    r = httpx.get(f"{server.root}/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text[:500]


def assert_healthy(server: ServerProcess) -> None:
    """``/health`` is ok and an ordinary chat request still succeeds."""
    health_ok(server)
    r = post(server, "/chat/completions", chat(max_tokens=4, seed=1))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] in ("stop", "length")


_FAILURE = re.compile(
    r"unhandled error|Traceback \(most recent call last\)|Exception in ASGI application"
    r"|faceplate\.access: \S+ \S+ \S+ 5\d\d "  # the access line: id, method, path, status
)


def server_errors(log: str) -> list[str]:
    """Log lines that mean a request failed inside the server: an unhandled exception, or a 5xx in the access log."""
    return [line for line in log.splitlines() if _FAILURE.search(line)]
