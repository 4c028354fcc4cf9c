"""Wire schema of POST /v1/embeddings (CreateEmbeddingRequest)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from faceplate.protocol.common import WireModel

MAX_INPUTS = 2048


class EmbeddingRequest(WireModel):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
