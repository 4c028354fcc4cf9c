"""The compatibility policy: lenient by default, strict (exactly OpenAI's answers) by setting or per request."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from faceplate.access.auth import Authenticator
from faceplate.app import create_app
from faceplate.config import Settings
from faceplate.engines.fake import FakeEngine
from faceplate.engines.registry import Registry
from faceplate.service.services import Services
from tests import spec
from tests.api.conftest import API_KEY

STRICT = {"x-faceplate-compat": "strict"}


def chat(**kw: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": "Describe a cat."}], "max_tokens": 4, **kw}


@pytest.mark.parametrize(
    "extra",
    [
        {"frobnicate": 1},
        {"top_k": 40},
        {"min_p": 0.05},
        {"repetition_penalty": 1.1},
        {"response_format": {"type": "json_object"}},
    ],
)
async def test_lenient_accepts_what_strict_refuses(api: httpx.AsyncClient, extra: dict[str, Any]) -> None:
    assert (await api.post("/v1/chat/completions", json=chat(**extra))).status_code == 200
    r = await api.post("/v1/chat/completions", json=chat(**extra), headers=STRICT)
    assert r.status_code == 400
    spec.validate_error(r.json())
    if "response_format" in extra:  # OpenAI's own rule: json_object needs the word "JSON" in the messages
        assert r.json()["error"]["param"] == "messages"
    else:
        assert r.json()["error"]["message"] == f"Unrecognized request argument supplied: {next(iter(extra))}"


async def test_strict_as_a_server_setting_and_the_header_overrides_it() -> None:
    svc = Services(
        settings=Settings(api_keys=[API_KEY], compat="strict"), registry=Registry([FakeEngine()]), auth=Authenticator([API_KEY])
    )
    transport = httpx.ASGITransport(app=create_app(svc))
    async with httpx.AsyncClient(transport=transport, base_url="http://x", headers={"authorization": f"Bearer {API_KEY}"}) as c:
        assert (await c.post("/v1/chat/completions", json=chat(frobnicate=1))).status_code == 400
        r = await c.post("/v1/chat/completions", json=chat(frobnicate=1), headers={"x-faceplate-compat": "lenient"})
        assert r.status_code == 200
        r = await c.post("/v1/embeddings", json={"model": "fake-model", "input": "x", "nope": True})
        assert r.status_code == 400 and "nope" in r.json()["error"]["message"]
        r = await c.post("/v1/chat/completions", json=chat(), headers={"x-faceplate-compat": "loose"})
        assert r.status_code == 400 and "x-faceplate-compat" in r.json()["error"]["message"]
