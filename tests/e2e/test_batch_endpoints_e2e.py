"""A batch on every endpoint the Batch API serves, run by the bundled models end to end: the real
server (the session's: the bundled chat and embedding models), the official SDK (strict response
validation, the spec-checking transport). Each batch ends ``completed``; each output body validates
against OpenAI's schema for that endpoint and parses as the SDK's type; the batch's usage is the sum
of its bodies'; the embedding vectors are the ones the endpoint itself returns for the same input."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from faceplate.config import DEFAULT_EMBEDDING_MODEL_ID
from tests.e2e.batch_helpers import chat_lines, counts, create_batch, line, read_lines, successes, wait_for
from tests.e2e.conftest import E2E_KEY
from tests.e2e.keys_helpers import CHAT, close_clients, sdk
from tests.serverproc import ServerProcess

__all__ = ["close_clients"]  # the autouse fixture that closes every client `sdk` made

EMBED = DEFAULT_EMBEDDING_MODEL_ID
EMBEDDING_BODIES: dict[str, dict[str, Any]] = {
    "one": {"model": EMBED, "input": "A man is playing a guitar."},
    "two": {"model": EMBED, "input": ["Someone plays the guitar.", "The stock market fell sharply today."]},
    "short": {"model": EMBED, "input": "é 日本 🙂 naïve façade", "dimensions": 64},
    "base64": {"model": EMBED, "input": "A man is playing a guitar.", "encoding_format": "base64"},
}

# endpoint -> (its lines, the OpenAI schema of an answer, the SDK's type of one)
BATCHES: dict[str, tuple[list[dict[str, Any]], str, Any]] = {
    "/v1/chat/completions": (chat_lines(3), "CreateChatCompletionResponse", ChatCompletion),
    "/v1/completions": (
        [line(f"c{i}", "/v1/completions", {"model": CHAT, "prompt": f"Count to {i}:", "max_tokens": 3}) for i in range(3)],
        "CreateCompletionResponse",
        Completion,
    ),
    "/v1/embeddings": (
        [line(name, "/v1/embeddings", body) for name, body in EMBEDDING_BODIES.items()],
        "FaceplateCreateEmbeddingResponse",  # CreateEmbeddingResponse, base64 strings allowed
        CreateEmbeddingResponse,
    ),
    "/v1/responses": (
        [line(f"p{i}", "/v1/responses", {"model": CHAT, "input": f"Say {i}.", "max_output_tokens": 16}) for i in range(2)],
        "Response",
        Response,
    ),
}


@pytest.fixture(scope="module")
def batch_ids(server: ServerProcess) -> Iterator[dict[str, str]]:
    """One batch per endpoint, all created at once so the worker runs them while the tests wait."""
    client = sdk(server, E2E_KEY)
    yield {endpoint: create_batch(client, lines, endpoint).id for endpoint, (lines, _, _) in BATCHES.items()}
    client.close()


def _usage(endpoint: str, bodies: list[dict[str, Any]]) -> tuple[int, int]:
    """(input, output) tokens summed as the batch counts them."""
    if endpoint == "/v1/responses":
        return sum(b["usage"]["input_tokens"] for b in bodies), sum(b["usage"]["output_tokens"] for b in bodies)
    if endpoint == "/v1/embeddings":
        return sum(b["usage"]["prompt_tokens"] for b in bodies), 0
    return sum(b["usage"]["prompt_tokens"] for b in bodies), sum(b["usage"]["completion_tokens"] for b in bodies)


@pytest.mark.parametrize("endpoint", list(BATCHES))
def test_a_batch_on_each_endpoint_completes(endpoint: str, batch_ids: dict[str, str], server: ServerProcess) -> None:
    lines, schema, sdk_type = BATCHES[endpoint]
    client = sdk(server, E2E_KEY)
    done = wait_for(client, batch_ids[endpoint])
    assert done.status == "completed" and done.endpoint == endpoint, done
    assert counts(done) == (len(lines), len(lines), 0) and done.error_file_id is None
    assert done.model == lines[0]["body"]["model"]
    bodies = successes(read_lines(client, done.output_file_id), schema)
    assert sorted(bodies) == sorted(x["custom_id"] for x in lines)
    for custom_id, body in bodies.items():
        if custom_id != "base64":  # the SDK's type says list[float]; its own post-parser decodes base64 first
            sdk_type.model_validate(body)
        assert body["model"] == done.model
    assert done.usage is not None
    input_tokens, output_tokens = _usage(endpoint, list(bodies.values()))
    assert input_tokens > 0 and (output_tokens > 0) == (endpoint != "/v1/embeddings")
    assert (done.usage.input_tokens, done.usage.output_tokens) == (input_tokens, output_tokens)
    assert done.usage.total_tokens == input_tokens + output_tokens


def _vectors(body: dict[str, Any]) -> np.ndarray:
    rows = []
    for d in body["data"]:
        e = d["embedding"]
        rows.append(np.frombuffer(base64.b64decode(e), dtype=np.float32) if isinstance(e, str) else np.array(e, np.float32))
    return np.array(rows)


def test_batch_embeddings_are_the_endpoints(batch_ids: dict[str, str], server: ServerProcess) -> None:
    client = sdk(server, E2E_KEY)
    done = wait_for(client, batch_ids["/v1/embeddings"])
    bodies = successes(read_lines(client, done.output_file_id), "FaceplateCreateEmbeddingResponse")
    assert isinstance(bodies["base64"]["data"][0]["embedding"], str)
    assert isinstance(bodies["one"]["data"][0]["embedding"], list)
    for name, body in EMBEDDING_BODIES.items():
        direct = client.embeddings.create(**{**body, "encoding_format": "float"})
        expected = np.array([d.embedding for d in direct.data], dtype=np.float32)
        got = _vectors(bodies[name])
        assert got.shape == expected.shape == (len(direct.data), body.get("dimensions", 384)), name
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=name)
        assert bodies[name]["usage"] == direct.usage.model_dump(), name
