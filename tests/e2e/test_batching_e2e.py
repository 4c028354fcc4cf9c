"""Continuous batching, seen from outside: concurrency, determinism, cancellation, backpressure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from faceplate.config import bundled_chat_model_path
from tests.e2e.conftest import E2E_KEY
from tests.serverproc import ServerProcess, start_server

MODEL = "smollm2-135m-instruct"
# SmolLM2's end-of-generation tokens banned: the answer runs until it is cut off.
NO_END = {"0": -100, "2": -100, "4": -100}
TOPICS = ["the sea", "a mountain", "a city at night", "an old dog", "the moon", "a river", "a forest", "a library"]


def _ask(client: openai.OpenAI, topic: str, *, stream: bool, max_tokens: int = 48) -> tuple[str, str | None, int]:
    kw: dict[str, Any] = dict(
        model=MODEL,
        messages=[{"role": "user", "content": f"Write a poem about {topic}."}],
        max_tokens=max_tokens,
        seed=11,
        temperature=0.9,
    )
    if not stream:
        r = client.chat.completions.create(**kw)
        return r.choices[0].message.content or "", r.choices[0].finish_reason, r.usage.completion_tokens  # type: ignore[union-attr]
    text, finish, tokens = "", None, 0
    for c in client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}):
        if c.choices:
            text += c.choices[0].delta.content or ""
            finish = c.choices[0].finish_reason or finish
        if c.usage:
            tokens = c.usage.completion_tokens
    return text, finish, tokens


def _health(server: ServerProcess) -> dict[str, Any]:
    # Engine counters are for callers with a key; without one /health says only whether it is up.
    r = httpx.get(f"{server.root}/health", headers={"authorization": f"Bearer {E2E_KEY}"}, timeout=10)
    return r.json()["models"][MODEL]  # type: ignore[no-any-return]


def _wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_eight_concurrent_streams_equal_their_solo_answers(client: openai.OpenAI) -> None:
    alone = [_ask(client, t, stream=False) for t in TOPICS[:2]]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda t: _ask(client, t, stream=True), TOPICS))
    for text, finish, tokens in together:
        assert text and finish in ("stop", "length")
        assert finish == "stop" or tokens == 48  # a length stop is a full-length answer
    # Same seed and input: the batched answer is the answer the request gets alone.
    assert [t[0] for t in together[:2]] == [a[0] for a in alone]


def test_n4_streamed_and_not(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a fruit."}], n=4, max_tokens=10, seed=3
    )
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    texts = ["", "", "", ""]
    for c in client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a fruit."}], n=4, max_tokens=10, seed=3, stream=True
    ):
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
    assert texts == [c.message.content for c in r.choices]


def test_hang_up_mid_stream_frees_the_sequence(client: openai.OpenAI, server: ServerProcess) -> None:
    before = _health(server)
    with (
        httpx.Client(timeout=60) as raw,
        raw.stream(
            "POST",
            f"{server.base_url}/chat/completions",
            headers={"authorization": f"Bearer {E2E_KEY}"},
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": "Tell me a very long story."}],
                "max_tokens": 4000,
                "logit_bias": NO_END,
                "stream": True,
            },
        ) as resp,
    ):
        lines: Iterator[str] = resp.iter_lines()
        got = [next(lines) for _ in range(6)]
        assert any(line.startswith("data:") for line in got)
        assert _health(server)["running_sequences"] >= 1
    # The connection is closed: the scheduler must notice and free the slot within a step.
    assert _wait_for(lambda: _health(server)["running_sequences"] == 0)
    after = _health(server)
    assert after["cancelled"] >= before["cancelled"] + 1
    assert after["generated_tokens"] - before["generated_tokens"] < 4000


def test_hang_up_while_waiting_for_a_non_streamed_answer(server: ServerProcess) -> None:
    before = _health(server)
    with httpx.Client(timeout=0.5) as raw, pytest.raises(httpx.ReadTimeout):
        raw.post(
            f"{server.base_url}/chat/completions",
            headers={"authorization": f"Bearer {E2E_KEY}"},
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": "Tell me a very long story."}],
                "max_tokens": 4000,
                "logit_bias": NO_END,
            },
        )
    assert _wait_for(lambda: _health(server)["cancelled"] >= before["cancelled"] + 1)
    assert _wait_for(lambda: _health(server)["running_sequences"] == 0)


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One slot and a queue of one: the third concurrent request must be refused at once."""
    srv = start_server(
        ["--model", f"{MODEL}={bundled_chat_model_path()}", "--n-parallel", "1", "--max-queue", "1"],
        log_dir=tmp_path_factory.mktemp("tiny"),
    )
    yield srv
    srv.stop()


def test_queue_overflow_is_503_with_retry_after(tiny_server: ServerProcess, tmp_path: Path) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 40}
    statuses: list[int] = []
    errors: list[httpx.Response] = []
    lock = threading.Lock()

    def post() -> None:
        with httpx.Client(timeout=600) as c:
            r = c.post(f"{tiny_server.base_url}/chat/completions", json=body)
        with lock:
            statuses.append(r.status_code)
            if r.status_code != 200:
                errors.append(r)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.2)
    for t in threads:
        t.join()
    assert statuses.count(200) >= 2 and 503 in statuses
    err = errors[0]
    assert err.json()["error"]["code"] == "server_overloaded" and int(err.headers["retry-after"]) >= 1
    # The SDK treats 503 as retryable and honours retry-after: with retries it gets through.
    sdk = openai.OpenAI(base_url=tiny_server.base_url, api_key="x", max_retries=5)
    with sdk:
        r = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    assert r.choices[0].message.content is not None


def test_long_shared_prefix_survives_an_unrelated_request(client: openai.OpenAI, server: ServerProcess) -> None:
    system = "You are a careful assistant for a bakery. " + " ".join(f"Rule {i}: be kind to customer {i}." for i in range(60))
    ask = lambda q: client.chat.completions.create(  # noqa: E731
        model=MODEL, messages=[{"role": "system", "content": system}, {"role": "user", "content": q}], max_tokens=2, temperature=0
    )
    first = ask("When do you open?")
    prompt_tokens = first.usage.prompt_tokens  # type: ignore[union-attr]
    assert prompt_tokens > 500
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Unrelated question."}], max_tokens=2)
    before = _health(server)["prompt_tokens_reused"]
    ask("Do you sell bread?")
    reused = _health(server)["prompt_tokens_reused"] - before
    assert reused > prompt_tokens - 20  # the system prompt was not recomputed
