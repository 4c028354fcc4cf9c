"""The auth gate: every route needs a key unless it is on the public allow-list; Host checks without auth."""

from __future__ import annotations

import httpx
from starlette.routing import Route

from faceplate.access.auth import Authenticator
from faceplate.app import create_app
from faceplate.config import Settings
from faceplate.engines.fake import FakeEngine
from faceplate.engines.registry import Registry
from faceplate.http.gate import PUBLIC
from faceplate.service.services import Services
from tests.api.conftest import API_KEY


def _routes(app: object) -> list[Route]:
    while not hasattr(app, "routes"):
        app = app.app  # type: ignore[attr-defined]
    return [r for r in app.routes if isinstance(r, Route)]  # type: ignore[attr-defined]


async def test_every_route_but_the_public_ones_needs_a_key(services: Services) -> None:
    app = create_app(services)
    routes = _routes(app)
    assert {r.path for r in routes} >= {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as anon:
        for route in routes:
            path = route.path.replace("{model:path}", "fake-model").replace("{key_id}", "k")
            path = path.replace("{page:str}", "console").replace("{name:str}", "style.css")
            for method in sorted(route.methods or {"GET"}):
                if method == "HEAD":
                    continue
                r = await anon.request(method, path, json={})
                if route.path in PUBLIC:
                    assert r.status_code == 200, (method, path)
                elif route.path == "/" or route.path.startswith("/ui"):  # the static pages, no key
                    assert r.status_code == (307 if path in ("/", "/ui") else 200), (method, path)
                    assert "content-security-policy" in r.headers or r.status_code == 307
                elif route.path.startswith("/admin"):
                    assert r.status_code == 404, (method, path)  # no admin key configured: nothing there
                else:
                    assert r.status_code == 401, (method, path)
                    assert r.json()["error"]["code"] == "invalid_api_key"
        assert (await anon.post("/v1/not-a-route")).status_code == 401  # unknown paths say nothing either


async def test_health_shows_counters_only_to_a_key(api: httpx.AsyncClient, services: Services) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)), base_url="http://test") as anon:
        r = await anon.get("/health")
        assert r.json() == {"status": "ok"}
        assert (await anon.get("/health", headers={"authorization": "Bearer wrong"})).json() == {"status": "ok"}
        assert (await anon.get("/health/live")).status_code == 200
        assert (await anon.get("/health/ready")).json() == {"status": "ready"}
    r = await api.get("/health")
    assert "fake-model" in r.json()["models"]


async def test_without_auth_only_requests_addressed_to_this_machine_are_served() -> None:
    svc = Services(settings=Settings(), registry=Registry([FakeEngine()]), auth=Authenticator([]))
    transport = httpx.ASGITransport(app=create_app(svc))
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for host, status in [
        ("localhost:8000", 200),
        ("127.0.0.1:8000", 200),
        ("[::1]:8000", 200),
        ("app.localhost", 200),
        ("attacker.example", 403),
        ("attacker.example:8000", 403),
        ("127.0.0.1.nip.io", 403),
    ]:
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
            r = await c.post("/v1/chat/completions", json=body, headers={"host": host})
            assert r.status_code == status, host
            if status == 403:
                assert r.json()["error"]["code"] == "host_not_allowed"
            page = await c.get("/ui/", headers={"host": host})  # the pages too: no rebinding foothold
            assert page.status_code == status, host


async def test_allowed_hosts_and_auth_lift_the_host_check() -> None:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    allowed = Services(
        settings=Settings(allowed_hosts=["llm.internal"]), registry=Registry([FakeEngine()]), auth=Authenticator([])
    )
    keyed = Services(settings=Settings(api_keys=[API_KEY]), registry=Registry([FakeEngine()]), auth=Authenticator([API_KEY]))
    for svc, host, headers in [
        (allowed, "llm.internal:8000", {}),
        (keyed, "anything.example", {"authorization": f"Bearer {API_KEY}"}),
    ]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(svc)), base_url="http://x") as c:
            r = await c.post("/v1/chat/completions", json=body, headers={"host": host, **headers})
            assert r.status_code == 200, host
