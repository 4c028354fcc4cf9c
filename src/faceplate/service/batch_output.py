"""The Batch API's output and error file lines (BatchRequestOutput), as pure functions.

- A request that ran and answered 2xx goes to the output file: ``success_line``.
- A request that ran and answered 4xx/5xx goes to the error file with its status and OpenAI's
  ``{"error": {...}}`` body under ``response``, and a null top-level ``error``: ``failure_line``.
  Clients read ``response.body.error.message``.
- A request that never ran (the batch was cancelled or expired first, or the line timed out)
  goes to the error file with a null ``response`` and ``error: {code, message}``: ``unrun_line``.

Every line has a fresh ``batch_req_<32 hex>`` id and the input line's ``custom_id``; clients match
on ``custom_id``, never on order. ``dumps_line`` writes one line of the JSONL file.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

UnrunCode = Literal["batch_cancelled", "batch_expired", "request_timeout"]


def new_request_id() -> str:
    """A ``batch_req_`` id: opaque, unique, carrying no data."""
    return f"batch_req_{uuid.uuid4().hex}"


def success_line(custom_id: str, status_code: int, request_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The output-file line of a request that answered ``status_code`` (2xx) with ``body``."""
    return {
        "id": new_request_id(),
        "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": request_id, "body": body},
        "error": None,
    }


def failure_line(custom_id: str, status_code: int, request_id: str, error_body: dict[str, Any]) -> dict[str, Any]:
    """The error-file line of a request that ran and answered ``status_code`` (4xx/5xx).

    ``error_body`` is the endpoint's own error body, ``{"error": {message, type, param, code}}``
    (``FaceplateError.body()``); it goes under ``response.body`` and the top-level ``error`` is null,
    as OpenAI writes it.
    """
    return {
        "id": new_request_id(),
        "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": request_id, "body": error_body},
        "error": None,
    }


def unrun_line(custom_id: str, code: UnrunCode, message: str) -> dict[str, Any]:
    """The error-file line of a request that never ran: no response, ``error: {code, message}``."""
    return {
        "id": new_request_id(),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }


# Line breaks to str.splitlines() that JSON leaves raw; in JSON text they can only sit inside a
# string, where the escape means the same character.
_SPLITTERS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def dumps_line(obj: dict[str, Any]) -> bytes:
    """One JSONL line: compact JSON in UTF-8 and a newline.

    Non-ASCII text stays as UTF-8, except U+0085, U+2028 and U+2029, which are escaped: a client
    reading the file with ``str.splitlines()`` (a common way) would cut the line at them. NaN or
    Infinity raises ValueError, as does a lone surrogate (UnicodeEncodeError), so no line that a
    strict JSON reader would refuse is ever written.
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.translate(_SPLITTERS).encode("utf-8") + b"\n"
