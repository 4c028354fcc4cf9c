"""What one HTTP request did, gathered as it runs, for its access-log line.

The HTTP layer opens a record per request (``open_record``); the service layer adds to the
current one (``note``: the model, tokens, time to first token) without knowing about HTTP; work
outside a request (Batch API lines) has no record and notes nothing.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

_RECORD: ContextVar[dict[str, Any] | None] = ContextVar("faceplate_request_record", default=None)


def open_record() -> tuple[dict[str, Any], Token[dict[str, Any] | None]]:
    record: dict[str, Any] = {}
    return record, _RECORD.set(record)


def close_record(token: Token[dict[str, Any] | None]) -> None:
    _RECORD.reset(token)


def note(**fields: Any) -> None:
    """Add to the current request's record (first value wins for ``ttft_ms``); nothing outside a request."""
    record = _RECORD.get()
    if record is None:
        return
    for key, value in fields.items():
        if key == "ttft_ms" and key in record:
            continue
        record[key] = value
