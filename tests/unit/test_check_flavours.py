"""`faceplate check` and the probe against mockai's flavours (tests/upstreams): each documented
deviation is reported as exactly its FAIL rows, and the probe turns it into the flags the gateway
adapts by."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from faceplate.check.checks import run_suite
from faceplate.check.probe import ProbeError, UpstreamProbe, probe
from tests.serverproc import free_port
from tests.upstreams.mockai import MockAI, start_mockai

# The mock keeps a few things simpler than OpenAI in every flavour: it accepts any model name and
# any temperature, and answers {} to every response_format (see tests/upstreams/mock_stream.py).
MOCK_GAPS = {"chat.json_schema", "errors.bad_temperature", "errors.unknown_model"}
DEVIATIONS: dict[str, set[str]] = {
    "openai": set(),
    "sglang": set(),
    "vllm": {"errors.missing_messages"},  # flat {"object": "error", ..., "code": 400}
    # usage on every stream (so also on a chunk before include_usage's last), n>1 refused, integer code
    "llama-server": {"chat.n", "chat.stream.no_usage", "chat.stream.include_usage", "errors.missing_messages"},
    # n>1 refused; 422 with a bare string error; max_completion_tokens ignored (its chat API knows max_tokens)
    "tgi": {"chat.n", "errors.missing_messages", "chat.max_completion_tokens"},
    "ollama": {"chat.n", "chat.tool_choice.required", "chat.tool_choice.named"},  # n ignored, tool_choice ignored
}
REASONS = {
    ("vllm", "errors.missing_messages"): 'a flat {"object": "error"',
    ("llama-server", "errors.missing_messages"): "error.code is the integer 400",
    ("llama-server", "chat.n"): "n=2 refused: HTTP 400",
    ("llama-server", "chat.stream.no_usage"): "usage sent without stream_options.include_usage",
    ("tgi", "errors.missing_messages"): '"error" is a bare string',
    ("tgi", "chat.n"): "n=2 refused: HTTP 422",
    ("ollama", "chat.n"): "n=2 ignored: one choice",
    ("ollama", "chat.tool_choice.required"): 'tool_choice "required" gave no tool call',
}


@pytest.fixture(params=sorted(DEVIATIONS))
async def mock(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, MockAI]]:
    server = await start_mockai(flavour=request.param)
    yield request.param, server
    await server.close()


async def test_check_reports_exactly_the_flavours_breaks(mock: tuple[str, MockAI]) -> None:
    flavour, server = mock
    embeddings = None if flavour == "tgi" else "mock-model"  # TGI serves no /v1/embeddings
    results = await run_suite(server.url, embedding_model=embeddings, timeout=10)
    failed = {r.name for r in results if r.status == "fail"}
    assert failed == MOCK_GAPS | DEVIATIONS[flavour], [(r.name, r.reason) for r in results if r.status == "fail"]
    for r in results:
        if (flavour, r.name) in REASONS:
            assert REASONS[flavour, r.name] in r.reason
        if r.status == "fail":
            assert r.evidence and r.evidence.startswith("sent ")
    skipped = {r.name: r.reason for r in results if r.status == "skip"}
    assert set(skipped) >= {"auth.missing_key", "auth.invalid_key"} and "no --key" in skipped["auth.missing_key"]
    assert set(skipped) - {"auth.missing_key", "auth.invalid_key"} == (
        {"embeddings.float", "embeddings.base64"} if flavour == "tgi" else set()
    )


def _expected(flavour: str) -> dict[str, object]:
    refuses_n = flavour in ("llama-server", "tgi", "ollama")
    return {
        "models": ("mock-model",),
        "model": "mock-model",
        "chat": True,
        "completions": True,
        "embeddings": flavour != "tgi",
        "max_n": 1 if refuses_n else 128,
        "usage_always": flavour == "llama-server",
        "stream_usage": True,
        "logprobs": True,
        "tool_choice_forced": flavour != "ollama",
        "tools": True,
        "json_schema": False,  # the mock's {} (MOCK_GAPS)
        "max_completion_tokens": flavour != "tgi",
        "error_shape_ok": flavour not in ("vllm", "llama-server", "tgi"),
    }


async def test_probe_flags(mock: tuple[str, MockAI]) -> None:
    flavour, server = mock
    async with aiohttp.ClientSession() as session:
        found = await probe(session, server.base_url + "/", timeout=10)
    assert isinstance(found, UpstreamProbe)
    got = {k: getattr(found, k) for k in _expected(flavour)}
    assert got == _expected(flavour)
    assert (found.embedding_dimensions or 0) > 0 if found.embeddings else found.embedding_dimensions is None


async def test_probe_unreachable_is_a_probe_error() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProbeError, match="cannot reach http://127.0.0.1:.*/v1"):
            await probe(session, f"http://127.0.0.1:{free_port()}", timeout=5)


def test_probe_fields_are_the_published_ones() -> None:
    from dataclasses import fields

    assert [f.name for f in fields(UpstreamProbe)] == [
        "models",
        "model",
        "chat",
        "completions",
        "embeddings",
        "embedding_dimensions",
        "max_n",
        "usage_always",
        "stream_usage",
        "logprobs",
        "tool_choice_forced",
        "tools",
        "json_schema",
        "max_completion_tokens",
        "error_shape_ok",
    ]
