"""Metrics and access logs in process (fake engine): /metrics parses with the Prometheus client's own
parser, needs a key unless metrics_public, and its counters move with traffic; each request has one
access-log line with its id, route, status, key, model, tokens and TTFT, and never a secret or prompt."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from faceplate.access.auth import Authenticator, Principal
from faceplate.access.limits import Lease
from faceplate.app import create_app
from faceplate.config import Settings
from faceplate.engines.fake import FakeEngine
from faceplate.engines.registry import Registry
from faceplate.errors import RateLimited
from faceplate.logs import JsonFormatter
from faceplate.service.services import Services
from tests.api.conftest import API_KEY, client_for

CHAT = "/v1/chat/completions"
SECRET_PROMPT = "my secret prompt 31337"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_need_a_key_and_move_with_traffic(api: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(transport=api._transport, base_url="http://test") as anon:  # type: ignore[attr-defined]
        assert (await anon.get("/metrics")).status_code == 401
    r = await api.post(CHAT, json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert r.status_code == 200
    await api.get("/v1/models/no-such-model")  # a 404 on a templated route
    scrape = await api.get("/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    found = samples(scrape.text)
    model = {"model": "fake-model"}
    assert value(found, "faceplate:requests_total", endpoint=CHAT, model="fake-model", status="200") == 1
    assert value(found, "faceplate:http_requests_total", method="POST", route=CHAT, status="200") == 1
    assert value(found, "faceplate:http_requests_total", method="GET", route="/v1/models/{model:path}", status="404") == 1
    assert value(found, "faceplate:prompt_tokens_total", **model) > 0
    assert value(found, "faceplate:generation_tokens_total", **model) > 0
    assert value(found, "faceplate:time_to_first_token_seconds_count", **model) == 1
    assert value(found, "faceplate:inter_token_latency_seconds_count", **model) > 0
    assert value(found, "faceplate:e2e_request_latency_seconds_count", **model) == 1
    assert not [k for k in found if k[0].startswith("faceplate:http_requests") and ("route", "/metrics") in k[1]]


class Refusing:
    async def admit(self, principal: Principal, tokens: int) -> Lease:
        raise RateLimited("Rate limit reached for requests.", limit_type="requests", retry_after_s=1)


async def test_metrics_count_rate_limited_calls_and_can_be_public(engine: FakeEngine) -> None:
    svc = Services(
        settings=Settings(api_keys=[API_KEY], metrics_public=True),
        registry=Registry([engine]),
        auth=Authenticator([API_KEY]),
        limiter=Refusing(),
    )
    async with client_for(svc) as api:
        r = await api.post(CHAT, json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 429
        app = create_app(svc)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as anon:
            scrape = await anon.get("/metrics")
    assert scrape.status_code == 200
    found = samples(scrape.text)
    assert value(found, "faceplate:rate_limited_requests_total", type="requests") == 1
    assert value(found, "faceplate:requests_total", endpoint=CHAT, model="fake-model", status="429") == 1


async def test_one_access_line_per_request_with_its_fields_and_no_secret(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="faceplate.access")
    body = {"model": "fake-model", "messages": [{"role": "user", "content": SECRET_PROMPT}], "stream": True}
    r = await api.post(CHAT, json=body, headers={"x-request-id": "req_mine"})
    assert r.status_code == 200
    lines = [rec for rec in caplog.records if rec.name == "faceplate.access"]
    assert len(lines) == 1
    fields: dict[str, Any] = lines[0].fields  # type: ignore[attr-defined]
    assert fields["request_id"] == "req_mine" and fields["route"] == CHAT and fields["status"] == 200
    assert fields["model"] == "fake-model" and fields["key"].startswith("static:")
    assert fields["prompt_tokens"] > 0 and fields["completion_tokens"] > 0 and fields["ttft_ms"] >= 0
    assert fields["latency_ms"] >= fields["ttft_ms"]
    line = json.loads(JsonFormatter().format(lines[0]))
    assert line["level"] == "info" and line["logger"] == "faceplate.access" and line["request_id"] == "req_mine"
    dumped = json.dumps(line)
    assert API_KEY not in dumped and SECRET_PROMPT not in dumped
