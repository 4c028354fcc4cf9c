"""Logging for ``faceplate serve``: text lines, or one JSON object a line (``log_format``).

Every HTTP request has one ``faceplate.access`` line (``http.middleware.RequestIds``): request id,
method, route template, status, latency, the key's id (``key_…``, ``static:<hash>`` or
``anonymous``: never a secret), and for calls on a model the model, token counts and time to
first token. Prompts and answers are never logged. In JSON every line is
``{"time", "level", "logger", "message", ...}`` with a request's fields at the top level.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, fmt: str) -> None:
    """The root logger's one handler, in ``fmt`` (text or json); uvicorn's loggers go through it too."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
