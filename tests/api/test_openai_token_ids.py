"""Token-array embedding inputs mean OpenAI's cl100k_base ids by default (what LangChain's OpenAIEmbeddings sends)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest

from faceplate.access.auth import Authenticator
from faceplate.config import ModelSpec, Settings
from faceplate.engines.fake_embedding import FakeEmbeddingEngine
from faceplate.engines.openai_tokens import decode
from faceplate.engines.registry import Registry
from faceplate.errors import InvalidRequest
from faceplate.service.services import Services
from tests.api.conftest import API_KEY

TEXT = "Hello world, héllo 日本"
CL100K = [9906, 1917, 11, 305, 19010, 385, 76502, 22656]  # tiktoken's cl100k_base encoding of TEXT


@pytest.fixture
async def emb() -> AsyncIterator[FakeEmbeddingEngine]:
    engine = FakeEmbeddingEngine("fake-embed", dimensions=16, max_input_tokens=64)
    yield engine
    await engine.close()


@pytest.fixture
def services(emb: FakeEmbeddingEngine) -> Services:
    registry = Registry([emb], aliases={"text-embedding-3-small": "fake-embed"})
    return Services(settings=Settings(api_keys=[API_KEY]), registry=registry, auth=Authenticator([API_KEY]))


def test_cl100k_ids_decode_offline() -> None:
    assert decode(CL100K, 0) == TEXT
    with pytest.raises(InvalidRequest) as bad:
        decode([9906, 100_300], 3)
    assert bad.value.param == "input" and "100300" in bad.value.message and "input[3]" in bad.value.message


def test_the_default_is_openai_ids_and_operators_may_declare_the_models_own() -> None:
    assert ModelSpec(id="m", path="/x").token_ids == "openai"
    assert ModelSpec(id="m", path="/x", token_ids="model").token_ids == "model"


async def test_token_arrays_embed_the_text_they_encode(api: httpx.AsyncClient) -> None:
    async def vector(model: str, value: object) -> np.ndarray:
        r = await api.post("/v1/embeddings", json={"model": model, "input": value})
        assert r.status_code == 200, r.text
        return np.array(r.json()["data"][0]["embedding"])

    text = await vector("text-embedding-3-small", TEXT)
    assert np.array_equal(await vector("text-embedding-3-small", CL100K), text)
    assert np.array_equal(await vector("fake-embed", [CL100K]), text)
    r = await api.post("/v1/embeddings", json={"model": "fake-embed", "input": [[1, 2], [100_300]]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
