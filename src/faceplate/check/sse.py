"""An incremental Server-Sent Events decoder, as the OpenAI SDKs read a stream.

Fed raw bytes in whatever pieces the socket delivers; lines may end in LF, CRLF or CR (the SSE
spec allows all three) and may be split anywhere, even inside a UTF-8 sequence. Comment lines
(``:``) are dropped, as clients drop keep-alives; ``data:`` lines join with newlines; a blank line
dispatches the event. Nothing is buffered per line beyond the current event, so a long chunk is
fine (aiohttp's own readline gives up past 64 KiB).
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from typing import Any

DONE = "[DONE]"


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str | None = None

    @property
    def done(self) -> bool:
        return self.data == DONE

    def json(self) -> Any:
        """The data as JSON; raises ValueError (json.JSONDecodeError) when it is not."""
        return json.loads(self.data)


class SSEDecoder:
    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # an unfinished line
        self._data: list[str] = []
        self._event: str | None = None
        self._cr = False  # last piece ended in CR: a following LF belongs to it

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return self._feed_text(self._text.decode(chunk))

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if self._cr and text.startswith("\n"):
            text = text[1:]
        self._cr = text.endswith("\r")
        out: list[SSEEvent] = []
        lines = (self._pending + text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._pending = lines.pop()
        for line in lines:
            event = self._line(line)
            if event is not None:
                out.append(event)
        return out

    def close(self) -> list[SSEEvent]:
        """Events left when the body ends without a final blank line (still dispatched, as lenient clients do)."""
        out = self._feed_text(self._text.decode(b"", final=True))
        if self._pending:
            event = self._line(self._pending)
            self._pending = ""
            if event is not None:
                out.append(event)
        event = self._line("")
        if event is not None:
            out.append(event)
        return out

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data and self._event is None:
                return None
            event = SSEEvent("\n".join(self._data), self._event)
            self._data, self._event = [], None
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None  # id: and retry: mean nothing to OpenAI clients


def decode(body: bytes) -> list[SSEEvent]:
    """All events of a complete body."""
    decoder = SSEDecoder()
    return decoder.feed(body) + decoder.close()
