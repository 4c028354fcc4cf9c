"""Embeddings end to end: the real server with the bundled models, the official SDK (validating every body)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import httpx2
import numpy as np
import openai
import pytest

from faceplate.config import DEFAULT_CHAT_MODEL_ID, DEFAULT_EMBEDDING_MODEL_ID, bundled_embedding_model_path
from tests.conformance import ValidatingTransport
from tests.e2e.conftest import E2E_KEY
from tests.serverproc import ServerProcess

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL = DEFAULT_EMBEDDING_MODEL_ID
TEXTS = [
    "A man is playing a guitar.",
    "Someone plays the guitar.",
    "The stock market fell sharply today.",
    "é 日本 🙂 naïve façade",
]


@pytest.fixture(scope="module")
def st() -> SentenceTransformer:
    from faceplate.engines.sentence import prepare_environment

    prepare_environment()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(bundled_embedding_model_path()), device="cpu", local_files_only=True)


@pytest.fixture
def sdk(server: ServerProcess, transport: ValidatingTransport) -> Iterator[openai.OpenAI]:
    """The SDK as applications use it: no encoding_format, so it asks for base64 and decodes it.

    Its strict response validation must stay off for that call: the SDK's own model declares
    ``embedding: list[float]`` and, strict, rejects the base64 body before its post-parser decodes
    it (openai 3.57; it would reject OpenAI's own answer the same way). The validating transport
    still checks every body against OpenAI's published spec, base64 strings included.
    """
    c = openai.OpenAI(
        base_url=server.base_url,
        api_key=E2E_KEY,
        http_client=httpx2.Client(transport=transport, timeout=300),
        max_retries=0,
    )
    yield c
    c.close()


def vectors(response: Any) -> np.ndarray:
    assert [d.index for d in response.data] == list(range(len(response.data)))
    return np.array([d.embedding for d in response.data], dtype=np.float32)


def test_default_base64_and_float_give_the_same_vectors(
    sdk: openai.OpenAI, client: openai.OpenAI, transport: ValidatingTransport
) -> None:
    default = sdk.embeddings.create(model=MODEL, input=TEXTS)  # the SDK asks for base64 and decodes it
    assert isinstance(transport.responses[-1]["data"][0]["embedding"], str)
    floats = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert isinstance(transport.responses[-1]["data"][0]["embedding"], list)
    assert np.array_equal(vectors(default), vectors(floats))
    assert default.model == MODEL and default.object == "list"
    assert default.usage.prompt_tokens == default.usage.total_tokens == floats.usage.prompt_tokens


def test_vectors_equal_sentence_transformers(sdk: openai.OpenAI, client: openai.OpenAI, st: SentenceTransformer) -> None:
    expected = st.encode(TEXTS)
    np.testing.assert_allclose(vectors(sdk.embeddings.create(model=MODEL, input=TEXTS)), expected, atol=1e-5)
    floats = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    np.testing.assert_allclose(vectors(floats), expected, atol=1e-5)
    one = vectors(sdk.embeddings.create(model=MODEL, input=TEXTS[0]))
    np.testing.assert_allclose(one[0], st.encode(TEXTS[0]), atol=1e-5)


def test_usage_counts_the_tokens_the_model_sees(client: openai.OpenAI, st: SentenceTransformer) -> None:
    response = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    expected = sum(len(st.tokenizer(t)["input_ids"]) for t in TEXTS)  # [CLS] and [SEP] included
    assert response.usage.prompt_tokens == response.usage.total_tokens == expected


def test_paraphrase_is_closer_than_an_unrelated_sentence(sdk: openai.OpenAI) -> None:
    v = vectors(sdk.embeddings.create(model=MODEL, input=TEXTS[:3]))
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.3


@pytest.mark.parametrize("dims", [1, 64, 384])
def test_dimensions_gives_unit_vectors_of_that_length(sdk: openai.OpenAI, client: openai.OpenAI, dims: int) -> None:
    full = vectors(client.embeddings.create(model=MODEL, input=TEXTS[:2], encoding_format="float"))
    expected = full[:, :dims] / np.linalg.norm(full[:, :dims], axis=1, keepdims=True)
    for short in (
        vectors(client.embeddings.create(model=MODEL, input=TEXTS[:2], dimensions=dims, encoding_format="float")),
        vectors(sdk.embeddings.create(model=MODEL, input=TEXTS[:2], dimensions=dims)),
    ):
        assert short.shape == (2, dims)
        np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(short, expected, atol=1e-6)


def cl100k(texts: list[str]) -> list[list[int]]:
    """What OpenAI clients (LangChain's OpenAIEmbeddings) send: tiktoken cl100k_base ids."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # bpe-openai's own import
        from bpe_openai._bindings import tokenizer_for_encoding

        return [tokenizer_for_encoding("cl100k_base").encode(t) for t in texts]


def test_token_arrays_are_openai_ids(sdk: openai.OpenAI, st: SentenceTransformer) -> None:
    ids = cl100k(TEXTS)
    from_text = sdk.embeddings.create(model=MODEL, input=TEXTS)
    many = sdk.embeddings.create(model=MODEL, input=ids)
    np.testing.assert_allclose(vectors(many), vectors(from_text), atol=1e-5)
    one = sdk.embeddings.create(model=MODEL, input=ids[0])
    np.testing.assert_allclose(vectors(one)[0], vectors(from_text)[0], atol=1e-5)
    assert one.usage.prompt_tokens == len(st.tokenizer(TEXTS[0])["input_ids"])  # the model's tokens, specials included


def test_many_inputs_in_one_request(sdk: openai.OpenAI, st: SentenceTransformer) -> None:
    texts = [f"sentence number {i}: {TEXTS[i % len(TEXTS)]}" for i in range(260)]  # more than one batch of 256
    got = vectors(sdk.embeddings.create(model=MODEL, input=texts))
    assert got.shape == (260, 384)
    np.testing.assert_allclose(got, st.encode(texts, batch_size=256), atol=1e-5)


BAD: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("empty string", {"input": ""}, "input", None),
    ("empty array", {"input": []}, "input", None),
    ("empty string in array", {"input": ["fine", ""]}, "input", None),
    ("empty token array", {"input": [[101], []]}, "input", None),
    ("wrong type", {"input": [1.5, 2.5]}, "input", None),
    ("mixed types", {"input": ["a", 1]}, "input", None),
    ("too many inputs", {"input": ["x"] * 2049}, "input", None),
    ("token id outside cl100k_base", {"input": [[2023, 100300]]}, "input", "invalid_value"),
    ("negative token id", {"input": [2023, -1]}, "input", None),
    ("input too long", {"input": "word " * 300}, "input", "context_length_exceeded"),
    ("too many dimensions", {"input": "x", "dimensions": 385}, "dimensions", None),
    ("zero dimensions", {"input": "x", "dimensions": 0}, "dimensions", None),
    ("bad encoding format", {"input": "x", "encoding_format": "binary"}, "encoding_format", None),
]


@pytest.mark.parametrize(("why", "args", "param", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_are_400(client: openai.OpenAI, why: str, args: dict[str, Any], param: str, code: str | None) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=MODEL, **args)
    assert err.value.status_code == 400
    assert err.value.type == "invalid_request_error"
    assert err.value.param == param
    assert err.value.code == code


def test_chat_model_cannot_embed_and_embedding_model_cannot_chat(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=DEFAULT_CHAT_MODEL_ID, input="x")
    assert (err.value.param, err.value.code) == ("model", "model_not_supported")
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert (err.value.param, err.value.code) == ("model", "model_not_supported")


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.embeddings.create(model="no-such-model", input="x")
    assert err.value.code == "model_not_found"


def test_big_embedding_requests_do_not_block_the_server(sdk: openai.OpenAI, client: openai.OpenAI, server: ServerProcess) -> None:
    """While many inputs are embedded, /health and a chat request are still answered: the model runs off the event loop."""
    texts = [f"input number {i}: " + TEXTS[i % 4] * 3 for i in range(768)]
    with ThreadPoolExecutor(2) as pool:
        big = pool.submit(lambda: sdk.embeddings.create(model=MODEL, input=texts))
        time.sleep(1.0)
        assert not big.done(), "the embedding request finished too fast to tell anything"
        latencies = []
        for _ in range(5):
            started = time.monotonic()
            assert httpx.get(f"{server.root}/health", timeout=30).status_code == 200
            latencies.append(time.monotonic() - started)
        chat = client.chat.completions.create(
            model=DEFAULT_CHAT_MODEL_ID, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4
        )
        still_running = not big.done()
        result = big.result(timeout=600)
    assert max(latencies) < 1.0, latencies
    assert chat.choices[0].message.content is not None
    assert still_running, "the chat request waited for the embedding request"
    assert len(result.data) == 768
