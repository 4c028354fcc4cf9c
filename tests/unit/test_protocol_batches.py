"""POST /v1/batches body (CreateBatchRequest): what parses, and OpenAI's 400 with its param for what does not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from faceplate.errors import InvalidRequest
from faceplate.protocol.batches import (
    MAX_BATCH_FILE_BYTES,
    MAX_BATCH_REQUESTS,
    MAX_EMBEDDING_INPUTS,
    SUPPORTED_ENDPOINTS,
    BatchFileExpirationAfter,
    CreateBatchRequest,
)
from faceplate.protocol.common import parse_request

OK: dict[str, Any] = {"input_file_id": "file-abc", "endpoint": "/v1/chat/completions", "completion_window": "24h"}


def parse(body: dict[str, Any], *, strict: bool = False) -> CreateBatchRequest:
    return parse_request(json.dumps(body).encode(), CreateBatchRequest, endpoint="batches", strict=strict)


def refused(body: dict[str, Any], *, strict: bool = False) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse(body, strict=strict)
    assert info.value.status == 400
    return info.value


def test_constants() -> None:
    assert (MAX_BATCH_REQUESTS, MAX_BATCH_FILE_BYTES, MAX_EMBEDDING_INPUTS) == (50_000, 209_715_200, 50_000)
    assert SUPPORTED_ENDPOINTS == ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions")


def test_minimal_body() -> None:
    req = parse(OK)
    assert (req.input_file_id, req.endpoint, req.completion_window) == ("file-abc", "/v1/chat/completions", "24h")
    assert req.metadata is None and req.output_expires_after is None


def test_full_body() -> None:
    req = parse({**OK, "metadata": {"k": "v"}, "output_expires_after": {"anchor": "created_at", "seconds": 3600}}, strict=True)
    assert req.metadata == {"k": "v"}
    assert req.output_expires_after == BatchFileExpirationAfter(anchor="created_at", seconds=3600)
    assert parse({**OK, "metadata": None, "output_expires_after": None}).metadata is None


@pytest.mark.parametrize("endpoint", SUPPORTED_ENDPOINTS)
def test_supported_endpoints(endpoint: str) -> None:
    assert parse({**OK, "endpoint": endpoint}).endpoint == endpoint


@pytest.mark.parametrize("field", ["input_file_id", "endpoint", "completion_window"])
def test_missing_required(field: str) -> None:
    body = dict(OK)
    del body[field]
    err = refused(body)
    assert err.param == field
    assert err.message == f"Missing required parameter: '{field}'."


@pytest.mark.parametrize(
    "endpoint",
    ["/v1/moderations", "/v1/images/generations", "/v1/images/edits", "/v1/videos", "/v1/chat/completions/", "chat", ""],
)
def test_unsupported_endpoint(endpoint: str) -> None:
    err = refused({**OK, "endpoint": endpoint})
    assert err.param == "endpoint"
    assert all(e in err.message for e in SUPPORTED_ENDPOINTS)
    assert repr(endpoint) in err.message


@pytest.mark.parametrize("value", [1, None, ["/v1/embeddings"]])
def test_endpoint_wrong_type(value: Any) -> None:
    assert refused({**OK, "endpoint": value}).param == "endpoint"


@pytest.mark.parametrize("window", ["48h", "1h", "24H", "", 24, None])
def test_completion_window(window: Any) -> None:
    err = refused({**OK, "completion_window": window})
    assert err.param == "completion_window"
    assert "24h" in err.message


@pytest.mark.parametrize("value", [5, None, ["file-abc"]])
def test_input_file_id_type(value: Any) -> None:
    err = refused({**OK, "input_file_id": value})
    assert err.param == "input_file_id"
    assert err.message.startswith("Invalid type for 'input_file_id'")


def test_metadata_sixteen_pairs() -> None:
    assert parse({**OK, "metadata": {str(i): "v" for i in range(16)}}).metadata is not None
    err = refused({**OK, "metadata": {str(i): "v" for i in range(17)}})
    assert err.param == "metadata" and "16" in err.message


@pytest.mark.parametrize(
    ("metadata", "param"),
    [({"k" * 65: "v"}, "metadata"), ({"k": "v" * 513}, "metadata"), ({"k": 1}, "metadata.k"), (["k"], "metadata")],
)
def test_metadata_rules(metadata: Any, param: str) -> None:
    assert refused({**OK, "metadata": metadata}).param == param


@pytest.mark.parametrize("seconds", [3600, 86400, 2_592_000])
def test_output_expires_after_in_range(seconds: int) -> None:
    req = parse({**OK, "output_expires_after": {"anchor": "created_at", "seconds": seconds}})
    assert req.output_expires_after is not None and req.output_expires_after.seconds == seconds


@pytest.mark.parametrize(
    ("value", "param", "words"),
    [
        ({"anchor": "created_at", "seconds": 3599}, "output_expires_after.seconds", ">= 3600"),
        ({"anchor": "created_at", "seconds": 2_592_001}, "output_expires_after.seconds", "<= 2592000"),
        ({"anchor": "created_at", "seconds": 0}, "output_expires_after.seconds", ">= 3600"),
        ({"anchor": "created_at", "seconds": 3600.0}, "output_expires_after.seconds", "Invalid type"),
        ({"anchor": "created_at", "seconds": "3600"}, "output_expires_after.seconds", "Invalid type"),
        ({"anchor": "created_at", "seconds": True}, "output_expires_after.seconds", "Invalid type"),
        ({"anchor": "created_at"}, "output_expires_after.seconds", "Missing required parameter"),
        ({"seconds": 3600}, "output_expires_after.anchor", "Missing required parameter"),
        ({"anchor": "last_active_at", "seconds": 3600}, "output_expires_after.anchor", "'created_at'"),
        ({"anchor": 1, "seconds": 3600}, "output_expires_after.anchor", "created_at"),
        ("3600", "output_expires_after", "Invalid type"),
    ],
)
def test_output_expires_after_refused(value: Any, param: str, words: str) -> None:
    err = refused({**OK, "output_expires_after": value})
    assert err.param == param
    assert words in err.message


def test_strict_mode_refuses_unknown_fields() -> None:
    assert parse({**OK, "extra": 1}).input_file_id == "file-abc"  # lenient: logged, accepted
    err = refused({**OK, "extra": 1}, strict=True)
    assert "extra" in err.message


def test_not_an_object() -> None:
    with pytest.raises(InvalidRequest):
        parse_request(b"[]", CreateBatchRequest, endpoint="batches")
    with pytest.raises(InvalidRequest):
        parse_request(b'{"input_file_id": NaN}', CreateBatchRequest, endpoint="batches")
