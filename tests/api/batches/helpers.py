"""Helpers of the in-process Batch API tests: input lines, upload, create, wait, read result files."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tests import spec

CHAT = "/v1/chat/completions"


def request_line(custom_id: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def chat_line(custom_id: str, content: str = "hi", **extra: Any) -> dict[str, Any]:
    return request_line(custom_id, CHAT, {"model": "fake-model", "messages": [{"role": "user", "content": content}], **extra})


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


async def upload(api: httpx.AsyncClient, content: bytes) -> str:
    r = await api.post("/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", content, "application/octet-stream")})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


async def create(api: httpx.AsyncClient, lines: list[dict[str, Any]], endpoint: str = CHAT, **extra: Any) -> dict[str, Any]:
    file_id = await upload(api, jsonl(lines))
    r = await api.post("/v1/batches", json={"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h", **extra})
    assert r.status_code == 200, r.text
    spec.validate_batch(r.json())
    assert r.json()["status"] == "validating"
    return r.json()


async def wait_for(api: httpx.AsyncClient, batch_id: str, *statuses: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = await api.get(f"/v1/batches/{batch_id}")
        assert r.status_code == 200, r.text
        if r.json()["status"] in statuses:
            spec.validate_batch(r.json())
            return r.json()
        assert time.monotonic() < deadline, f"batch still {r.json()['status']}, wanted {statuses}"
        await asyncio.sleep(0.05)


async def file_lines(api: httpx.AsyncClient, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    meta = await api.get(f"/v1/files/{file_id}")
    assert meta.status_code == 200, meta.text
    spec.validate_file(meta.json())
    assert meta.json()["purpose"] == "batch_output"
    r = await api.get(f"/v1/files/{file_id}/content")
    assert r.status_code == 200
    assert meta.json()["bytes"] == len(r.content)
    return [json.loads(x) for x in r.content.splitlines()]
