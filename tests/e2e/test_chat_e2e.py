"""The official SDK against `faceplate serve` with the bundled SmolLM2 model (issue: foundation).

Every body and SSE chunk is validated against OpenAI's spec by the client's transport.
"""

from __future__ import annotations

import httpx
import httpx2
import openai
import pytest

from tests import spec
from tests.conformance import ValidatingTransport
from tests.e2e.conftest import E2E_KEY
from tests.serverproc import ServerProcess

MODEL = "smollm2-135m-instruct"
ASK = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def test_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert MODEL in ids and "all-minilm-l6-v2" in ids
    model = client.models.retrieve(MODEL)
    assert model.id == MODEL and model.object == "model"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"


def test_chat_plain(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=40, temperature=0)
    choice = r.choices[0]
    assert "paris" in (choice.message.content or "").lower()
    assert choice.finish_reason in ("stop", "length")
    assert r.usage and r.usage.prompt_tokens > 10 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r._request_id and r._request_id.startswith("req_")


def test_chat_system_developer_and_parts(client: openai.OpenAI) -> None:
    messages = [
        {"role": "developer", "content": "You answer briefly."},
        {"role": "system", "content": [{"type": "text", "text": "Be polite."}]},
        {"role": "user", "content": [{"type": "text", "text": "Say hi."}]},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Again."},
    ]
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, max_completion_tokens=8)
    assert r.usage and r.usage.completion_tokens <= 8


def test_chat_streamed_matches_non_streamed(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=30, temperature=0)
    stream = client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=30, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]


def test_no_usage_chunk_unless_asked(client: openai.OpenAI, transport: ValidatingTransport) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5, stream=True))
    assert all(c.choices for c in chunks)
    assert all("usage" not in raw for raw in transport.responses)


def test_n3_streamed_interleaved(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=12, n=3, seed=7, stream=True)
    texts = {0: "", 1: "", 2: ""}
    finished = set()
    for c in stream:
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                finished.add(ch.index)
    assert finished == {0, 1, 2} and all(texts.values())
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=12, n=3, seed=7)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert [c.message.content for c in r.choices] == [texts[0], texts[1], texts[2]]


def test_seed_determinism(client: openai.OpenAI) -> None:
    kw = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a short poem about the sea."}],
        max_tokens=30,
        seed=1234,
        temperature=1.0,
    )
    a = client.chat.completions.create(**kw).choices[0].message.content  # type: ignore[call-overload]
    b = client.chat.completions.create(**kw).choices[0].message.content  # type: ignore[call-overload]
    assert a == b
    kw["seed"] = 99
    others = {client.chat.completions.create(**kw).choices[0].message.content for _ in range(2)}  # type: ignore[call-overload]
    assert len(others) == 1 and others != {a}


def test_stop_sequences(client: openai.OpenAI) -> None:
    base = (
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=40, temperature=0).choices[0].message.content or ""
    )
    words = base.split()
    assert len(words) > 3
    stop = words[2]
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=40, temperature=0, stop=[stop, "zzzz"])
    assert r.choices[0].finish_reason == "stop"
    assert stop not in (r.choices[0].message.content or "")
    assert base.startswith(r.choices[0].message.content or "")
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=40, temperature=0, stop=stop, stream=True)
        if c.choices
    )
    assert streamed == r.choices[0].message.content


def test_logprobs(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=6, logprobs=True, top_logprobs=3, temperature=0)
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and len(content) == r.usage.completion_tokens  # type: ignore[union-attr]
    for tok in content:
        assert tok.logprob <= 0 and len(tok.top_logprobs) == 3
        assert tok.top_logprobs[0].logprob >= tok.top_logprobs[-1].logprob
        assert tok.top_logprobs[0].token == tok.token  # greedy: the chosen token is the most likely
    assert "".join(t.token for t in content) == r.choices[0].message.content


def test_max_tokens_gives_length(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Tell me a long story."}], max_tokens=5)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5  # type: ignore[union-attr]


def test_legacy_completions(client: openai.OpenAI, server: ServerProcess, transport: ValidatingTransport) -> None:
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0, echo=True)
    assert r.choices[0].text.startswith("The capital of France is")
    assert r.usage and r.usage.completion_tokens > 0
    # OpenAI itself streams legacy chunks with "finish_reason": null, which the SDK's strict mode
    # rejects (its Completion model has no null there); the spec transport still checks each chunk.
    loose = openai.OpenAI(
        base_url=server.base_url, api_key=E2E_KEY, http_client=httpx2.Client(transport=transport), max_retries=0
    )
    stream = loose.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True)
    text = "".join(c.choices[0].text for c in stream if c.choices)
    loose.close()
    assert "The capital of France is" + text == r.choices[0].text
    multi = client.completions.create(model=MODEL, prompt=["One, two,", "Red, green,"], max_tokens=4, n=2, logprobs=2)
    assert [c.index for c in multi.choices] == [0, 1, 2, 3]
    assert multi.choices[0].logprobs and multi.choices[0].logprobs.tokens
    tokens = client.completions.create(model=MODEL, prompt=[[504, 3575, 282]], max_tokens=3)
    assert tokens.usage and tokens.usage.prompt_tokens == 3


def _expect(
    exc: pytest.ExceptionInfo[openai.APIStatusError], status: int, type_: str, code: str | None, param: str | None
) -> None:
    e = exc.value
    assert e.status_code == status
    body = e.body
    assert isinstance(body, dict) and body.get("type") == type_, body
    assert e.code == code and e.param == param, (e.code, e.param)


def test_error_classes(client: openai.OpenAI, server: ServerProcess) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=ASK, temperature=5)
    _expect(bad, 400, "invalid_request_error", None, "temperature")
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[{"role": "wizard", "content": "x"}])  # type: ignore[list-item]
    _expect(bad, 400, "invalid_request_error", None, "messages[0].role")
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 9000}])
    _expect(bad, 400, "invalid_request_error", "context_length_exceeded", "messages")
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="gpt-nothing", messages=ASK)
    _expect(nf, 404, "invalid_request_error", "model_not_found", "model")
    wrong = openai.OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError) as auth:
        wrong.models.list()
    _expect(auth, 401, "invalid_request_error", "invalid_api_key", None)

    with httpx.Client(base_url=server.root, headers={"authorization": f"Bearer {E2E_KEY}"}) as raw:
        _raw_errors(raw)


def _raw_errors(raw: httpx.Client) -> None:
    for resp, status, code in [
        (raw.post("/v1/chat/completions", content=b"{not json"), 400, None),
        (raw.post("/v1/chat/completions", json={"model": MODEL, "messages": ASK, "n": "3"}), 400, None),
        (raw.get("/v1/does-not-exist"), 404, None),
        (raw.put("/v1/chat/completions", json={}), 405, "method_not_allowed"),
        (raw.get("/v1/models", headers={"authorization": ""}), 401, "invalid_api_key"),
    ]:
        assert resp.status_code == status
        spec.validate_error(resp.json())
        assert resp.json()["error"]["code"] == code
        assert resp.headers["x-request-id"]
    health = raw.get("/health").json()
    assert health["status"] == "ok" and health["models"][MODEL]["kind"] == "chat"
