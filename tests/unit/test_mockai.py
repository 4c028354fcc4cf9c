"""tests/upstreams: mockai shows each flavour's documented deviation, its fault controls do what
they say (a cut connection is really cut, a stall really stalls, a client that leaves is counted
as an abort), the prefill model sees repeated prefixes; the chaos proxy and the subprocess launcher
work. Loopback only; every test is bounded by ``bounded`` and by client timeouts."""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import openai
import pytest

from tests.upstreams.chaos import start_chaos
from tests.upstreams.launch import run_mockai
from tests.upstreams.mockai import MockAI, start_mockai

MSG = [{"role": "user", "content": "hello there"}]
CHAT = {"model": "m", "messages": MSG}


def bounded(seconds: float = 10.0) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., Awaitable[None]]]:
    def wrap(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> None:
            await asyncio.wait_for(test(*args, **kwargs), seconds)

        return run

    return wrap


@pytest.fixture
async def mocks() -> AsyncIterator[Callable[..., Awaitable[MockAI]]]:
    started: list[MockAI] = []

    async def start(**kw: Any) -> MockAI:
        started.append(await start_mockai(**kw))
        return started[-1]

    yield start
    for m in started:
        await m.close()


def sdk(mock: MockAI) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=mock.base_url, api_key="x", max_retries=0, timeout=5, _strict_response_validation=True)


async def sse(client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> list[Any]:
    """Every ``data:`` payload of a stream (JSON decoded, ``[DONE]`` kept as a string)."""
    out: list[Any] = []
    async with client.stream("POST", url, json={**body, "stream": True}, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                out.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))
    return out


async def until(cond: Callable[[], bool], seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def contents(events: list[Any]) -> list[str]:
    deltas = [e["choices"][0]["delta"] for e in events if isinstance(e, dict) and e.get("choices")]
    return [d["content"] for d in deltas if "content" in d]


# ---------------------------------------------------------------- the openai flavour through the SDK


@bounded()
async def test_openai_chat_text_usage_and_last_body(mocks: Any) -> None:
    mock = await mocks()
    async with sdk(mock) as client:
        r = await client.chat.completions.create(model="m", messages=MSG, max_tokens=3)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "tok0 tok1 tok2" and r.choices[0].finish_reason == "length"
    assert r.usage and r.usage.completion_tokens == 3 and r.usage.prompt_tokens == len("hello there") // 4
    assert mock.stats.last_body == {"model": "m", "messages": MSG, "max_tokens": 3}
    assert mock.stats.requests["/v1/chat/completions"] == 1 and mock.stats.completed == 1


@bounded()
async def test_openai_stream_usage_only_when_asked(mocks: Any) -> None:
    mock = await mocks()
    async with sdk(mock) as client:
        stream = await client.chat.completions.create(model="m", messages=MSG, stream=True, max_completion_tokens=4)  # type: ignore[arg-type]
        plain = [c async for c in stream]
        stream = await client.chat.completions.create(
            model="m",
            messages=MSG,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        usage = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in plain) == "tok0 tok1 tok2 tok3"
    assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason == "length"
    assert usage[-1].choices == [] and usage[-1].usage and usage[-1].usage.completion_tokens == 16
    assert usage[-2].choices[0].finish_reason == "stop"


@bounded()
async def test_n_logprobs_and_stop(mocks: Any) -> None:
    mock = await mocks()
    async with sdk(mock) as client:
        r = await client.chat.completions.create(
            model="m",
            messages=MSG,  # type: ignore[arg-type]
            n=2,
            logprobs=True,
            top_logprobs=2,
            stop=[" tok2"],
        )
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.message.content == "tok0 tok1" and c.finish_reason == "stop" for c in r.choices)
    lp = r.choices[0].logprobs
    assert lp and lp.content and [t.token for t in lp.content] == ["tok0", " tok1"]
    assert lp.content[1].bytes == list(b" tok1") and len(lp.content[1].top_logprobs) == 2
    assert r.usage and r.usage.completion_tokens == 4


@bounded()
async def test_forced_tool_call_and_json_mode(mocks: Any) -> None:
    mock = await mocks()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    async with sdk(mock) as client:
        r = await client.chat.completions.create(model="m", messages=MSG, tools=tools, tool_choice="required")  # type: ignore[arg-type]
        auto = await client.chat.completions.create(model="m", messages=MSG, tools=tools)  # type: ignore[arg-type]
        async with client.chat.completions.stream(
            model="m",
            messages=MSG,  # type: ignore[arg-type]
            tools=tools,  # type: ignore[arg-type]
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        ) as stream:
            final = await stream.get_final_completion()
        js = await client.chat.completions.create(model="m", messages=MSG, response_format={"type": "json_object"})  # type: ignore[arg-type]
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {}  # type: ignore[union-attr]
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert auto.choices[0].message.tool_calls is None and auto.choices[0].finish_reason == "stop"
    streamed = final.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert streamed.id == "call_mock0" and streamed.function.name == "get_weather" and streamed.function.arguments == "{}"  # type: ignore[union-attr]
    assert js.choices[0].message.content == "{}"


@bounded()
async def test_completions_embeddings_models(mocks: Any) -> None:
    mock = await mocks()
    async with sdk(mock) as client:
        r = await client.completions.create(model="m", prompt=["abcd" * 4, "x"], max_tokens=2, logprobs=1)
        floats = await client.embeddings.create(model="m", input="a", encoding_format="float", dimensions=4)
        models = await client.models.list()
    # The SDK's strict mode cannot read two things OpenAI itself sends: legacy completion chunks
    # (finish_reason null mid-stream) and base64 embeddings (validated before decoding). Leniently:
    async with openai.AsyncOpenAI(base_url=mock.base_url, api_key="x", max_retries=0, timeout=5) as lenient:
        chunks = [c async for c in await lenient.completions.create(model="m", prompt="p", max_tokens=2, stream=True)]
        e = await lenient.embeddings.create(model="m", input=["a", "b", "a"])  # base64 on the wire by default
    assert mock.stats.last_body and mock.stats.last_body["encoding_format"] == "base64"
    assert [c.text for c in r.choices] == ["tok0 tok1", "tok0 tok1"] and r.usage and r.usage.prompt_tokens == 4
    assert r.choices[0].logprobs and r.choices[0].logprobs.tokens == ["tok0", " tok1"]
    assert "".join(c.choices[0].text for c in chunks) == "tok0 tok1" and chunks[-1].choices[0].finish_reason == "length"
    vecs = [d.embedding for d in e.data]
    assert len(vecs[0]) == 8 and vecs[0] == vecs[2] != vecs[1]
    assert math.isclose(sum(v * v for v in vecs[0]), 1.0, rel_tol=1e-5)
    assert len(floats.data[0].embedding) == 4
    assert [m.id for m in models.data] == ["mock-model"]


@bounded()
async def test_openai_refuses_unknown_fields_vllm_accepts_them(mocks: Any) -> None:
    strict, vllm = await mocks(), await mocks(flavour="vllm")
    async with sdk(strict) as client, sdk(vllm) as vclient:
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(model="m", messages=MSG, extra_body={"top_k": 5})  # type: ignore[arg-type]
        ok = await vclient.chat.completions.create(
            model="m",
            messages=MSG,  # type: ignore[arg-type]
            max_tokens=1,
            extra_body={"top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1},
        )
    assert err.value.code is None and "top_k" in err.value.message
    assert ok.choices[0].message.content == "tok0" and vllm.stats.last_body and vllm.stats.last_body["top_k"] == 5


# ---------------------------------------------------------------- flavour deviations


@bounded()
async def test_vllm_errors_are_flat_with_integer_code(mocks: Any) -> None:
    mock = await mocks(flavour="vllm")
    async with httpx.AsyncClient(base_url=mock.url, timeout=5) as c:
        bad = await c.post("/v1/chat/completions", json={"model": "m", "messages": []})
        busy = await c.post("/v1/chat/completions", json=CHAT, headers={"x-mock-status": "503"})
    assert bad.status_code == 400
    body = bad.json()
    assert body["object"] == "error" and body["type"] == "BadRequestError" and body["code"] == 400 and "error" not in body
    assert busy.status_code == 503 and busy.json()["type"] == "ServiceUnavailableError" and busy.json()["code"] == 503


@bounded()
async def test_llama_server_always_sends_usage_and_refuses_n(mocks: Any) -> None:
    mock = await mocks(flavour="llama-server")
    async with httpx.AsyncClient(base_url=mock.url, timeout=5) as c:
        events = await sse(c, "/v1/chat/completions", {**CHAT, "max_tokens": 2})
        asked = await sse(c, "/v1/chat/completions", {**CHAT, "max_tokens": 2, "stream_options": {"include_usage": True}})
        n2 = await c.post("/v1/chat/completions", json={**CHAT, "n": 2})
    assert events[-1] == "[DONE]"
    finishing = events[-2]
    assert finishing["choices"][0]["finish_reason"] == "length"  # no stream_options, usage all the same
    assert finishing["usage"]["completion_tokens"] == 2 and finishing["timings"]["predicted_n"] == 2
    assert asked[-2]["choices"] == [] and asked[-2]["usage"]["completion_tokens"] == 2
    assert n2.status_code == 400
    assert n2.json() == {
        "error": {"code": 400, "message": "Only one completion choice is allowed", "type": "invalid_request_error"}
    }


@bounded()
async def test_tgi_error_shape_and_no_embeddings(mocks: Any) -> None:
    mock = await mocks(flavour="tgi")
    async with httpx.AsyncClient(base_url=mock.url, timeout=5) as c:
        n2 = await c.post("/v1/chat/completions", json={**CHAT, "n": 2})
        emb = await c.post("/v1/embeddings", json={"model": "m", "input": "a"})
        busy = await c.post("/v1/completions", json={"prompt": "x"}, headers={"x-mock-status": "429"})
    assert n2.status_code == 422
    assert n2.json()["error_type"] == "validation" and isinstance(n2.json()["error"], str)
    assert emb.status_code == 404
    assert busy.status_code == 429 and busy.json() == {"error": "mockai: injected failure", "error_type": "overloaded"}


@bounded()
async def test_ollama_ignores_tool_choice_and_answers_one_choice(mocks: Any) -> None:
    mock = await mocks(flavour="ollama")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    async with httpx.AsyncClient(base_url=mock.url, timeout=5) as c:
        forced = await c.post("/v1/chat/completions", json={**CHAT, "tools": tools, "tool_choice": "required"})
        n3 = await c.post("/v1/chat/completions", json={**CHAT, "n": 3, "max_tokens": 1})
        err = await c.post("/v1/chat/completions", json=CHAT, headers={"x-mock-status": "500"})
    choice = forced.json()["choices"][0]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"] and choice["message"]["content"]
    assert n3.status_code == 200 and len(n3.json()["choices"]) == 1
    assert err.json() == {"error": {"message": "mockai: injected failure", "type": "api_error", "param": None, "code": None}}


@pytest.mark.parametrize(
    ("flavour", "path", "needle"),
    [
        ("llama-server", "/slots", '"is_processing": false'),
        ("llama-server", "/props", "total_slots"),
        ("llama-server", "/metrics", "llamacpp:requests_processing 0.0"),
        ("vllm", "/metrics", 'vllm:num_requests_waiting{model_name="mock-model"} 0.0'),
        ("vllm", "/version", '"version"'),
        ("sglang", "/get_load", '"num_waiting_reqs": 0'),
        ("ollama", "/api/version", '"version"'),
        ("tgi", "/info", '"model_id": "mock-model"'),
        ("openai", "/health", '{"status": "ok"}'),
    ],
)
@bounded()
async def test_flavour_endpoints(mocks: Any, flavour: str, path: str, needle: str) -> None:
    mock = await mocks(flavour=flavour)
    async with httpx.AsyncClient(base_url=mock.url, timeout=5) as c:
        r = await c.get(path)
    assert r.status_code == 200 and needle in r.text


# ---------------------------------------------------------------- faults


@bounded()
async def test_die_after_cuts_the_connection_mid_stream(mocks: Any) -> None:
    mock = await mocks()
    got: list[Any] = []
    async with httpx.AsyncClient(base_url=mock.url, timeout=5) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            async with c.stream(
                "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers={"x-mock-die-after": "3"}
            ) as r:
                async for line in r.aiter_lines():
                    got.append(line)
        with pytest.raises(httpx.RemoteProtocolError):  # 0: nothing at all, not even headers
            await c.post("/v1/chat/completions", json=CHAT, headers={"x-mock-die-after": "0"})
        with pytest.raises(httpx.RemoteProtocolError):  # non-stream: half a body
            await c.post("/v1/chat/completions", json=CHAT, headers={"x-mock-die-after": "2"})
    assert contents([json.loads(x[6:]) for x in got if x.startswith("data: {")]) == ["", "tok0", " tok1", " tok2"]
    assert "data: [DONE]" not in got
    await until(lambda: mock.stats.in_flight == 0)
    assert mock.stats.died == 3 and mock.stats.aborted == 0 and mock.stats.completed == 0


@bounded()
async def test_stall_then_client_timeout_is_recorded_as_abort(mocks: Any) -> None:
    mock = await mocks()
    got: list[str] = []
    async with httpx.AsyncClient(base_url=mock.url, timeout=httpx.Timeout(5, read=0.3)) as c:
        with pytest.raises(httpx.ReadTimeout):
            async with c.stream(
                "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers={"x-mock-stall-after": "2"}
            ) as r:
                async for line in r.aiter_lines():
                    got.append(line)
    assert len(contents([json.loads(x[6:]) for x in got if x.startswith("data: {")])) == 3  # role + 2 tokens
    await until(lambda: mock.stats.aborted == 1)
    assert mock.stats.in_flight == 0 and mock.stats.running == 0 and mock.stats.completed == 0


@bounded()
async def test_client_leaving_mid_stream_and_before_headers_is_recorded(mocks: Any) -> None:
    mock = await mocks()
    async with httpx.AsyncClient(base_url=mock.url, timeout=5) as c:
        async with c.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers={"x-mock-interval-ms": "100"}
        ) as r:
            async for line in r.aiter_lines():
                if "tok0" in line:
                    break  # leaving the block closes the response mid-stream
        await until(lambda: mock.stats.aborted == 1)
        task = asyncio.create_task(c.post("/v1/chat/completions", json=CHAT, headers={"x-mock-ttfb-ms": "5000"}))
        await until(lambda: mock.stats.in_flight == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await until(lambda: mock.stats.aborted == 2)
    assert mock.stats.in_flight == 0 and mock.stats.completed == 0


@bounded()
async def test_queue_slots_and_abort_while_queued(mocks: Any) -> None:
    mock = await mocks(flavour="llama-server", max_inflight=1)
    async with httpx.AsyncClient(base_url=mock.url, timeout=5) as c:
        holder = asyncio.create_task(c.post("/v1/chat/completions", json=CHAT, headers={"x-mock-stall-after": "1"}))
        await until(lambda: mock.stats.running == 1)
        queued = asyncio.create_task(c.post("/v1/chat/completions", json=CHAT))
        await until(lambda: mock.stats.waiting == 1)
        slots = (await c.get("/slots")).json()
        for task, aborts in ((queued, 1), (holder, 2)):  # the queued one first, then the one in the slot
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda aborts=aborts: mock.stats.aborted == aborts)
        assert mock.stats.running == mock.stats.waiting == 0
        await asyncio.gather(*(c.post("/v1/chat/completions", json={**CHAT, "max_tokens": 1}) for _ in range(3)))
    assert slots == [{"id": 0, "id_task": -1, "n_ctx": 4096, "is_processing": True, "params": {}}]
    assert mock.stats.max_running == 1 and mock.stats.max_in_flight >= 2 and mock.stats.completed == 3


@bounded()
async def test_status_with_retry_after(mocks: Any) -> None:
    mock = await mocks()
    async with sdk(mock) as client:
        with pytest.raises(openai.RateLimitError) as err:
            await client.chat.completions.with_raw_response.create(
                model="m",
                messages=MSG,  # type: ignore[arg-type]
                extra_headers={"x-mock-status": "429", "x-mock-retry-after": "7"},
            )
    assert err.value.response.headers["retry-after"] == "7" and err.value.code == "rate_limit_exceeded"
    assert mock.stats.completed == 0


@bounded()
async def test_error_after_sends_an_in_band_error(mocks: Any) -> None:
    mock = await mocks()
    seen: list[str] = []
    async with sdk(mock) as client:
        stream = await client.chat.completions.create(
            model="m", messages=MSG, stream=True, extra_headers={"x-mock-error-after": "2"}
        )  # type: ignore[arg-type]
        with pytest.raises(openai.APIError, match="injected stream error"):
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.content or "")
    assert seen == ["", "tok0", " tok1"]


@bounded()
async def test_instance_config_count_reset_and_health(mocks: Any) -> None:
    mock = await mocks()
    async with httpx.AsyncClient(base_url=mock.url, timeout=5) as c:
        assert (await c.post("/mock/config", json={"status": 503, "count": 1})).status_code == 200
        first = await c.post("/v1/chat/completions", json=CHAT)
        second = await c.post("/v1/chat/completions", json=CHAT)
        header_wins = await c.post("/v1/chat/completions", json=CHAT, headers={"x-mock-chunks": "2"})
        mock.config(health_status=503)
        sick = await c.get("/health")
        stats = (await c.get("/mock/stats")).json()
        await c.post("/mock/reset")
        healthy = await c.get("/health")
        bogus = await c.post("/mock/config", json={"nonsense": 1})
    assert first.status_code == 503 and second.status_code == 200
    assert header_wins.json()["choices"][0]["message"]["content"] == "tok0 tok1"
    assert sick.status_code == 503 and healthy.status_code == 200 and bogus.status_code == 400
    assert stats["requests"]["/v1/chat/completions"] == 3 and stats["completed"] == 2
    assert mock.stats.requests == {"/health": 1}


@bounded()
async def test_prefill_model_counts_cached_prefixes(mocks: Any) -> None:
    mock = await mocks(prefill_ms_per_kchar=1.0)
    system = {"role": "system", "content": "s" * 4000}

    async def cached(user: str) -> tuple[int, int]:
        r = await c.post("/v1/chat/completions", json={"model": "m", "messages": [system, {"role": "user", "content": user}]})
        usage = r.json()["usage"]
        return usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]

    async with httpx.AsyncClient(base_url=mock.url, timeout=5) as c:
        first = await cached("question one")
        again = await cached("question one")
        sibling = await cached("another question")
    assert first[1] == 0
    assert again == (first[0], first[0])  # the whole prompt was seen
    assert sibling[1] == len("s" * 4000 + "\n") // 4  # the shared system prompt only
    mock.reset()
    async with httpx.AsyncClient(base_url=mock.url, timeout=5) as c:
        assert (await cached("question one"))[1] == 0


# ---------------------------------------------------------------- chaos proxy and the subprocess


@bounded(15)
async def test_chaos_proxy_modes(mocks: Any) -> None:
    mock = await mocks()
    proxy = await start_chaos("127.0.0.1", mock.port)
    try:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=httpx.Timeout(5, read=1.0)) as c:
            ok = await c.post("/v1/chat/completions", json=CHAT)
            assert ok.status_code == 200 and proxy.connections == 1
            await proxy.set(latency_ms=50)
            slow = await c.post("/v1/chat/completions", json=CHAT, headers={"connection": "close"})
            assert slow.elapsed.total_seconds() >= 0.05
            await proxy.set(latency_ms=0, reset_after_bytes=40)
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await c.post("/v1/chat/completions", json=CHAT, headers={"connection": "close"})
            assert proxy.resets == 1
            await proxy.set(mode="blackhole", reset_after_bytes=None)
            with pytest.raises(httpx.ReadTimeout):
                await c.post("/v1/chat/completions", json=CHAT)
            await proxy.set(mode="refuse")
            with pytest.raises(httpx.ConnectError):
                await c.post("/v1/chat/completions", json=CHAT)
            await proxy.set(mode="pass")
            assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200
    finally:
        await proxy.close()
    await until(lambda: proxy.active == 0)


def test_run_mockai_subprocess_kill_and_restart() -> None:
    with run_mockai(flavour="vllm", max_inflight=2, model="sub") as url:
        assert "mockai listening on " + url in url.log()
        r = httpx.post(url.base_url + "/chat/completions", json=CHAT, timeout=5)
        assert r.status_code == 200 and r.json()["model"] == "m"
        assert "vllm:num_requests_running" in httpx.get(url + "/metrics", timeout=5).text
        assert httpx.get(url.base_url + "/models", timeout=5).json()["data"][0]["id"] == "sub"
        url.kill()
        assert url.proc.returncode == -9
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health", timeout=2)
        url.restart()
        assert httpx.get(url + "/health", timeout=5).status_code == 200
