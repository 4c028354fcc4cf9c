"""A gateway in front of llama.cpp's own ``llama-server`` (built from the same llama.cpp sources),
serving the bundled model: the official SDK sees OpenAI's contract where llama-server alone breaks it.

This llama-server puts its ``timings`` on stream chunks and answers errors with an integer ``code``
and a type of its own (``exceed_context_size_error``); older ones also sent usage unasked and
refused ``n > 1``. Through the gateway: OpenAI's chunks, the usage chunk only when asked (as the
final ``choices: []`` chunk), ``n`` honoured (fanned out where refused) with the prompt counted
once, OpenAI's error envelope, and a client that leaves frees its slot.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import httpx2
import openai
import pytest

from tests.conformance import ValidatingTransport
from tests.gateway import pool_stats, start_gateway
from tests.llama_server import start_llama_server
from tests.serverproc import ServerProcess

MODEL = "smollm2-llama-server"
ASK = [{"role": "user", "content": "Name three colours."}]
NO_END = {"0": -100, "2": -100}  # SmolLM2's end-of-turn tokens: an answer runs to its max_tokens


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_llama_server(tmp_path_factory.mktemp("llama"), alias=MODEL, n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def gateway(llama: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    gw = start_gateway([{"id": MODEL, "url": llama.root}], log_dir=tmp_path_factory.mktemp("gw"))  # kind probed
    yield gw
    gw.stop()


@pytest.fixture
def transport() -> ValidatingTransport:
    return ValidatingTransport()


@pytest.fixture
def client(gateway: ServerProcess, transport: ValidatingTransport) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway.base_url,
        api_key="unused",
        http_client=httpx2.Client(transport=transport, timeout=120),
        max_retries=0,
        _strict_response_validation=True,
    ) as c:
        yield c


def _busy_slots(llama: ServerProcess) -> int:
    return sum(1 for s in httpx.get(f"{llama.root}/slots", timeout=5).json() if s["is_processing"])


def _wait_idle(llama: ServerProcess, within: float) -> float:
    started = time.monotonic()
    while _busy_slots(llama):
        assert time.monotonic() - started < within, "llama-server still generating for a client that left"
        time.sleep(0.05)
    return time.monotonic() - started


def test_the_kind_is_detected(gateway: ServerProcess, llama: ServerProcess) -> None:
    (member,) = pool_stats(gateway, MODEL)["upstreams"]
    assert (member["url"], member["kind"], member["model"], member["healthy"]) == (llama.root, "llama-server", MODEL, True)


def test_no_usage_chunk_unless_asked(client: openai.OpenAI, transport: ValidatingTransport, llama: ServerProcess) -> None:
    direct = httpx.post(
        f"{llama.base_url}/chat/completions", json={"model": MODEL, "messages": ASK, "max_tokens": 4, "stream": True}
    )
    assert '"timings"' in direct.text  # llama-server's own field, which the gateway must not pass on
    chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, stream=True))
    assert chunks and all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert all("usage" not in raw and "timings" not in raw for raw in transport.responses)


def test_usage_chunk_when_asked_is_the_last(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=ASK, max_tokens=6, stream=True, stream_options={"include_usage": True}
        )
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens == 6
    assert all(c.usage is None for c in chunks[:-1])
    assert last.model == MODEL and len({c.id for c in chunks}) == 1 and last.id.startswith("chatcmpl-")


def test_n_is_fanned_out_with_the_prompt_counted_once(client: openai.OpenAI) -> None:
    one = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5)
    two = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5, n=2)
    assert [c.index for c in two.choices] == [0, 1]
    assert all(c.message.content for c in two.choices)
    assert one.usage and two.usage and two.usage.prompt_tokens == one.usage.prompt_tokens
    assert two.usage.completion_tokens == 10


def test_max_completion_tokens_is_honoured(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=3)
    assert r.choices[0].finish_reason == "length" and r.usage and r.usage.completion_tokens == 3


def test_a_context_overflow_is_openais_error(client: openai.OpenAI, llama: ServerProcess) -> None:
    too_long = [{"role": "user", "content": "word " * 9000}]
    direct = httpx.post(f"{llama.base_url}/chat/completions", json={"model": MODEL, "messages": too_long, "max_tokens": 3})
    assert direct.status_code == 400 and isinstance(direct.json()["error"]["code"], int)  # llama-server's own shape
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=too_long, max_tokens=3)
    assert info.value.code == "context_length_exceeded" and info.value.type == "invalid_request_error"
    assert info.value.body == {**info.value.body, "param": "messages"}  # type: ignore[dict-item]


def test_legacy_completion_logprobs(client: openai.OpenAI) -> None:
    r = openai.OpenAI(base_url=client.base_url, api_key="unused", max_retries=0).completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=3, logprobs=2, temperature=0
    )
    lp = r.choices[0].logprobs
    assert lp and len(lp.tokens or []) == 3 and "".join(lp.tokens or []) == r.choices[0].text
    assert all(len(t) == 2 for t in lp.top_logprobs or [])


def test_leaving_mid_stream_frees_the_slot(gateway: ServerProcess, llama: ServerProcess) -> None:
    body = {"model": MODEL, "messages": ASK, "max_tokens": 2000, "stream": True, "logit_bias": NO_END}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, timeout=60) as resp:
        lines = resp.iter_lines()
        for _ in range(12):
            next(lines)
        assert _busy_slots(llama) == 1
    assert _wait_idle(llama, within=2.0) < 2.0
    assert pool_stats(gateway, MODEL)["upstreams"][0]["inflight"] == 0


def test_leaving_a_non_streamed_request_frees_the_slot(gateway: ServerProcess, llama: ServerProcess) -> None:
    body = {"model": MODEL, "messages": ASK, "max_tokens": 2000, "logit_bias": NO_END}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=1.0)
    assert _wait_idle(llama, within=2.0) < 2.0
    assert pool_stats(gateway, MODEL)["upstreams"][0]["inflight"] == 0


def _check(url: str) -> dict[str, str]:
    """``faceplate check URL --json`` (the published CLI): check name -> pass, fail or skip."""
    run = subprocess.run([sys.executable, "-m", "faceplate", "check", url, "--json"], capture_output=True, text=True, timeout=180)
    assert run.returncode in (0, 1), run.stderr
    return {r["name"]: r["status"] for r in json.loads(run.stdout)["results"]}


def test_faceplate_check_finds_llama_servers_breaks_and_none_through_the_gateway(
    gateway: ServerProcess, llama: ServerProcess
) -> None:
    direct, through = _check(llama.root), _check(gateway.root)
    broken = {name for name, status in direct.items() if status == "fail"}
    # What this llama-server gets wrong about the contract's shape: integer error codes, no 404 for an
    # unknown model, no 400 for temperature 5, bodies without `refusal`/`logprobs`, chatcmpl- ids on completions.
    assert {"errors.missing_messages", "errors.unknown_model", "errors.bad_temperature", "chat.schema"} <= broken, direct
    assert {name for name, status in through.items() if status == "fail"} <= {
        "chat.tool_choice.required",  # refused with 400 unsupported_parameter: llama-server would not force the call
        "chat.tool_choice.named",
    }, through
    assert all(through[name] == "pass" for name in broken if not name.startswith("chat.tool_choice")), through
