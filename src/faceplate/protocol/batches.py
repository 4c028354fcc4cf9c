"""Wire schema of POST /v1/batches (CreateBatchRequest) and the Batch API's limits.

[SPEC] lists eight endpoints; Faceplate serves the four it can run (``SUPPORTED_ENDPOINTS``)
and answers the others (``/v1/moderations``, images, videos) with a 400 naming ``endpoint``
and the endpoints it does support. ``completion_window`` has one value, ``24h``. ``metadata``
follows the one metadata rule (``check_metadata``); ``output_expires_after`` is
BatchFileExpirationAfter: anchor ``created_at`` and 3600..2592000 seconds.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import field_validator

from faceplate.errors import InvalidRequest
from faceplate.protocol.common import WireModel
from faceplate.protocol.responses import check_metadata

MAX_BATCH_REQUESTS = 50_000  # lines in one input file [SPEC]
MAX_BATCH_FILE_BYTES = 200 * 1024 * 1024  # one input file [SPEC]; OpenAI: "larger than the 209715200 maximum"
MAX_EMBEDDING_INPUTS = 50_000  # inputs across all the lines of an /v1/embeddings batch [SPEC]
COMPLETION_WINDOW_SECONDS = 24 * 3600  # expires_at = created_at + this
MIN_OUTPUT_EXPIRY_S = 3600  # BatchFileExpirationAfter.seconds: one hour ...
MAX_OUTPUT_EXPIRY_S = 2_592_000  # ... to thirty days

BatchEndpoint = Literal["/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions"]
SUPPORTED_ENDPOINTS: tuple[str, ...] = get_args(BatchEndpoint)


def _one_of(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:80] + "...")


class BatchFileExpirationAfter(WireModel):
    anchor: Literal["created_at"]
    seconds: int

    @field_validator("anchor", mode="before")
    @classmethod
    def _anchor(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "created_at":
            raise InvalidRequest(
                f"Invalid value for 'output_expires_after.anchor': expected 'created_at', but got {_shown(value)} instead.",
                param="output_expires_after.anchor",
            )
        return value

    @field_validator("seconds")
    @classmethod
    def _seconds(cls, value: int) -> int:
        where = "output_expires_after.seconds"
        if value < MIN_OUTPUT_EXPIRY_S:
            raise InvalidRequest(
                f"Invalid '{where}': integer below minimum value. Expected a value >= {MIN_OUTPUT_EXPIRY_S}, "
                f"but got {value} instead.",
                param=where,
            )
        if value > MAX_OUTPUT_EXPIRY_S:
            raise InvalidRequest(
                f"Invalid '{where}': integer above maximum value. Expected a value <= {MAX_OUTPUT_EXPIRY_S}, "
                f"but got {value} instead.",
                param=where,
            )
        return value


class CreateBatchRequest(WireModel):
    input_file_id: str
    endpoint: BatchEndpoint
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None
    output_expires_after: BatchFileExpirationAfter | None = None

    # Before the Literal check, so a string that is not served gets a message naming what is;
    # a non-string still gets parse_request's "Invalid type" 400.
    @field_validator("endpoint", mode="before")
    @classmethod
    def _endpoint(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in SUPPORTED_ENDPOINTS:
            raise InvalidRequest(
                f"Invalid value for 'endpoint': {_shown(value)} is not supported for batches by this server. "
                f"Supported endpoints: {_one_of(SUPPORTED_ENDPOINTS)}.",
                param="endpoint",
            )
        return value

    @field_validator("completion_window", mode="before")
    @classmethod
    def _completion_window(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "24h":
            raise InvalidRequest(
                f"Invalid value for 'completion_window': expected '24h' (the only supported window), "
                f"but got {_shown(value)} instead.",
                param="completion_window",
            )
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_metadata(value)
