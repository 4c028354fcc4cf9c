"""Batch limits and manners in process: the enqueued-token limit (server setting and per key), a
revoked key's lines, the per-owner running cap, lines an engine had no room for, and the line rows a
finished batch leaves behind (none)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from faceplate.access.auth import Authenticator
from faceplate.engines.fake import FakeEngine
from faceplate.service import batch_worker
from faceplate.service.batch_worker import BatchWorker
from faceplate.service.services import Services
from faceplate.store.keys import CachedKeyLookup
from faceplate.store.schema import batch_requests
from tests.api.batches.helpers import chat_line, create, file_lines, wait_for
from tests.api.conftest import API_KEY, OTHER_KEY, client_for

# "user" + 8 characters = 12 characters: 12 // 4 + 1 = 4 estimated prompt tokens a line
EIGHT = "x" * 8


@pytest.fixture
async def running(make: Callable[..., Services]) -> AsyncIterator[Callable[..., Any]]:
    """Services with settings, an API client (static key, or a stored one) and a started worker."""
    opened: list[tuple[Services, httpx.AsyncClient, BatchWorker]] = []

    async def start(key: str = API_KEY, **settings: Any) -> tuple[Services, httpx.AsyncClient]:
        svc = make(**settings)
        assert svc.store is not None
        svc.auth = Authenticator([API_KEY, OTHER_KEY], CachedKeyLookup(svc.store.keys, ttl_s=0.0))
        client = client_for(svc, key)
        worker = BatchWorker(svc)
        worker.start()
        opened.append((svc, client, worker))
        return svc, client

    yield start
    for svc, client, worker in opened:
        await worker.stop()
        await client.aclose()
        await svc.runs.close()


def lines(prefix: str, n: int) -> list[dict[str, Any]]:
    return [chat_line(f"{prefix}{i}", EIGHT) for i in range(n)]


async def test_a_batch_past_the_enqueued_token_limit_fails_until_others_finish(running: Any, engine: FakeEngine) -> None:
    engine.delay_s = 0.02  # the first batch stays in progress while the second validates
    _, api = await running(batch_token_limit=20)
    first = await create(api, lines("a", 4))  # 16 tokens: fits
    await wait_for(api, first["id"], "in_progress")
    second = await create(api, lines("b", 2))  # 16 + 8 > 20
    failed = await wait_for(api, second["id"], "failed")
    (error,) = failed["errors"]["data"]
    assert error["code"] == "token_limit_exceeded" and error["line"] is None and error["param"] is None
    assert "Limit: 20 enqueued tokens" in error["message"] and "16 are enqueued" in error["message"]
    assert failed["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert (await wait_for(api, first["id"], "completed"))["request_counts"]["completed"] == 4
    third = await create(api, lines("c", 2))  # the first no longer counts
    assert (await wait_for(api, third["id"], "completed"))["request_counts"]["completed"] == 2


async def test_a_keys_own_limit_overrides_the_setting(make: Callable[..., Services], running: Any) -> None:
    store = make().store
    assert store is not None
    _, tight = store.keys.create("tight", batch_token_limit=7)
    _, roomy = store.keys.create("roomy", batch_token_limit=1000)
    _, api = await running(tight, batch_token_limit=100)
    refused = await wait_for(api, (await create(api, lines("a", 2)))["id"], "failed", "completed")
    assert refused["status"] == "failed" and refused["errors"]["data"][0]["code"] == "token_limit_exceeded"
    _, api = await running(roomy, batch_token_limit=4)
    done = await wait_for(api, (await create(api, lines("a", 2)))["id"], "failed", "completed")
    assert done["status"] == "completed"


async def test_lines_of_a_revoked_key_fail_with_401(
    make: Callable[..., Services], running: Any, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_worker, "KEY_CHECK_S", 0.0)
    store = make().store
    assert store is not None
    key, secret = store.keys.create("leaver")
    engine.delay_s = 0.05  # about a second a line: the key is revoked after the first
    _, api = await running(secret, batch_concurrency=1)
    batch = await create(api, lines("r", 4))
    while (await api.get(f"/v1/batches/{batch['id']}")).json()["request_counts"]["completed"] < 1:
        await asyncio.sleep(0.05)
    store.keys.revoke(key.id)  # the key no longer opens the API: read the batch from the store
    for _ in range(400):
        row = store.batches.get(batch["id"], key.id)
        assert row is not None
        if row.status == "completed":
            break
        await asyncio.sleep(0.05)
    assert row.status == "completed" and row.completed >= 1 and row.failed >= 1
    assert row.completed + row.failed == 4
    refused = result_lines(make(), row.error_file_id)
    assert len(refused) == row.failed and len(result_lines(make(), row.output_file_id)) == row.completed
    for line in refused:
        assert line["response"]["status_code"] == 401
        assert line["response"]["body"]["error"]["code"] == "invalid_api_key"
        assert "revoked" in line["response"]["body"]["error"]["message"]


def result_lines(svc: Services, file_id: str | None) -> list[dict[str, Any]]:
    """A result file's lines, read from the blob store."""
    assert svc.blobs is not None
    if file_id is None:
        return []
    with svc.blobs.open(file_id) as fh:
        return [json.loads(x) for x in fh if x.strip()]


@pytest.mark.parametrize(("cap", "most"), [(1, 1), (None, 4)])
async def test_the_owner_cap_bounds_lines_running_at_once(running: Any, engine: FakeEngine, cap: int | None, most: int) -> None:
    engine.delay_s = 0.01
    _, api = await running(batch_concurrency=4, batch_owner_concurrency=cap)
    batch = await create(api, lines("o", 8))
    seen = 0
    while (await api.get(f"/v1/batches/{batch['id']}")).json()["status"] != "completed":
        seen = max(seen, engine.running)
        await asyncio.sleep(0.01)
    assert seen == most


async def test_lines_an_engine_had_no_room_for_go_back_and_run_later(running: Any, engine: FakeEngine) -> None:
    engine.max_queue = 0  # every line is refused 503 at first
    _, api = await running()
    batch = await create(api, lines("q", 3))
    await wait_for(api, batch["id"], "in_progress")
    while len(engine.priorities) < 3:  # each line was tried, and refused
        await asyncio.sleep(0.05)
    mid = (await api.get(f"/v1/batches/{batch['id']}")).json()
    assert mid["status"] == "in_progress" and mid["request_counts"] == {"total": 3, "completed": 0, "failed": 0}
    engine.max_queue = 32
    done = await wait_for(api, batch["id"], "completed")
    assert done["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert sorted(x["custom_id"] for x in await file_lines(api, done["output_file_id"])) == ["q0", "q1", "q2"]


async def test_a_finished_batch_keeps_no_line_rows(running: Any) -> None:
    svc, api = await running()
    batch = await create(api, lines("d", 3))
    await wait_for(api, batch["id"], "completed")
    assert svc.store is not None
    with svc.store.engine.connect() as conn:
        left = conn.scalar(select(func.count()).select_from(batch_requests).where(batch_requests.c.batch_id == batch["id"]))
    assert left == 0
