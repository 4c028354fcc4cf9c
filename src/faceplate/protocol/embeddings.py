"""Wire schema of POST /v1/embeddings (CreateEmbeddingRequest) and its CreateEmbeddingResponse.

``input`` is a string, an array of strings, an array of token ids, or an array of
token-id arrays, at most 2048 items; empty strings and empty arrays are refused, as
OpenAI refuses them. Every problem with it is a 400 with ``param: "input"``. Token ids
are the content tokens only: the model's own special tokens are added around each input,
exactly as they are around text.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from faceplate.errors import InvalidRequest
from faceplate.protocol.common import WireModel

MAX_INPUTS = 2048

EmbeddingInput = list[str] | list[list[int]]


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


_EXPECTED = "a string, an array of strings, an array of token ids, or an array of arrays of token ids"


def _token_array(value: list[Any], where: str) -> list[int]:
    if not value:
        raise ValueError(f"{where} is an empty array; every input must have at least one token")
    for token in value:
        if type(token) is not int:
            raise ValueError(f"{where} must hold integer token ids only, but holds {_kind(token)}")
        if token < 0:
            raise ValueError(f"{where} holds the negative token id {token}")
    return value


def normalise_input(value: Any) -> EmbeddingInput:
    """The request's inputs as a list of strings or a list of token-id arrays (raises ValueError)."""
    if isinstance(value, str):
        if not value:
            raise ValueError("'input' is an empty string; every input must be non-empty")
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"expected {_EXPECTED}, but got {_kind(value)}")
    if not value:
        raise ValueError("'input' is an empty array; send at least one input")
    if len(value) > MAX_INPUTS:
        raise ValueError(f"'input' has {len(value)} items, more than the {MAX_INPUTS} allowed in one request")
    first = value[0]
    if isinstance(first, str):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"an array of strings must hold strings only, but 'input[{i}]' is {_kind(item)}")
            if not item:
                raise ValueError(f"'input[{i}]' is an empty string; every input must be non-empty")
        return list(value)
    if type(first) is int:
        return [_token_array(value, "'input'")]
    if isinstance(first, list):
        arrays: list[list[int]] = []
        for i, item in enumerate(value):
            if not isinstance(item, list):
                raise ValueError(f"an array of token arrays must hold arrays only, but 'input[{i}]' is {_kind(item)}")
            arrays.append(_token_array(item, f"'input[{i}]'"))
        return arrays
    raise ValueError(f"expected {_EXPECTED}, but got an array whose first item is {_kind(first)}")


class EmbeddingRequest(WireModel):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input", mode="plain")
    @classmethod
    def _input(cls, value: Any) -> EmbeddingInput:
        return normalise_input(value)

    @property
    def inputs(self) -> EmbeddingInput:
        return self.input  # type: ignore[return-value]  # normalised by the validator


def check_dimensions(requested: int | None, native: int, supported: bool) -> None:
    if requested is None:
        return
    if not supported:
        raise InvalidRequest("This model does not support specifying dimensions.", param="dimensions")
    if requested > native:
        raise InvalidRequest(
            f"Invalid value for 'dimensions': this model's embeddings have {native} dimensions, "
            f"so 'dimensions' must be between 1 and {native} (got {requested}).",
            param="dimensions",
        )


def shorten(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first ``dimensions`` components and renormalise to unit length (OpenAI's ``dimensions``)."""
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return (cut / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def encode_base64(vector: np.ndarray) -> str:
    """Little-endian float32 bytes, base64: what the SDKs decode by default."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def embedding_response(
    model: str, vectors: np.ndarray, prompt_tokens: int, encoding_format: Literal["float", "base64"] | None
) -> dict[str, Any]:
    """CreateEmbeddingResponse. Floats are the float32 values exactly, so float and base64 decode alike."""
    vectors = np.asarray(vectors, dtype=np.float32)
    rows: list[Any] = [encode_base64(v) for v in vectors] if encoding_format == "base64" else vectors.tolist()
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
