"""An HTTP transport for the official SDK that validates every body and SSE chunk it receives.

Wrap it around the real transport (``openai.OpenAI(http_client=httpx2.Client(transport=...))``)
and every response the tests see is checked against OpenAI's published spec
(``tests/spec.py``) before the SDK reads it. A violation raises inside the SDK call
and is also kept in ``violations`` so a fixture can fail the test at teardown.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2

from tests import spec

Check = Callable[[Any], None]


def _responses_route(method: str, rest: list[str], streaming: bool) -> Check | None:
    """/v1/responses[/...]: ``rest`` is what follows 'responses'."""
    response = spec.validate_response_event if streaming else spec.validate_response
    match rest:
        case [] if method == "POST":
            return response
        case ["input_tokens"]:  # a route of its own, never a response id
            return spec.validate_input_tokens if method == "POST" else None
        case [_] if method == "GET":  # retrieve, or with ?stream=true a replay
            return response
        case [_, "cancel"] if method == "POST":
            return spec.validate_response
        case [_, "input_items"] if method == "GET":
            return spec.validate_response_item_list
    return None  # DELETE /responses/{id}: the spec gives no 200 schema


def _conversations_route(method: str, rest: list[str]) -> Check | None:
    """/v1/conversations[/...]: ``rest`` is what follows 'conversations'."""
    match rest:
        case [] if method == "POST":
            return spec.validate_conversation
        case [_] if method in ("GET", "POST"):
            return spec.validate_conversation
        case [_] if method == "DELETE":
            return spec.validate_conversation_deleted
        case [_, "items"] if method in ("GET", "POST"):
            return spec.validate_conversation_item_list
        case [_, "items", _] if method == "GET":
            return spec.validate_conversation_item
        case [_, "items", _] if method == "DELETE":
            return spec.validate_conversation  # OpenAI answers an item delete with the conversation
    return None


def _files_route(method: str, rest: list[str]) -> Check | None:
    """/v1/files[/...]: ``rest`` is what follows 'files'. Content downloads are raw bytes: unchecked."""
    match rest:
        case [] if method == "POST":
            return spec.validate_file
        case [] if method == "GET":
            return spec.validate_file_list
        case [_] if method == "GET":
            return spec.validate_file
        case [_] if method == "DELETE":
            return spec.validate_file_deleted
    return None


def _batches_route(method: str, rest: list[str]) -> Check | None:
    """/v1/batches[/...]: ``rest`` is what follows 'batches'."""
    match rest:
        case [] if method == "POST":
            return spec.validate_batch
        case [] if method == "GET":
            return spec.validate_batch_list
        case [_] if method == "GET":
            return spec.validate_batch
        case [_, "cancel"] if method == "POST":
            return spec.validate_batch
    return None


def schema_for(method: str, path: str, status: int, streaming: bool) -> Check | None:
    """The validator for one response (or one stream event), by route."""
    if status >= 400:
        return spec.validate_error
    path = path.split("?")[0].rstrip("/")
    # First: an id in these paths could otherwise end in a name the suffix checks below match.
    segments = path.split("/")
    head = segments[:3]  # "/v1/responses/..." or, without the version prefix, "/responses/..."
    if "responses" in head:
        return _responses_route(method, segments[head.index("responses") + 1 :], streaming)
    if "conversations" in head:
        return _conversations_route(method, segments[head.index("conversations") + 1 :])
    if "files" in head:
        return _files_route(method, segments[head.index("files") + 1 :])
    if "batches" in head:
        return _batches_route(method, segments[head.index("batches") + 1 :])
    if path.endswith("/chat/completions") and method == "POST":
        return spec.validate_chat_chunk if streaming else spec.validate_chat_completion
    if path.endswith("/completions") and method == "POST":
        return spec.validate_completion_chunk if streaming else spec.validate_completion
    if path.endswith("/embeddings"):
        return spec.validate_embeddings
    if path.endswith("/models") and method == "GET":
        return spec.validate_model_list
    if "/models/" in path and method == "GET":
        return spec.validate_model
    return None


class _ValidatingStream(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, check: Callable[[Any], None], log: list[Any]) -> None:
        self._inner = inner
        self._check = check
        self._log = log
        self._buffer = b""

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._buffer += chunk
            while b"\n\n" in self._buffer:
                event, self._buffer = self._buffer.split(b"\n\n", 1)
                self._event(event)
            yield chunk

    def _event(self, raw: bytes) -> None:
        data_lines = [line[5:].lstrip() for line in raw.split(b"\n") if line.startswith(b"data:")]
        names = [line[6:].strip().decode() for line in raw.split(b"\n") if line.startswith(b"event:")]
        if not data_lines:
            assert all(line.startswith(b":") or line.startswith(b"event:") for line in raw.split(b"\n") if line), raw
            return
        data = b"\n".join(data_lines)
        if data == b"[DONE]":
            return
        obj = json.loads(data)
        self._log.append(obj)
        if names:
            # Responses SSE: `event:` names the type; the SDKs dispatch on either, so they must agree.
            kind = obj.get("type") if isinstance(obj, dict) else None
            assert names[-1] == kind, f"SSE event name {names[-1]!r} differs from the data's type {kind!r}: {raw[:300]!r}"
        if isinstance(obj, dict) and "error" in obj:
            spec.validate_error(obj)
        else:
            self._check(obj)

    def close(self) -> None:
        self._inner.close()


def _validate_json(body: bytes, ctype: str, status: int, check: Check, log: list[Any]) -> None:
    if "json" in ctype:
        obj = json.loads(body)
        log.append(obj)
        check(obj)
    elif status >= 400:
        raise AssertionError(f"error response is not JSON: {status} {body[:200]!r}")


def validate_body(method: str, path: str, status: int, content_type: str, body: bytes) -> list[Any]:
    """Check one whole response, read to its end (JSON, or every event of an SSE stream), as the transport does.

    For callers that hold a finished response rather than a client (the Schemathesis fuzz). Returns
    the JSON objects seen; raises AssertionError on the first that breaks the spec.
    """
    seen: list[Any] = []
    check = schema_for(method, path, status, "event-stream" in content_type)
    if check is None:
        return seen
    if "event-stream" in content_type:
        for _ in _ValidatingStream(iter([body]), check, seen):  # type: ignore[arg-type]
            pass
        if body.strip() and not body.endswith(b"\n\n"):
            raise AssertionError(f"the stream ends inside an event: {body[-200:]!r}")
    else:
        _validate_json(body, content_type, status, check, seen)
    return seen


class ValidatingTransport(httpx2.BaseTransport):
    def __init__(self, inner: httpx2.BaseTransport | None = None) -> None:
        self._inner = inner or httpx2.HTTPTransport()
        self.responses: list[Any] = []  # every JSON body and stream event seen, for assertions
        self.headers: list[httpx2.Headers] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        self.headers.append(response.headers)
        ctype = response.headers.get("content-type", "")
        check = schema_for(request.method, request.url.path, response.status_code, "event-stream" in ctype)
        if check is None:
            return response
        if "event-stream" in ctype:
            stream = _ValidatingStream(response.stream, check, self.responses)  # type: ignore[arg-type]
            return httpx2.Response(response.status_code, headers=response.headers, stream=stream, request=request)
        body = response.read()
        _validate_json(body, ctype, response.status_code, check, self.responses)
        return httpx2.Response(response.status_code, headers=response.headers, content=body, request=request)

    def close(self) -> None:
        self._inner.close()
