"""Aliases (other names for served models), OpenAI's request limits, and per-model capabilities."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from faceplate.access.auth import Authenticator, Principal
from faceplate.app import create_app
from faceplate.config import ConfigError, Settings, load_settings
from faceplate.engines.fake import FakeEngine
from faceplate.engines.fake_embedding import FakeEmbeddingEngine
from faceplate.engines.registry import Registry
from faceplate.service.services import Services
from tests import spec
from tests.api.conftest import API_KEY


@pytest.fixture
def services() -> Services:
    registry = Registry(
        [FakeEngine("fake-model"), FakeEmbeddingEngine("fake-embed")],
        aliases={"gpt-4o-mini": "fake-model", "text-embedding-3-small": "fake-embed"},
    )
    return Services(settings=Settings(api_keys=[API_KEY]), registry=registry, auth=Authenticator([API_KEY]))


async def test_an_alias_answers_with_the_name_asked_for(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.json()["model"] == "gpt-4o-mini"
    r = await api.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hi"})
    assert r.status_code == 200 and r.json()["model"] == "text-embedding-3-small"
    listed = (await api.get("/v1/models")).json()
    spec.validate_model_list(listed)
    assert [m["id"] for m in listed["data"]] == ["fake-model", "fake-embed", "gpt-4o-mini", "text-embedding-3-small"]


async def test_models_carry_their_capabilities(api: httpx.AsyncClient) -> None:
    chat = (await api.get("/v1/models/gpt-4o-mini")).json()
    spec.validate_model(chat)
    assert chat["capabilities"]["tools"] and chat["capabilities"]["max_n"] == 8
    embed = (await api.get("/v1/models/fake-embed")).json()
    assert embed["capabilities"]["embeddings"] and embed["capabilities"]["dimensions"] > 0
    assert (await api.get("/v1/models/nope")).status_code == 404


async def test_a_key_for_a_model_may_use_its_aliases_and_no_other_model(services: Services) -> None:
    class OneModel:
        async def principal_for_hash(self, key_hash: str) -> Principal | None:
            return Principal(key_id="k", name="k", models=frozenset({"fake-model"}))

        async def has_keys(self) -> bool:
            return True

    from faceplate.store.keys import generate_secret

    services.auth = Authenticator([], OneModel(), store_has_keys=True)
    app = create_app(services)
    headers = {"authorization": f"Bearer {generate_secret()}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x", headers=headers) as c:
        ok = await c.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
        assert ok.status_code == 200
        assert (await c.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"})).status_code == 404
        assert [m["id"] for m in (await c.get("/v1/models")).json()["data"]] == ["fake-model", "gpt-4o-mini"]


def test_aliases_come_from_flags_env_and_toml_and_must_name_a_model(tmp_path: Any) -> None:
    assert load_settings(environ={"FACEPLATE_ALIASES": "gpt-4o-mini=smollm2-135m-instruct"}).aliases == {
        "gpt-4o-mini": "smollm2-135m-instruct"
    }
    toml = tmp_path / "f.toml"
    toml.write_text('[aliases]\n"gpt-4o" = "smollm2-135m-instruct"\n')
    assert load_settings(str(toml), environ={}).aliases == {"gpt-4o": "smollm2-135m-instruct"}
    with pytest.raises(ConfigError, match="not a served model"):
        load_settings(environ={}, overrides={"aliases": {"gpt-4o": "missing"}})
    with pytest.raises(ConfigError, match="ALIAS=MODEL"):
        load_settings(environ={"FACEPLATE_ALIASES": "gpt-4o"})


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"seed": 2**63}, "seed"),
        ({"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]}, "tools"),
        ({"logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
            "tools[0].function.parameters",
        ),
    ],
)
async def test_openai_limits_are_400s_naming_the_param(api: httpx.AsyncClient, extra: dict[str, Any], param: str) -> None:
    r = await api.post(
        "/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}], **extra}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == param
