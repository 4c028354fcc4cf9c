"""Metrics and JSON logs of a real `faceplate serve` (bundled chat model, `--log-format json`): every
log line is a JSON object, each request has one access line with its fields and no secret or prompt,
and /metrics parses with the Prometheus client's parser, with the llama.cpp engine's own counters."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.keys_helpers import CHAT, chat_only
from tests.serverproc import ServerProcess, start_server

KEY = "sk-e2e-observe-0123456789"
PROMPT = "Tell me about the secret lighthouse 4242."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        [*chat_only(), "--api-key", KEY, "--log-format", "json", "--threads", "1"], log_dir=tmp_path_factory.mktemp("observe")
    )
    yield srv
    srv.stop()


def test_json_access_lines_and_prometheus_metrics(server: ServerProcess, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    stream = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=8,
        stream=True,
        extra_headers={"x-request-id": "req_e2e_1"},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)  # to the end
    assert text
    client.close()
    scrape = httpx2.get(f"{server.root}/metrics", headers={"authorization": f"Bearer {KEY}"}, timeout=10)
    assert scrape.status_code == 200
    assert httpx2.get(f"{server.root}/metrics", timeout=10).status_code == 401
    found = {}
    for family in text_string_to_metric_families(scrape.text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    model = (("model", CHAT),)
    generated = found[("faceplate:generation_tokens_total", model)]
    assert 1 <= generated <= 8 and found[("faceplate:engine_steps_total", model)] >= generated
    assert found[("faceplate:engine_step_seconds_total", model)] > 0
    assert found[("faceplate:num_requests_running", model)] == 0
    assert found[("faceplate:time_to_first_token_seconds_count", model)] == 1

    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(x) for x in server.log().splitlines() if x.strip()]  # every line is JSON
        access = [x for x in lines if x["logger"] == "faceplate.access" and x.get("request_id") == "req_e2e_1"]
        if access or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (line,) = access
    assert line["route"] == "/v1/chat/completions" and line["status"] == 200 and line["model"] == CHAT
    assert line["completion_tokens"] == generated and line["prompt_tokens"] > 0 and line["ttft_ms"] > 0
    assert line["key"].startswith("static:") and line["level"] == "info" and line["time"].endswith("Z")
    assert KEY not in server.log() and "lighthouse 4242" not in server.log()


def test_start_up_says_what_it_loads_and_where_it_serves_once_bound(server: ServerProcess) -> None:
    lines = [json.loads(x) for x in server.log().splitlines() if x.strip()]
    messages = [x["message"] for x in lines]
    loading = [x for x in lines if x["message"].startswith("loading model 1/1 ")]
    assert loading and loading[0]["model"] == CHAT and loading[0]["total"] == 1, messages[:10]
    assert any(m.startswith(f"loaded {CHAT} ") for m in messages)
    bound = next(i for i, m in enumerate(messages) if m.startswith("Uvicorn running on"))
    serving = next(i for i, m in enumerate(messages) if m.startswith("serving "))
    assert serving > bound and f"http://127.0.0.1:{server.port}/v1" in messages[serving]  # said after the bind
    assert f"http://127.0.0.1:{server.port}/ui/" in messages[serving + 1]
