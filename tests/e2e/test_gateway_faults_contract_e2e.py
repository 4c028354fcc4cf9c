"""The contract through the gateway with every mockai flavour (SCALEOUT.md §5, test 7): one gateway
whose five pools are one mock each, named and typed by flavour (vllm, tgi, ollama, llama-server,
sglang). The official SDK reads through ``ValidatingTransport``, so every body, chunk and error is
checked against OpenAI's spec; each flavour's deviations (vLLM's integer error code, TGI's bare
string error, llama.cpp's always-on usage chunk, n refused or ignored, TGI's max_tokens only) must not
show through.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import httpx2
import openai
import pytest

from tests.conformance import ValidatingTransport
from tests.e2e.gateway_faults_helpers import FAST, MSG, configure, gateway, generations, reset, stats, text_of
from tests.serverproc import ServerProcess
from tests.upstreams.launch import MockProcess, run_mockai

FLAVOURS = ("vllm", "tgi", "ollama", "llama-server", "sglang")
FANNED = ("llama-server", "tgi", "ollama")  # n > 1 is refused or ignored: the gateway fans it out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, MockProcess], ServerProcess]]:
    """A mock per flavour and one gateway serving each as the model named after it."""
    log_dir = tmp_path_factory.mktemp("contract")
    with ExitStack() as stack:
        mocks = {f: stack.enter_context(run_mockai(flavour=f, log_dir=log_dir)) for f in FLAVOURS}
        members = [{"id": f, "url": url, "kind": f, **FAST} for f, url in mocks.items()]
        gw = gateway(members, log_dir)
        stack.callback(gw.stop)
        yield mocks, gw


@pytest.fixture
def transport() -> ValidatingTransport:
    return ValidatingTransport()


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest, fleet: Any) -> str:
    reset(fleet[0][request.param])
    return str(request.param)


@pytest.fixture
def mock(fleet: Any, flavour: str) -> MockProcess:
    return fleet[0][flavour]


@pytest.fixture
def client(fleet: Any, transport: ValidatingTransport) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(
        base_url=fleet[1].base_url,
        api_key="x",
        http_client=httpx2.Client(transport=transport, timeout=20),
        max_retries=0,
        _strict_response_validation=True,
    )
    yield c
    c.close()


def test_bodies_and_chunks_are_spec_valid_and_usage_only_when_asked(
    client: openai.OpenAI, transport: ValidatingTransport, flavour: str
) -> None:
    whole = client.chat.completions.create(model=flavour, messages=MSG)
    assert whole.choices[0].message.content == text_of(16) and whole.model == flavour
    assert whole.usage is not None and whole.usage.completion_tokens == 16

    plain = list(client.chat.completions.create(model=flavour, messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices) == text_of(16)
    assert all(c.usage is None and c.choices for c in plain), "a usage chunk nobody asked for"

    usage = list(client.chat.completions.create(model=flavour, messages=MSG, stream=True, stream_options={"include_usage": True}))
    last = usage[-1]
    assert last.choices == [] and last.usage is not None, last
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (whole.usage.prompt_tokens, 16)
    assert all(c.usage is None and c.choices for c in usage[:-1])
    assert transport.responses, "nothing was validated"


def test_upstream_error_is_openai_shaped(fleet: Any, client: openai.OpenAI, flavour: str, mock: MockProcess) -> None:
    configure(mock, status=400, count=1)
    with pytest.raises(openai.BadRequestError) as caught:  # the transport validated the error body too
        client.chat.completions.create(model=flavour, messages=MSG)
    assert caught.value.status_code == 400
    configure(mock, status=400, count=1)
    r = httpx.post(f"{fleet[1].base_url}/chat/completions", json={"model": flavour, "messages": MSG}, timeout=10)
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["code"] is None or isinstance(body["error"]["code"], str), body  # never vLLM's 400
    assert "injected failure" in body["error"]["message"]


def test_n2_gives_two_choices_and_counts_the_prompt_once(client: openai.OpenAI, flavour: str, mock: MockProcess) -> None:
    one = client.chat.completions.create(model=flavour, messages=MSG)
    before = generations(mock)
    two = client.chat.completions.create(model=flavour, messages=MSG, n=2)
    assert sorted(c.index for c in two.choices) == [0, 1]
    assert all(c.message.content == text_of(16) for c in two.choices)
    assert generations(mock) - before == (2 if flavour in FANNED else 1)
    assert two.usage is not None and one.usage is not None
    assert two.usage.prompt_tokens == one.usage.prompt_tokens
    assert two.usage.completion_tokens == 32


def test_max_completion_tokens_reaches_the_upstream_by_its_name(client: openai.OpenAI, flavour: str, mock: MockProcess) -> None:
    r = client.chat.completions.create(model=flavour, messages=MSG, max_completion_tokens=3)
    assert r.choices[0].message.content == text_of(3) and r.choices[0].finish_reason == "length"
    sent = stats(mock)["last_body"]
    limits = {k: v for k, v in sent.items() if k in ("max_tokens", "max_completion_tokens")}
    if flavour == "tgi":  # the probe found it ignores max_completion_tokens: the gateway renames it
        assert limits == {"max_tokens": 3}, sent
    else:  # the others honour the newer name, and the start-up probe finds that out
        assert limits == {"max_completion_tokens": 3}, sent


def test_top_k_passes_where_the_upstream_takes_it(client: openai.OpenAI, flavour: str, mock: MockProcess) -> None:
    if flavour in ("ollama", "tgi"):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=flavour, messages=MSG, extra_body={"top_k": 5})
        assert caught.value.code == "unsupported_parameter" and caught.value.param == "top_k"
        assert generations(mock) == 0  # refused before anything went upstream
    else:
        client.chat.completions.create(model=flavour, messages=MSG, extra_body={"top_k": 5})
        assert stats(mock)["last_body"].get("top_k") == 5


def test_ollama_refuses_a_forced_tool_call(fleet: Any, client: openai.OpenAI) -> None:
    mock = fleet[0]["ollama"]
    reset(mock)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="ollama", messages=MSG, tools=tools, tool_choice="required")  # type: ignore[arg-type]
    assert caught.value.status_code == 400 and caught.value.code == "unsupported_parameter"
    assert generations(mock) == 0
    auto = client.chat.completions.create(model="ollama", messages=MSG, tools=tools, tool_choice="auto")  # type: ignore[arg-type]
    assert auto.choices[0].finish_reason == "stop"  # "auto" it honours (and answers in text)
