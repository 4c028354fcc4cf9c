"""BodyDeadline: a stalled body chunk is a 408 envelope (connection closed), a steady body is not,
and once the body is complete the app may wait on the client as long as it likes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from faceplate.http.connection import BodyDeadline, headers_too_large, raw_response

SCOPE: Scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": [], "query_string": b""}


async def reads_body(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads the body (FaceplateErrors escape to the middleware, as before routing),
    then waits for the client to hang up."""
    body = await Request(scope, receive).body()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
    assert (await receive())["type"] == "http.disconnect"


def feeder(chunks: list[tuple[float, Message]]) -> Receive:
    it = iter(chunks)

    async def receive() -> Message:
        try:
            delay, message = next(it)
        except StopIteration:
            await asyncio.sleep(3600)
            raise AssertionError("never") from None
        await asyncio.sleep(delay)
        return message

    return receive


async def run(chunks: list[tuple[float, Message]], timeout_s: float) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await BodyDeadline(reads_body, timeout_s=timeout_s)(SCOPE, feeder(chunks), send)
    return sent


def part(body: bytes, more: bool) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_a_stalled_chunk_is_a_408_with_the_connection_closed() -> None:
    sent = await run([(0, part(b"{", True)), (5, part(b"}", False))], timeout_s=0.2)
    start, body = sent
    assert start["status"] == 408 and (b"connection", b"close") in start["headers"]
    error = json.loads(body["body"])["error"]
    assert error["code"] == "request_timeout" and error["type"] == "invalid_request_error"
    assert "0.2 seconds" in error["message"]


async def test_a_steady_body_then_a_long_wait_for_the_hang_up_is_not_cut() -> None:
    chunks = [(0.1, part(b"a", True)), (0.1, part(b"b", True)), (0.1, part(b"c", False))]
    chunks.append((0.5, {"type": "http.disconnect"}))  # longer than the deadline: after the body, no limit
    sent = await run(chunks, timeout_s=0.25)
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"abc"


def test_header_limits_and_the_raw_answer() -> None:
    assert headers_too_large(100, 32 * 1024, max_count=100, max_bytes=32 * 1024) is None
    exc = headers_too_large(101, 10, max_count=100, max_bytes=32 * 1024)
    assert exc is not None and "101 headers" in exc.message
    raw = raw_response(exc)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert f"content-length: {len(body)}".encode() in head and b"connection: close" in head
    parsed: dict[str, Any] = json.loads(body)
    assert parsed["error"]["code"] == "request_header_fields_too_large"
