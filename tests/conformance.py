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


def schema_for(method: str, path: str, status: int, streaming: bool) -> Callable[[Any], None] | None:
    """The validator for one response (or one stream event), by route."""
    if status >= 400:
        return spec.validate_error
    path = path.split("?")[0].rstrip("/")
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
        if not data_lines:
            assert all(line.startswith(b":") or line.startswith(b"event:") for line in raw.split(b"\n") if line), raw
            return
        data = b"\n".join(data_lines)
        if data == b"[DONE]":
            return
        obj = json.loads(data)
        self._log.append(obj)
        if isinstance(obj, dict) and "error" in obj:
            spec.validate_error(obj)
        else:
            self._check(obj)

    def close(self) -> None:
        self._inner.close()


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
        if "json" in ctype:
            obj = json.loads(body)
            self.responses.append(obj)
            check(obj)
        elif response.status_code >= 400:
            raise AssertionError(f"error response is not JSON: {response.status_code} {body[:200]!r}")
        return httpx2.Response(response.status_code, headers=response.headers, content=body, request=request)

    def close(self) -> None:
        self._inner.close()
