"""Drain and deadlines in process (fake engine): a draining server refuses new work with 503 and
Retry-After and reports not ready; a request past its deadline is stopped (504, or an error event and
[DONE] in a stream, or response.failed for a Responses stream) and frees its slot; the drain's end
cuts a running stream the same way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from faceplate.access.auth import Authenticator
from faceplate.config import Settings
from faceplate.engines.fake import FakeEngine
from faceplate.engines.registry import Registry
from faceplate.service.drain import Drain
from faceplate.service.services import Services
from faceplate.store import Store
from tests import spec
from tests.api.conftest import API_KEY, client_for
from tests.api.sse import events

CHAT = "/v1/chat/completions"
HI = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def make(engine: FakeEngine, tmp_path: Path) -> Callable[..., Services]:
    def build(**settings: Any) -> Services:
        store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
        return Services(
            settings=Settings(api_keys=[API_KEY], **settings),
            registry=Registry([engine]),
            auth=Authenticator([API_KEY]),
            store=store,
        )

    return build


@pytest.fixture
async def client(make: Callable[..., Services]) -> AsyncIterator[Callable[..., Any]]:
    opened: list[tuple[Services, httpx.AsyncClient]] = []

    def open_(**settings: Any) -> tuple[Services, httpx.AsyncClient]:
        svc = make(**settings)
        c = client_for(svc)
        opened.append((svc, c))
        return svc, c

    yield open_
    for svc, c in opened:
        await c.aclose()
        await svc.runs.close()
        assert svc.store is not None
        svc.store.close()


async def test_a_draining_server_refuses_new_work_and_is_not_ready(client: Any) -> None:
    svc, api = client()
    assert (await api.get("/health/ready")).status_code == 200
    svc.drain.begin()
    r = await api.post(CHAT, json=HI)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    spec.validate_error(r.json())
    assert r.json()["error"]["code"] == "server_shutting_down" and r.json()["error"]["type"] == "server_error"
    assert r.headers["x-request-id"]
    ready = await api.get("/health/ready")
    assert ready.status_code == 503 and ready.json() == {"status": "draining"}
    assert (await api.get("/health/live")).status_code == 200
    assert (await api.get("/health")).status_code == 200


async def test_a_request_past_its_deadline_is_stopped_and_frees_its_slot(client: Any, engine: FakeEngine) -> None:
    engine.delay_s = 0.05  # a 40-word answer: seconds
    svc, api = client(request_timeout_s=0.4)
    r = await api.post(CHAT, json=HI)
    assert r.status_code == 504, r.text
    spec.validate_error(r.json())
    assert r.json()["error"]["code"] == "request_timeout" and "0.4 seconds" in r.json()["error"]["message"]
    await asyncio.sleep(0.1)
    assert engine.running == 0 and svc.drain.inflight == 0


async def test_a_stream_past_its_deadline_ends_with_an_error_event_and_done(client: Any, engine: FakeEngine) -> None:
    engine.delay_s = 0.05
    _, api = client(request_timeout_s=0.5)
    r = await api.post(CHAT, json={**HI, "stream": True})
    assert r.status_code == 200
    chunks, done = events(r.text)
    assert done, "the stream must end with [DONE]"
    *deltas, last = chunks
    assert deltas and all(c["object"] == "chat.completion.chunk" for c in deltas)
    assert last["error"]["code"] == "request_timeout"
    await asyncio.sleep(0.1)
    assert engine.running == 0


async def test_the_drains_end_cuts_a_running_stream(client: Any, engine: FakeEngine) -> None:
    engine.delay_s = 0.05
    svc, api = client()
    call = asyncio.ensure_future(api.post(CHAT, json={**HI, "stream": True}))
    while svc.drain.inflight == 0 or engine.running == 0:
        await asyncio.sleep(0.01)
    await svc.drain.run(0.2)  # far less than the answer takes: the stream is cut, then flushed
    r = await call
    chunks, done = events(r.text)
    assert done and chunks[-1]["error"]["code"] == "server_shutting_down"
    assert svc.drain.inflight == 0


async def test_drain_run_waits_for_requests_that_finish_in_time(client: Any, engine: FakeEngine) -> None:
    engine.delay_s = 0.005
    svc, api = client()
    call = asyncio.ensure_future(api.post(CHAT, json={**HI, "stream": True}))
    while svc.drain.inflight == 0:
        await asyncio.sleep(0.01)
    await svc.drain.run(30)
    assert not svc.drain.cut.is_set()
    chunks, done = events((await call).text)
    assert done and chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_a_responses_stream_past_its_deadline_ends_failed_and_is_stored_so(client: Any, engine: FakeEngine) -> None:
    engine.delay_s = 0.05
    _, api = client(request_timeout_s=0.5)
    r = await api.post("/v1/responses", json={"model": "fake-model", "input": "hi", "stream": True})
    evs, _ = events(r.text)
    last = evs[-1]
    assert last["type"] == "response.failed", [e["type"] for e in evs]
    assert "deadline" in last["response"]["error"]["message"] and last["response"]["error"]["code"] == "server_error"
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))  # nothing repeated or skipped
    stored = await api.get(f"/v1/responses/{last['response']['id']}")
    assert stored.status_code == 200 and stored.json()["status"] == "failed"


def test_drain_state_alone() -> None:
    drain = Drain()
    assert not drain.draining and not drain.cut.is_set()
    drain.begin()
    drain.begin()
    assert drain.draining


async def test_readiness_needs_the_store_and_redis_to_answer(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    svc, api = client()
    assert svc.store is not None

    def down() -> None:
        raise OSError("connection refused")

    class DeadRedis:
        async def ping(self) -> bool:
            return False

    assert (await api.get("/health/ready")).json() == {"status": "ready"}
    monkeypatch.setattr(svc.store, "ping", down)
    svc.limiter = DeadRedis()  # type: ignore[assignment]
    r = await api.get("/health/ready")
    assert r.status_code == 503 and r.json() == {"status": "not_ready", "problems": ["store unreachable", "redis unreachable"]}
    assert (await api.get("/health/live")).status_code == 200
