"""Stored keys, per-key limits and usage over the real app (fake engine, SQLite store, injected clock)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from faceplate.access.limits import MemoryLimiter
from faceplate.app import create_app
from faceplate.config import Settings
from faceplate.engines.fake import FakeEngine
from faceplate.engines.registry import Registry
from faceplate.server import build_services, close_services
from faceplate.service.services import Services
from tests import spec
from tests.api.sse import events

ADMIN = "admin-test-key"
RATE_HEADERS = [f"x-ratelimit-{what}-{kind}" for kind in ("requests", "tokens") for what in ("limit", "remaining", "reset")]
USER = [{"role": "user", "content": "hello"}]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def chat(model: str = "fake-model", **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": USER, **kw}


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_services(tmp_path: Path, clock: Clock, **settings: Any) -> Services:
    registry = Registry([FakeEngine("fake-model", n_ctx=512), FakeEngine("other-model", n_ctx=512, words=3)])
    svc = build_services(Settings(data_dir=str(tmp_path), key_cache_ttl_s=0.3, **settings), registry)
    svc.limiter = MemoryLimiter(clock=clock)
    return svc


@pytest.fixture
async def svc(tmp_path: Path, clock: Clock) -> AsyncIterator[Services]:
    services = make_services(tmp_path, clock, admin_key=ADMIN)
    yield services
    await close_services(services)


@pytest.fixture
async def client(svc: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(svc)), base_url="http://localhost") as c:
        yield c


def new_key(svc: Services, **kw: Any) -> tuple[str, dict[str, str]]:
    """A stored key, and the headers that use it."""
    assert svc.store is not None
    key, secret = svc.store.keys.create(kw.pop("name", "test"), **kw)
    svc.auth.enable_store()
    return key.id, {"authorization": f"Bearer {secret}"}


def admin(**extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN}", **extra}


def assert_error(r: httpx.Response, status: int, code: str | None, type_: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    spec.validate_error(body)
    assert body["error"]["code"] == code
    if type_ is not None:
        assert body["error"]["type"] == type_
    return body["error"]


async def test_rate_limit_headers_on_json_and_streamed_responses(svc: Services, client: httpx.AsyncClient) -> None:
    _, auth = new_key(svc, rpm=10, tpm=10_000)
    r = await client.post("/v1/chat/completions", json=chat(max_tokens=5), headers=auth)
    assert r.status_code == 200
    assert all(h in r.headers for h in RATE_HEADERS)
    assert r.headers["x-ratelimit-limit-requests"] == "10"
    assert r.headers["x-ratelimit-remaining-requests"] == "9"
    assert r.headers["x-ratelimit-reset-requests"] == "6s"
    prompt = r.json()["usage"]["prompt_tokens"]
    assert r.headers["x-ratelimit-remaining-tokens"] == str(10_000 - prompt - 5)

    r = await client.post("/v1/chat/completions", json=chat(max_tokens=5, stream=True), headers=auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert all(h in r.headers for h in RATE_HEADERS)
    assert r.headers["x-ratelimit-remaining-requests"] == "8"
    assert events(r.text)[1]

    r = await client.post("/v1/completions", json={"model": "fake-model", "prompt": "hi", "max_tokens": 2}, headers=auth)
    assert r.status_code == 200 and r.headers["x-ratelimit-remaining-requests"] == "7"


async def test_requests_limit_429_and_recovery(svc: Services, client: httpx.AsyncClient, clock: Clock) -> None:
    _, auth = new_key(svc, name="bursty", rpm=2)
    for _ in range(2):
        assert (await client.post("/v1/chat/completions", json=chat(max_tokens=1), headers=auth)).status_code == 200
    r = await client.post("/v1/chat/completions", json=chat(max_tokens=1, stream=True), headers=auth)
    err = assert_error(r, 429, "rate_limit_exceeded", "requests")
    assert "bursty" in err["message"] and "Limit 2" in err["message"]
    assert r.headers["retry-after"] == "30" and r.headers["retry-after-ms"] == "30000"
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert r.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert "x-ratelimit-limit-tokens" not in r.headers  # this key has no token limit
    clock.t += 30
    r = await client.post("/v1/chat/completions", json=chat(max_tokens=1), headers=auth)
    assert r.status_code == 200 and r.headers["x-ratelimit-remaining-requests"] == "0"


async def test_tokens_limit_429_and_settlement(svc: Services, client: httpx.AsyncClient, clock: Clock) -> None:
    _, auth = new_key(svc, tpm=400)
    r = await client.post("/v1/chat/completions", json=chat(model="other-model", max_tokens=300), headers=auth)
    assert r.status_code == 200
    usage = r.json()["usage"]
    assert usage["completion_tokens"] < 300  # the fake stops early: the unused reservation goes back
    used, prompt = usage["total_tokens"], usage["prompt_tokens"]
    assert r.headers["x-ratelimit-remaining-tokens"] == str(400 - prompt - 300)

    r = await client.post("/v1/chat/completions", json=chat(max_tokens=400), headers=auth)
    assert_error(r, 429, "rate_limit_exceeded", "tokens")
    assert r.headers["x-should-retry"] == "false"  # larger than the whole limit: retrying cannot help

    room = 400 - used - prompt
    r = await client.post("/v1/chat/completions", json=chat(max_tokens=room + 1), headers=auth)
    assert_error(r, 429, "rate_limit_exceeded", "tokens")
    assert r.headers["retry-after-ms"] == "150"  # one token short at 400 tokens / 60 s
    clock.t += 0.15
    r = await client.post("/v1/chat/completions", json=chat(max_tokens=room + 1), headers=auth)
    assert r.status_code == 200 and r.headers["x-ratelimit-remaining-tokens"] == "0"


async def test_a_key_sees_only_its_models(svc: Services, client: httpx.AsyncClient) -> None:
    _, auth = new_key(svc, models=["fake-model"])
    r = await client.get("/v1/models", headers=auth)
    spec.validate_model_list(r.json())
    assert [m["id"] for m in r.json()["data"]] == ["fake-model"]
    assert (await client.get("/v1/models/fake-model", headers=auth)).status_code == 200
    assert_error(await client.get("/v1/models/other-model", headers=auth), 404, "model_not_found")
    assert_error(await client.post("/v1/chat/completions", json=chat(model="other-model"), headers=auth), 404, "model_not_found")
    body = {"model": "other-model", "prompt": "x"}
    assert_error(await client.post("/v1/completions", json=body, headers=auth), 404, "model_not_found")
    _, everything = new_key(svc)
    r = await client.get("/v1/models", headers=everything)
    assert sorted(m["id"] for m in r.json()["data"]) == ["fake-model", "other-model"]


async def test_expired_and_revoked_keys_are_401(svc: Services, client: httpx.AsyncClient) -> None:
    assert svc.store is not None
    _, expired = new_key(svc, expires_at=time.time() - 1)
    assert_error(await client.get("/v1/models", headers=expired), 401, "invalid_api_key")

    key_id, auth = new_key(svc)
    assert (await client.get("/v1/models", headers=auth)).status_code == 200
    r = await client.delete(f"/admin/keys/{key_id}", headers=admin())
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert_error(await client.get("/v1/models", headers=auth), 401, "invalid_api_key")  # at once in this process

    key_id, auth = new_key(svc)
    assert (await client.get("/v1/models", headers=auth)).status_code == 200
    svc.store.keys.revoke(key_id)  # another process (the CLI) revoked it: cached for key_cache_ttl_s
    assert (await client.get("/v1/models", headers=auth)).status_code == 200
    await asyncio.sleep(0.35)
    assert_error(await client.get("/v1/models", headers=auth), 401, "invalid_api_key")


async def test_no_key_anywhere_means_anonymous_until_one_is_created(svc: Services, client: httpx.AsyncClient) -> None:
    assert svc.store is not None
    r = await client.post("/v1/chat/completions", json=chat(max_tokens=1))
    assert r.status_code == 200 and "x-ratelimit-limit-requests" not in r.headers
    svc.store.keys.create("first")  # from the CLI, while the server runs
    await asyncio.sleep(0.35)
    assert_error(await client.get("/v1/models"), 401, "invalid_api_key")


async def test_store_keys_turn_auth_on_at_startup(tmp_path: Path, clock: Clock) -> None:
    first = make_services(tmp_path, clock)
    assert first.store is not None
    first.store.keys.create("k")
    await close_services(first)
    svc = make_services(tmp_path, clock)
    try:
        assert svc.auth.enabled
    finally:
        await close_services(svc)


async def test_admin_api_is_404_without_an_admin_key(tmp_path: Path, clock: Clock) -> None:
    svc = make_services(tmp_path, clock)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(svc)), base_url="http://t") as c:
            for method, path in [
                ("GET", "/admin/keys"),
                ("POST", "/admin/keys"),
                ("DELETE", "/admin/keys/x"),
                ("GET", "/admin/usage"),
            ]:
                r = await c.request(method, path, headers={"authorization": "Bearer anything"})
                assert r.status_code == 404
                spec.validate_error(r.json())
    finally:
        await close_services(svc)


async def test_admin_api_needs_the_admin_key(svc: Services, client: httpx.AsyncClient) -> None:
    _, user = new_key(svc)
    for headers in [{}, {"authorization": "Bearer wrong"}, user]:
        assert_error(await client.get("/admin/keys", headers=headers), 401, "invalid_api_key")
    assert_error(await client.post("/admin/keys", json={"name": "x"}, headers=user), 401, "invalid_api_key")
    assert_error(await client.get("/admin/engines", headers=user), 401, "invalid_api_key")


async def test_admin_engines_is_the_live_engine_state(svc: Services, client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/engines", headers=admin())
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"models", "cpu", "draining"} and body["draining"] is False
    assert set(body["models"]) == set(svc.registry.ids())
    assert all("kind" in stats for stats in body["models"].values())


async def test_admin_key_lifecycle(svc: Services, client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/admin/keys", json={"name": "svc-a", "models": ["fake-model"], "rpm": 5, "expires_in": "30d"}, headers=admin()
    )
    assert r.status_code == 201
    created = r.json()
    secret = created["key"]
    assert secret.startswith("sk-fp-") and created["redacted_value"] == secret[:10] + "..."
    assert created["status"] == "active" and created["models"] == ["fake-model"] and created["rpm"] == 5
    assert 29 * 86400 < created["expires_at"] - time.time() <= 30 * 86400

    r = await client.get("/v1/models", headers={"authorization": f"Bearer {secret}"})
    assert [m["id"] for m in r.json()["data"]] == ["fake-model"]

    listed = (await client.get("/admin/keys", headers=admin())).json()
    assert listed["object"] == "list" and [k["id"] for k in listed["data"]] == [created["id"]]
    assert secret not in str(listed) and "key" not in listed["data"][0]
    got = (await client.get(f"/admin/keys/{created['id']}", headers=admin())).json()
    assert got["name"] == "svc-a" and "key" not in got

    r = await client.delete(f"/admin/keys/{created['id']}", headers=admin())
    assert r.json()["status"] == "revoked" and r.json()["revoked_at"] is not None
    assert_error(await client.get("/v1/models", headers={"authorization": f"Bearer {secret}"}), 401, "invalid_api_key")
    assert_error(await client.delete("/admin/keys/key_nope", headers=admin()), 404, "key_not_found")
    assert_error(await client.get("/admin/keys/key_nope", headers=admin()), 404, "key_not_found")

    r = await client.post("/admin/keys", json={"name": "iso", "expires_at": "2099-01-01T00:00:00Z", "tpm": 100}, headers=admin())
    assert r.status_code == 201 and r.json()["expires_at"] == 4070908800


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x", "rpm": 0}, "rpm"),
        ({"name": "x", "rpm": "5"}, "rpm"),
        ({"name": "x", "models": "fake-model"}, "models"),
        ({"name": "x", "secret": "mine"}, "secret"),
        ({"name": "x", "expires_in": "3q"}, "expires_in"),
        ({"name": "x", "expires_at": 1}, "expires_at"),
        ({"name": "x", "expires_in": "1d", "expires_at": "2099-01-01"}, "expires_in"),
    ],
)
async def test_admin_create_validation(client: httpx.AsyncClient, body: dict[str, Any], param: str) -> None:
    err = assert_error(await client.post("/admin/keys", json=body, headers=admin()), 400, None, "invalid_request_error")
    assert err["param"] == param


async def test_usage_is_recorded_for_every_request(svc: Services, client: httpx.AsyncClient) -> None:
    key_id, auth = new_key(svc, name="metered", rpm=4)
    totals = {"prompt": 0, "completion": 0}
    r = await client.post("/v1/chat/completions", json=chat(max_tokens=3), headers=auth)
    totals["prompt"] += r.json()["usage"]["prompt_tokens"]
    totals["completion"] += r.json()["usage"]["completion_tokens"]
    r = await client.post(
        "/v1/chat/completions", json=chat(max_tokens=4, stream=True, stream_options={"include_usage": True}), headers=auth
    )
    final = events(r.text)[0][-1]["usage"]
    totals["prompt"] += final["prompt_tokens"]
    totals["completion"] += final["completion_tokens"]
    r = await client.post("/v1/chat/completions", json=chat(model="other-model", max_tokens=2, stream=True), headers=auth)
    assert r.status_code == 200  # no usage chunk asked for: still recorded
    await client.post("/v1/completions", json={"model": "fake-model", "prompt": "hi", "max_tokens": 2}, headers=auth)
    assert (await client.post("/v1/chat/completions", json=chat(max_tokens=1), headers=auth)).status_code == 429

    r = await client.get("/admin/usage", params={"by": "key"}, headers=admin())
    assert r.status_code == 200 and r.json()["by"] == "key"
    row = next(x for x in r.json()["data"] if x["key"] == key_id)
    assert row["name"] == "metered" and row["requests"] == 5 and row["errors"] == 1
    assert row["prompt_tokens"] >= totals["prompt"] and row["completion_tokens"] == totals["completion"] + 2 + 2
    by_model = {x["model"]: x["requests"] for x in (await client.get("/admin/usage?by=model", headers=admin())).json()["data"]}
    assert by_model == {"fake-model": 4, "other-model": 1}
    by_day = (await client.get("/admin/usage?by=day&since=2020-01-01", headers=admin())).json()["data"]
    assert [d["requests"] for d in by_day] == [5]
    assert (await client.get("/admin/usage?by=day&since=2999-01-01", headers=admin())).json()["data"] == []
    err = assert_error(await client.get("/admin/usage?by=endpoint", headers=admin()), 400, None)
    assert err["param"] == "by"
    err = assert_error(await client.get("/admin/usage?since=yesterday", headers=admin()), 400, None)
    assert err["param"] == "since"


async def test_responses_are_limited_metered_and_owned_like_everything_else(svc: Services, client: httpx.AsyncClient) -> None:
    key_id, auth = new_key(svc, name="agent", rpm=2)
    _, other = new_key(svc, name="someone-else")
    body = {"model": "fake-model", "input": "hi", "max_output_tokens": 16}
    first = await client.post("/v1/responses", json=body, headers=auth)
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "1"
    assert (await client.post("/v1/responses", json={**body, "stream": True}, headers=auth)).status_code == 200
    r = await client.post("/v1/responses", json={**body, "stream": True}, headers=auth)
    assert_error(r, 429, "rate_limit_exceeded", "requests")  # JSON before any event, like chat
    assert r.headers["content-type"].startswith("application/json")
    assert (await client.get(f"/v1/responses/{first.json()['id']}", headers=other)).status_code == 404
    r = await client.get("/admin/usage", params={"by": "key"}, headers=admin())
    row = next(x for x in r.json()["data"] if x["key"] == key_id)
    assert row["requests"] == 3 and row["errors"] == 1
    usage = first.json()["usage"]
    assert row["prompt_tokens"] >= usage["input_tokens"] and row["completion_tokens"] >= usage["output_tokens"] > 0
