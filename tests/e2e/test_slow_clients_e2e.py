"""Slow and broken clients against a real `faceplate serve`, over raw sockets: headers sent a byte
at a time (slowloris), a connection that never sends, a body that stalls, bytes that are not
HTTP and headers past the limits each get OpenAI's error envelope (or a plain close) within the
configured time, while a normal request on another connection is answered meanwhile."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import E2E_KEY as KEY
from tests.e2e.hostile_helpers import assert_healthy, chat, post, strict_json
from tests.e2e.keys_helpers import chat_only
from tests.serverproc import ServerProcess, start_server

HEADER_S = 1.5
BODY_S = 1.5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"FACEPLATE_HEADER_TIMEOUT_S": str(HEADER_S), "FACEPLATE_BODY_TIMEOUT_S": str(BODY_S)}
    srv = start_server([*chat_only(), "--api-key", KEY, "--threads", "1"], env=env, log_dir=tmp_path_factory.mktemp("slow"))
    yield srv
    srv.stop()


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def envelope(raw: bytes, status: int) -> dict[str, object]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), lines[0]
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    error = strict_json(body.decode())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def request_head(length: int) -> bytes:
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


class Dripper(threading.Thread):
    """Sends the head of a request one byte every 0.2 s until the server answers or closes."""

    def __init__(self, s: socket.socket, data: bytes) -> None:
        super().__init__(daemon=True)
        self.s, self.data = s, data

    def run(self) -> None:
        for i in range(len(self.data)):
            try:
                self.s.send(self.data[i : i + 1])
            except OSError:
                return
            time.sleep(0.2)


def test_headers_sent_a_byte_at_a_time_get_a_408_while_others_are_served(server: ServerProcess) -> None:
    with connect(server) as s:
        began = time.monotonic()
        Dripper(s, request_head(2) + b"{}").start()
        # meanwhile, on another connection, a normal request is answered
        r = post(server, "/chat/completions", chat(max_tokens=2))
        assert r.status_code == 200, r.text
        raw = read_all(s)
        took = time.monotonic() - began
    error = envelope(raw, 408)
    assert error["code"] == "request_timeout" and error["type"] == "invalid_request_error"
    assert f"{HEADER_S:g} seconds" in str(error["message"])
    assert HEADER_S - 0.1 <= took < HEADER_S + 5, took
    assert_healthy(server)


def test_a_connection_that_never_sends_is_closed_at_the_header_deadline(server: ServerProcess) -> None:
    with connect(server) as s:
        began = time.monotonic()
        assert read_all(s) == b""
        took = time.monotonic() - began
    assert HEADER_S - 0.1 <= took < HEADER_S + 5, took


def test_a_stalled_body_gets_a_408_and_the_connection_closes(server: ServerProcess) -> None:
    body = json.dumps(chat(max_tokens=1)).encode()
    with connect(server) as s:
        s.sendall(request_head(len(body)) + body[:10])
        began = time.monotonic()
        raw = read_all(s)
        took = time.monotonic() - began
    error = envelope(raw, 408)
    assert error["code"] == "request_timeout" and "body stalled" in str(error["message"])
    assert BODY_S - 0.1 <= took < BODY_S + 5, took
    assert_healthy(server)


def test_a_body_sent_slowly_but_steadily_is_served(server: ServerProcess) -> None:
    body = json.dumps(chat(max_tokens=1)).encode()
    with connect(server) as s:
        s.sendall(request_head(len(body)))
        for i in range(0, len(body), len(body) // 4 + 1):  # ~4 chunks, 1 s apart: past BODY_S in all
            time.sleep(1.0)
            s.sendall(body[i : i + len(body) // 4 + 1])
        raw = read_all(s)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]


def test_bytes_that_are_not_http_get_a_400_envelope(server: ServerProcess) -> None:
    with connect(server) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
        error = envelope(read_all(s), 400)
    assert error["type"] == "invalid_request_error" and "not a well-formed HTTP/1.1 request" in str(error["message"])
    assert_healthy(server)


@pytest.mark.parametrize(
    ("extra", "what"),
    [
        ("".join(f"x-h{i}: v\r\n" for i in range(10_000)), "101 headers"),
        ("x-big: " + "a" * 1_000_000 + "\r\n", "bytes of headers"),
    ],
)
def test_headers_past_the_limits_are_refused_while_they_arrive(server: ServerProcess, extra: str, what: str) -> None:
    head = f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()
    with connect(server) as s:
        with contextlib.suppress(OSError):  # the server answers before reading it all, and drops the rest
            s.sendall(head)
        error = envelope(read_all(s), 431)
    assert error["code"] == "request_header_fields_too_large" and what in str(error["message"])
    assert_healthy(server)
