"""Requests an unlucky or hostile client sends, in-process over the fake engine: each must end cleanly."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import httpx
import pytest

from faceplate.access.auth import Authenticator, Principal, hash_key
from faceplate.access.limits import MemoryLimiter
from faceplate.app import create_app
from faceplate.config import Settings
from faceplate.engines.fake import FakeEngine
from faceplate.engines.registry import Registry
from faceplate.service.services import Services
from faceplate.store.keys import generate_secret
from tests.api.conftest import API_KEY
from tests.api.sse import events
from tests.recorders import Recorder


@pytest.fixture
def usage() -> Recorder:
    return Recorder()


@pytest.fixture
def services(engine: FakeEngine, usage: Recorder) -> Services:
    return Services(
        settings=Settings(api_keys=[API_KEY]), registry=Registry([engine]), auth=Authenticator([API_KEY]), usage=usage
    )


async def call_and_hang_up(app: Any, path: str, body: dict[str, Any], after_events: int = 0) -> list[dict[str, Any]]:
    """One request whose client is gone before the response starts (the body arrives, then the
    disconnect), or, with ``after_events``, once that many SSE data events were sent."""
    raw = json.dumps(body).encode()
    incoming = [{"type": "http.request", "body": raw, "more_body": False}]
    sent: list[dict[str, Any]] = []
    enough = asyncio.Event()
    if after_events == 0:
        enough.set()

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await enough.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        data = [m for m in sent if m["type"] == "http.response.body" and m.get("body", b"").startswith(b"data: ")]
        if len(data) >= after_events:
            enough.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {API_KEY}".encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("stream", [True, False])
async def test_a_client_gone_before_the_first_byte_frees_its_job_and_settles(
    services: Services, engine: FakeEngine, usage: Recorder, stream: bool
) -> None:
    engine.delay_s = 0.05  # 40 words at 50 ms a token: still running long after the hang-up
    app = create_app(services)
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    await asyncio.wait_for(call_and_hang_up(app, "/v1/chat/completions", body), 5)
    for _ in range(100):  # the cancellation lands at the engine's next step
        if engine.stats()["running_sequences"] == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.stats() == {"running_sequences": 0, "queued_requests": 0, "cancelled": 1}
    assert [r.status for r in usage.records] == [499]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_clients_gone_mid_stream_leave_no_task_or_job_behind(
    services: Services, engine: FakeEngine, usage: Recorder, path: str
) -> None:
    """A client that leaves while the stream waits for its next token: the task reading the source
    is cancelled with it (it once stayed pending on the cancelled job until the garbage collector
    destroyed it, logging "Task was destroyed but it is pending!"; the fake engine's job stayed
    running until then)."""
    engine.delay_s = 0.05  # the hang-up lands while the stream waits for the next token
    app = create_app(services)
    body: dict[str, Any] = {"model": "fake-model", "stream": True}
    body.update({"prompt": "hi"} if path == "/v1/completions" else {"messages": [{"role": "user", "content": "hi"}]})
    loop = asyncio.get_running_loop()
    complaints: list[str] = []
    loop.set_exception_handler(lambda _loop, context: complaints.append(context["message"]))
    gc.disable()  # what is left behind must not be cleaned up by a collection that happens to run
    try:
        for i in range(12):
            await asyncio.wait_for(call_and_hang_up(app, path, body, after_events=1 + i % 3), 5)
        await asyncio.sleep(0.2)  # more than a token: a step left running would have produced one
        assert engine.stats() == {"running_sequences": 0, "queued_requests": 0, "cancelled": 12}
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        assert [r.status for r in usage.records] == [499] * 12
    finally:
        gc.enable()
        loop.set_exception_handler(None)
    gc.collect()
    await asyncio.sleep(0.05)
    assert complaints == []


async def test_an_unexpected_engine_error_is_a_500_in_usage(services: Services, engine: FakeEngine, usage: Recorder) -> None:
    async def broken(prepared: Any) -> Any:
        await asyncio.sleep(0)
        raise RuntimeError("boom")
        yield  # an async generator, like the real one

    engine._run = broken  # type: ignore[method-assign]
    transport = httpx.ASGITransport(app=create_app(services), raise_app_exceptions=False)  # as uvicorn: a 500 is sent
    api = httpx.AsyncClient(transport=transport, base_url="http://test", headers={"authorization": f"Bearer {API_KEY}"})
    r = await api.post(
        "/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "stream": True}
    )
    chunks, done = events(r.text)
    assert chunks[-1]["error"]["type"] == "server_error" and not done
    r = await api.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert [rec.status for rec in usage.records] == [500, 500]


async def test_the_fake_engine_gives_its_queue_place_back_when_closed_unread(engine: FakeEngine) -> None:
    from faceplate.engines.base import CompletionRequest
    from faceplate.service.cpu import InlineCpu

    prepared = await engine.prepare_completion(CompletionRequest("r", "hi"), InlineCpu())
    stream = engine.generate(prepared)
    assert engine.stats()["queued_requests"] == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert engine.stats()["queued_requests"] == 0


class OneKey:
    def __init__(self, secret: str, principal: Principal) -> None:
        self.hash, self.principal = hash_key(secret), principal

    async def principal_for_hash(self, key_hash: str) -> Principal | None:
        return self.principal if key_hash == self.hash else None

    async def has_keys(self) -> bool:
        return True


async def test_a_key_with_a_small_tpm_is_not_refused_for_the_context_it_did_not_ask_for() -> None:
    engine = FakeEngine("fake-model", n_ctx=4096)
    secret = generate_secret()
    lookup = OneKey(secret, Principal(key_id="k", name="small", tpm=1000))
    svc = Services(
        settings=Settings(),
        registry=Registry([engine]),
        auth=Authenticator([], lookup, store_has_keys=True),
        limiter=MemoryLimiter(),
    )
    assert engine.n_ctx > 1000
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(svc)), base_url="http://localhost") as c:
        auth = {"authorization": f"Bearer {secret}"}
        r = await c.post(
            "/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}, headers=auth
        )
        assert r.status_code == 200, r.text
        # Asking for more than the whole TPM by itself is still "too large", and not worth retrying.
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1001},
            headers=auth,
        )
        assert r.status_code == 429 and r.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    "body,param",
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"function_call": "auto"}, "function_call"),
    ],
)
async def test_tool_choice_without_tools_is_refused(api: httpx.AsyncClient, body: dict[str, Any], param: str) -> None:
    r = await api.post(
        "/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}], **body}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == param


async def test_completion_prompt_missing_is_a_400_and_empty_prompts_answer(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/completions", json={"model": "fake-model", "max_tokens": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    for prompt in (None, "", [""]):
        r = await api.post("/v1/completions", json={"model": "fake-model", "prompt": prompt, "max_tokens": 3})
        assert r.status_code == 200, prompt


async def test_more_prompts_than_the_model_can_ever_queue_is_a_400_not_a_retryable_503(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/completions", json={"model": "fake-model", "prompt": ["a"] * 40, "max_tokens": 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = await api.post("/v1/completions", json={"model": "fake-model", "prompt": ["a"] * 20, "n": 8, "max_tokens": 1})
    assert r.status_code == 400
    r = await api.post("/v1/completions", json={"model": "fake-model", "prompt": ["a"] * 20, "max_tokens": 1})
    assert r.status_code == 200 and len(r.json()["choices"]) == 20
