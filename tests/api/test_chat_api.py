"""Chat and legacy completions over the real app with the fake engine: shapes, streaming, errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from faceplate.engines.fake import FakeEngine
from tests import spec
from tests.api.sse import events

USER = [{"role": "user", "content": "hello"}]


def chat(**kw: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": USER, **kw}


async def test_chat_completion_shape(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/chat/completions", json=chat(max_tokens=8, seed=3))
    assert r.status_code == 200
    body = r.json()
    spec.validate_chat_completion(body)
    spec.validate_chat_completion(body, profile="strict")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 8
    assert body["usage"]["prompt_tokens"] > 0
    assert r.headers["x-request-id"].startswith("req_")
    assert int(r.headers["openai-processing-ms"]) >= 0


async def test_request_id_is_echoed(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/chat/completions", json=chat(max_tokens=1), headers={"x-request-id": "mine-123"})
    assert r.headers["x-request-id"] == "mine-123"


async def test_stream_chunks_and_usage_only_when_asked(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/chat/completions", json=chat(max_tokens=5, stream=True, n=2))
    chunks, done = events(r.text)
    assert done and r.headers["content-type"].startswith("text/event-stream")
    for c in chunks:
        spec.validate_chat_chunk(c)
        assert "usage" not in c
    roles = [c["choices"][0]["delta"].get("role") for c in chunks if c["choices"]]
    assert roles.count("assistant") == 2  # one opening delta per choice, never repeated
    finishes = {c["choices"][0]["index"]: c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]}
    assert finishes == {0: "length", 1: "length"}

    r = await api.post("/v1/chat/completions", json=chat(max_tokens=5, stream=True, stream_options={"include_usage": True}))
    chunks, done = events(r.text)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    spec.validate_chat_chunk(chunks[-1])


async def test_stop_sequence_never_in_output(api: httpx.AsyncClient) -> None:
    full = (await api.post("/v1/chat/completions", json=chat(seed=1, max_tokens=60))).json()["choices"][0]["message"]["content"]
    stop = full[10:14]
    r = await api.post("/v1/chat/completions", json=chat(seed=1, max_tokens=60, stop=[stop]))
    body = r.json()
    assert body["choices"][0]["message"]["content"] == full[: full.index(stop)]
    assert body["choices"][0]["finish_reason"] == "stop"
    r = await api.post("/v1/chat/completions", json=chat(seed=1, max_tokens=60, stop=stop, stream=True))
    chunks, _ = events(r.text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == full[: full.index(stop)]


async def test_utf8_never_split(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/chat/completions", json=chat(seed=2, max_tokens=200, stream=True))
    chunks, _ = events(r.text)
    for c in chunks:
        assert "\ufffd" not in (c["choices"][0]["delta"].get("content") or "")


async def test_logprobs(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/chat/completions", json=chat(max_tokens=4, logprobs=True, top_logprobs=3))
    body = r.json()
    spec.validate_chat_completion(body)
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == 4 and all(len(t["top_logprobs"]) == 3 for t in content)


async def test_legacy_completion_echo_and_multi_prompt(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/v1/completions", json={"model": "fake-model", "prompt": ["ab", "cd"], "max_tokens": 3, "echo": True, "n": 2}
    )
    body = r.json()
    spec.validate_completion(body)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["choices"][0]["text"].startswith("ab") and body["choices"][2]["text"].startswith("cd")
    r = await api.post("/v1/completions", json={"model": "fake-model", "prompt": [104, 105], "max_tokens": 2, "logprobs": 2})
    body = r.json()
    spec.validate_completion(body)
    assert len(body["choices"][0]["logprobs"]["tokens"]) == 2


async def test_legacy_completion_stream(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/v1/completions",
        json={"model": "fake-model", "prompt": "x", "max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}},
    )
    chunks, done = events(r.text)
    assert done
    for c in chunks:
        spec.validate_completion_chunk(c)
    assert chunks[-1]["usage"]["completion_tokens"] == 3


def _err(
    r: httpx.Response, status: int, param: str | None, code: str | None = None, type_: str = "invalid_request_error"
) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    spec.validate_error(body)
    assert body["error"]["type"] == type_
    assert body["error"]["param"] == param, body
    assert body["error"]["code"] == code, body


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"messages": USER}, "model"),
        ({"model": "fake-model"}, "messages"),
        ({"model": "fake-model", "messages": []}, "messages"),
        ({"model": "fake-model", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "fake-model", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "fake-model", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (chat(temperature=3), "temperature"),
        (chat(temperature="hot"), "temperature"),
        (chat(top_p=1.5), "top_p"),
        (chat(n=0), "n"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        (chat(top_logprobs=21, logprobs=True), "top_logprobs"),
        (chat(top_logprobs=2), "top_logprobs"),
        (chat(logit_bias={"x": 1}), "logit_bias"),
        (chat(logit_bias={"5": 101}), "logit_bias"),
        (chat(logit_bias={"999999": 1}), "logit_bias"),
        (chat(stream_options={"include_usage": True}), "stream_options"),
        (chat(presence_penalty=-3), "presence_penalty"),
        (chat(stream="yes"), "stream"),
        (
            {
                "model": "fake-model",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            },
            "messages[0].content[0].type",
        ),
    ],
)
async def test_bad_chat_requests_are_400_naming_param(api: httpx.AsyncClient, payload: dict[str, Any], param: str) -> None:
    _err(await api.post("/v1/chat/completions", json=payload), 400, param)


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[1,2]", b'{"model": NaN}', b'{"model": Infinity}', b"[" * 50000, b'"just a string"', b"\xff\xfe"]
)
async def test_malformed_json_is_400(api: httpx.AsyncClient, raw: bytes) -> None:
    r = await api.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    _err(r, 400, None)


async def test_context_length_exceeded(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/chat/completions", json=chat(messages=[{"role": "user", "content": "x" * 600}]))
    _err(r, 400, "messages", "context_length_exceeded")
    r = await api.post("/v1/chat/completions", json=chat(max_tokens=500))
    _err(r, 400, "messages", "context_length_exceeded")
    r = await api.post("/v1/completions", json={"model": "fake-model", "prompt": "y" * 600})
    _err(r, 400, "prompt", "context_length_exceeded")


async def test_unknown_model_and_routes(api: httpx.AsyncClient) -> None:
    _err(await api.post("/v1/chat/completions", json=chat(model="nope")), 404, "model", "model_not_found")
    _err(await api.get("/v1/models/nope"), 404, "model", "model_not_found")
    _err(await api.get("/v1/nothing-here"), 404, None)
    _err(await api.get("/v1/chat/completions"), 405, None, "method_not_allowed")
    _err(await api.delete("/v1/models"), 405, None, "method_not_allowed")


async def test_auth(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/models", headers={"authorization": ""})
    _err(r, 401, None, "invalid_api_key")
    r = await api.get("/v1/models", headers={"authorization": "Bearer wrong-key-123456"})
    _err(r, 401, None, "invalid_api_key")
    assert "wrong-key" not in r.json()["error"]["message"]
    r = await api.get("/health", headers={"authorization": ""})
    assert r.status_code == 200 and r.json()["status"] == "ok"


async def test_unknown_fields_accepted_and_logged(api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="faceplate.protocol")
    r = await api.post("/v1/chat/completions", json=chat(max_tokens=1, brand_new_option={"x": 1}))
    assert r.status_code == 200
    assert "brand_new_option" in caplog.text


async def test_sdk_headers_accepted(api: httpx.AsyncClient) -> None:
    headers = {
        "OpenAI-Organization": "org-x",
        "OpenAI-Project": "proj-y",
        "X-Stainless-Lang": "python",
        "User-Agent": "OpenAI/Python 3.57",
    }
    r = await api.post("/v1/chat/completions", json=chat(max_tokens=1), headers=headers)
    assert r.status_code == 200


async def test_queue_overflow_is_503_with_retry_after(api: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.max_queue = 0
    engine._waiting = 0
    r = await api.post("/v1/chat/completions", json=chat(max_tokens=1))
    _err(r, 503, None, "server_overloaded", type_="server_error")
    assert int(r.headers["retry-after"]) >= 1


async def test_n_larger_than_parallel_is_400(api: httpx.AsyncClient) -> None:
    _err(await api.post("/v1/chat/completions", json=chat(n=9)), 400, "n")
