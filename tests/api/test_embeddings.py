"""POST /v1/embeddings in-process, over the deterministic fake embedding engine (real batcher)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from faceplate.access.auth import Authenticator
from faceplate.config import Settings
from faceplate.engines.fake import FakeEngine
from faceplate.engines.fake_embedding import FakeEmbeddingEngine
from faceplate.engines.registry import Registry
from faceplate.service.services import Services
from tests import spec
from tests.api.conftest import API_KEY

MODEL = "fake-embedding"
DIMS = 32


@pytest.fixture
async def emb() -> AsyncIterator[FakeEmbeddingEngine]:
    # These tests send ids of the model's own vocabulary (its operator declared token_ids = "model");
    # the default, OpenAI's cl100k_base ids, is tested in test_openai_token_ids.py.
    engine = FakeEmbeddingEngine(MODEL, dimensions=DIMS, max_input_tokens=64, token_ids="model")
    yield engine
    await engine.close()


@pytest.fixture
def services(engine: FakeEngine, emb: FakeEmbeddingEngine) -> Services:
    return Services(settings=Settings(api_keys=[API_KEY]), registry=Registry([engine, emb]), auth=Authenticator([API_KEY]))


async def embed(api: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await api.post("/v1/embeddings", json={"model": MODEL, **body})


def vectors(body: dict[str, Any]) -> np.ndarray:
    rows = []
    for i, item in enumerate(body["data"]):
        assert item["object"] == "embedding" and item["index"] == i
        e = item["embedding"]
        rows.append(np.frombuffer(base64.b64decode(e), dtype="<f4") if isinstance(e, str) else np.asarray(e, dtype=np.float32))
    return np.stack(rows)


async def ok(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await embed(api, **body)
    assert r.status_code == 200, r.text
    data = r.json()
    spec.validate_embeddings(data)
    spec.validate_embeddings(data, "strict")
    assert data["object"] == "list" and data["model"] == MODEL
    return data


async def bad(api: httpx.AsyncClient, param: str | None, status: int = 400, **body: Any) -> dict[str, Any]:
    r = await embed(api, **body)
    assert r.status_code == status, r.text
    err = r.json()
    spec.validate_error(err)
    spec.validate_error(err, "strict")
    assert err["error"]["type"] == "invalid_request_error"
    assert err["error"]["param"] == param
    return err["error"]


# ---------------------------------------------------------------- shapes and encodings


async def test_single_string(api: httpx.AsyncClient) -> None:
    data = await ok(api, input="hello")
    assert len(data["data"]) == 1 and len(data["data"][0]["embedding"]) == DIMS
    assert data["usage"] == {"prompt_tokens": 7, "total_tokens": 7}  # 5 bytes + start + end markers
    v = vectors(data)[0]
    assert abs(np.linalg.norm(v) - 1) < 1e-5


async def test_array_of_strings_keeps_order_and_counts_every_token(api: httpx.AsyncClient) -> None:
    texts = ["a", "a much longer text than the others", "mid length"]
    data = await ok(api, input=texts)
    assert [d["index"] for d in data["data"]] == [0, 1, 2]
    assert data["usage"]["prompt_tokens"] == sum(len(t.encode()) + 2 for t in texts)
    each = np.stack([vectors(await ok(api, input=t))[0] for t in texts])
    np.testing.assert_allclose(vectors(data), each, atol=1e-6)


async def test_base64_equals_float(api: httpx.AsyncClient) -> None:
    texts = ["the quick brown fox", "héllo wörld 🙂"]
    floats = await ok(api, input=texts, encoding_format="float")
    b64 = await ok(api, input=texts, encoding_format="base64")
    assert all(isinstance(d["embedding"], list) for d in floats["data"])
    assert all(isinstance(d["embedding"], str) for d in b64["data"])
    assert np.array_equal(vectors(floats), vectors(b64))  # bit for bit
    assert floats["usage"] == b64["usage"]


async def test_default_encoding_is_float(api: httpx.AsyncClient) -> None:
    data = await ok(api, input="x")
    assert isinstance(data["data"][0]["embedding"], list)


async def test_token_arrays_equal_their_text(api: httpx.AsyncClient) -> None:
    text = "tokens"
    from_text = vectors(await ok(api, input=text))
    one = await ok(api, input=list(text.encode()))
    many = await ok(api, input=[list(text.encode()), list(b"other")])
    np.testing.assert_array_equal(vectors(one), from_text)
    np.testing.assert_array_equal(vectors(many)[:1], from_text)
    assert one["usage"]["prompt_tokens"] == len(text) + 2


async def test_user_and_unknown_fields_are_accepted(api: httpx.AsyncClient) -> None:
    await ok(api, input="x", user="user-123", some_future_field=True)


async def test_dimensions_truncates_and_renormalises(api: httpx.AsyncClient) -> None:
    full = vectors(await ok(api, input=["alpha", "beta"]))
    for dims in (1, 8, DIMS):
        short = vectors(await ok(api, input=["alpha", "beta"], dimensions=dims, encoding_format="base64"))
        assert short.shape == (2, dims)
        np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-6)
        expected = full[:, :dims] / np.linalg.norm(full[:, :dims], axis=1, keepdims=True)
        np.testing.assert_allclose(short, expected, atol=1e-6)


async def test_concurrent_requests_share_batches_and_get_their_own_vectors(
    api: httpx.AsyncClient, emb: FakeEmbeddingEngine
) -> None:
    texts = [f"text number {i}" for i in range(12)]
    alone = [vectors(await ok(api, input=t))[0] for t in texts]
    emb.batch_sizes.clear()
    emb.batcher.wait_s = 0.05
    together = await asyncio.gather(*(ok(api, input=t) for t in texts))
    for got, want in zip(together, alone, strict=True):
        np.testing.assert_array_equal(vectors(got)[0], want)
    assert max(emb.batch_sizes) > 1  # at least some requests shared a forward pass


# ---------------------------------------------------------------- every bad input is a 400 on "input"

BAD_INPUTS: list[tuple[str, Any]] = [
    ("empty string", ""),
    ("empty array", []),
    ("empty string in array", ["ok", ""]),
    ("empty token array", [[1, 2], []]),
    ("number", 5),
    ("object", {"text": "hi"}),
    ("null", None),
    ("boolean", True),
    ("mixed strings and ids", ["a", 1]),
    ("mixed ids and strings", [1, "a"]),
    ("mixed arrays and strings", [[1], "a"]),
    ("floats", [1.5, 2.0]),
    ("booleans as ids", [True, False]),
    ("nested too deep", [[[1]]]),
    ("negative id", [1, -1]),
    ("too many inputs", ["x"] * 2049),
    ("too many token arrays", [[1]] * 2049),
    ("token id out of vocabulary", [104, 300]),
    ("token id out of vocabulary in arrays", [[104], [5, 256]]),
    ("too long text", "x" * 63),
    ("too long token array", [[120] * 63]),
    ("one too long among many", ["fine", "y" * 100]),
]


@pytest.mark.parametrize(("why", "value"), BAD_INPUTS, ids=[w for w, _ in BAD_INPUTS])
async def test_bad_input_is_400_on_input(api: httpx.AsyncClient, emb: FakeEmbeddingEngine, why: str, value: Any) -> None:
    runs = len(emb.batch_sizes)
    err = await bad(api, "input", input=value)
    assert err["message"]
    assert len(emb.batch_sizes) == runs  # rejected before the model


async def test_longest_accepted_input(api: httpx.AsyncClient) -> None:
    assert (await ok(api, input="x" * 62))["usage"]["prompt_tokens"] == 64
    err = await bad(api, "input", input="x" * 63)
    assert err["code"] == "context_length_exceeded" and "64" in err["message"]


async def test_out_of_vocabulary_message_names_the_token(api: httpx.AsyncClient) -> None:
    err = await bad(api, "input", input=[[1], [7, 999]])
    assert "999" in err["message"] and "input 1" in err["message"]


async def test_missing_input(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/embeddings", json={"model": MODEL})
    assert r.status_code == 400
    spec.validate_error(r.json())
    assert r.json()["error"]["param"] == "input"


async def test_missing_model(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/embeddings", json={"input": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


@pytest.mark.parametrize("fmt", ["binary", "", 1, "FLOAT"])
async def test_bad_encoding_format(api: httpx.AsyncClient, fmt: Any) -> None:
    await bad(api, "encoding_format", input="x", encoding_format=fmt)


@pytest.mark.parametrize("dims", [0, -3, DIMS + 1, 10_000, 1.5, "8", True])
async def test_bad_dimensions(api: httpx.AsyncClient, dims: Any) -> None:
    await bad(api, "dimensions", input="x", dimensions=dims)


async def test_dimensions_on_a_model_that_does_not_support_it(api: httpx.AsyncClient, emb: FakeEmbeddingEngine) -> None:
    emb.supports_dimensions = False
    err = await bad(api, "dimensions", input="x", dimensions=8)
    assert "does not support" in err["message"]
    await ok(api, input="x")


async def test_body_must_be_json_object(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/embeddings", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 400
    spec.validate_error(r.json())
    r = await api.post("/v1/embeddings", content=b'{"model": "fake-embedding", "input": NaN}')
    assert r.status_code == 400


# ---------------------------------------------------------------- models, auth, failures


async def test_chat_model_cannot_embed(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/embeddings", json={"model": "fake-model", "input": "x"})
    assert r.status_code == 400
    err = r.json()
    spec.validate_error(err)
    assert err["error"]["param"] == "model" and err["error"]["code"] == "model_not_supported"
    assert "does not support embeddings" in err["error"]["message"]


async def test_embedding_model_cannot_chat(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    err = r.json()
    spec.validate_error(err)
    assert err["error"]["param"] == "model" and err["error"]["code"] == "model_not_supported"
    assert "/v1/embeddings" in err["error"]["message"]


async def test_unknown_model_is_404(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert r.status_code == 404
    spec.validate_error(r.json())
    assert r.json()["error"]["code"] == "model_not_found"


async def test_needs_a_key(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/embeddings", json={"model": MODEL, "input": "x"}, headers={"authorization": ""})
    assert r.status_code == 401
    spec.validate_error(r.json())


async def test_engine_failure_is_500_and_the_next_request_works(api: httpx.AsyncClient, emb: FakeEmbeddingEngine) -> None:
    emb.fail_batches = 1
    r = await embed(api, input="x")
    assert r.status_code == 500
    spec.validate_error(r.json())
    assert r.json()["error"]["type"] == "server_error"
    await ok(api, input="x")


async def test_full_queue_is_503(api: httpx.AsyncClient, emb: FakeEmbeddingEngine) -> None:
    emb.batcher.max_requests = 1
    emb.delay_s = 0.3
    first = asyncio.ensure_future(embed(api, input="slow"))
    await asyncio.sleep(0.1)
    r = await embed(api, input="x")
    assert r.status_code == 503 and "retry-after" in r.headers
    spec.validate_error(r.json())
    assert (await first).status_code == 200


async def test_large_request(api: httpx.AsyncClient) -> None:
    texts = [f"input {i}" for i in range(2048)]
    data = await ok(api, input=texts, encoding_format="base64")
    assert len(data["data"]) == 2048
    assert data["usage"]["prompt_tokens"] == sum(len(t) + 2 for t in texts)


async def test_embedding_model_is_listed(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/models")
    assert MODEL in [m["id"] for m in r.json()["data"]]
