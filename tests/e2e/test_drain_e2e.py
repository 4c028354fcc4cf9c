"""SIGTERM drains a real `faceplate serve` (bundled chat model): streams in flight finish normally
within the grace period while readiness is 503 and new requests get 503 with Retry-After, and the
process exits 0; past the grace period, the streams still running end with an error event and
[DONE] before it exits 0."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from tests.e2e.keys_helpers import CHAT, chat_only
from tests.serverproc import ServerProcess, start_server

KEY = "sk-e2e-drain-0123456789"


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        srv = start_server([*chat_only(), "--api-key", KEY, "--threads", "1"], env=env, log_dir=tmp_path)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


class Stream(threading.Thread):
    """One raw streamed chat completion: every SSE data line, and when the first content came."""

    def __init__(self, srv: ServerProcess, i: int, max_tokens: int) -> None:
        super().__init__(daemon=True)
        self.srv, self.i, self.max_tokens = srv, i, max_tokens
        self.data: list[str] = []
        self.first = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        body = {
            "model": CHAT,
            "messages": [{"role": "user", "content": f"Tell story number {self.i} about a lighthouse."}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "stream": True,
        }
        headers = {"authorization": f"Bearer {KEY}"}
        try:
            with httpx2.stream("POST", f"{self.srv.base_url}/chat/completions", json=body, headers=headers, timeout=120) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.data.append(line[6:])
                        if '"content"' in line and '"content":""' not in line:
                            self.first.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.first.set()

    def chunks(self) -> list[dict[str, Any]]:
        assert self.data and self.data[-1] == "[DONE]", self.data[-3:]
        return [json.loads(d) for d in self.data[:-1]]


def start_streams(srv: ServerProcess, n: int, max_tokens: int) -> list[Stream]:
    streams = [Stream(srv, i, max_tokens) for i in range(n)]
    for s in streams:
        s.start()
    for s in streams:
        assert s.first.wait(120) and s.error is None, s.error
    return streams


def test_sigterm_lets_streams_in_flight_finish_and_refuses_new_work(launch: Any) -> None:
    srv = launch()
    streams = start_streams(srv, 4, max_tokens=96)
    srv.proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    time.sleep(0.3)
    ready = httpx2.get(f"{srv.root}/health/ready", timeout=10)
    assert ready.status_code == 503 and ready.json() == {"status": "draining"}
    client = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    client.close()
    assert refused.value.status_code == 503 and refused.value.response.headers["retry-after"] == "1"
    assert refused.value.code == "server_shutting_down"
    for s in streams:
        s.join(60)
        assert s.error is None, s.error
        chunks = s.chunks()
        assert all("error" not in c for c in chunks)
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] in ("stop", "length")
    assert srv.proc.wait(40) == 0
    assert time.monotonic() - sent < 30, "the drain took longer than its grace period"
    assert "drained in" in srv.log()


def test_streams_still_running_at_the_end_of_the_grace_get_an_error_event_and_done(launch: Any) -> None:
    srv = launch(FACEPLATE_DRAIN_GRACE_S="1")
    streams = start_streams(srv, 2, max_tokens=4000)
    srv.proc.send_signal(signal.SIGTERM)
    for s in streams:
        s.join(60)
        assert s.error is None, s.error
        *deltas, last = s.chunks()
        assert deltas and all("error" not in c for c in deltas)
        assert last["error"]["code"] == "server_shutting_down" and last["error"]["type"] == "server_error"
    assert srv.proc.wait(30) == 0
    assert "drain grace of 1s over" in srv.log()
