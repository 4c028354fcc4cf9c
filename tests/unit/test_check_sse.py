"""faceplate.check.sse: SSE as the OpenAI SDKs read it, however the bytes are split."""

from __future__ import annotations

import pytest

from faceplate.check.sse import SSEDecoder, SSEEvent, decode

STREAM = (
    ": keep-alive\n\n"
    'data: {"a": "é"}\n\n'
    'event: response.created\r\ndata: {"b": 1}\r\n\r\n'
    "data: line one\rdata: line two\r\r"
    "id: 7\nretry: 10\ndata: [DONE]\n\n"
).encode()
EXPECTED = [
    SSEEvent('{"a": "é"}'),
    SSEEvent('{"b": 1}', "response.created"),
    SSEEvent("line one\nline two"),
    SSEEvent("[DONE]"),
]


def test_whole_body() -> None:
    assert decode(STREAM) == EXPECTED
    assert EXPECTED[-1].done and not EXPECTED[0].done
    assert EXPECTED[0].json() == {"a": "é"}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_any_split_gives_the_same_events(size: int) -> None:
    # Every boundary: inside a CRLF, inside "é"'s two UTF-8 bytes, inside "data:".
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for i in range(0, len(STREAM), size):
        events += decoder.feed(STREAM[i : i + size])
    assert events + decoder.close() == EXPECTED


def test_unterminated_last_event_is_still_dispatched() -> None:
    assert decode(b'data: {"x": 1}\n\ndata: [DONE]') == [SSEEvent('{"x": 1}'), SSEEvent("[DONE]")]
    assert decode(b"") == [] and decode(b": only a comment\n\n") == []


def test_data_without_space_and_empty_data() -> None:
    assert decode(b"data:tight\n\ndata:\n\n") == [SSEEvent("tight"), SSEEvent("")]
    with pytest.raises(ValueError):
        SSEEvent("").json()  # an empty data: line crashes clients; the checks see it as not JSON
