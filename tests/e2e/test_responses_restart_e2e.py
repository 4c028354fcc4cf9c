"""Stored responses, chains and conversations survive a server killed with SIGKILL; what was running ends failed.

A server on a fixed data dir makes a stored response, a two-turn chain, a conversation with
items, and a background response that is still generating; the process is then killed (no
shutdown hook runs) and a new one is started on the same data dir.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from faceplate.service.stored_responses import STALE_S
from tests.conformance import ValidatingTransport
from tests.e2e.keys_helpers import CHAT, chat_only
from tests.serverproc import ServerProcess, start_server

KEY = "sk-e2e-restart-0123456789"
LONG_STORY = "Write a very long story about a dragon, a knight and a princess, with many chapters."


class Servers:
    """Servers on one data dir, each stopped at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {"FACEPLATE_DATA_DIR": str(tmp / "data")}
        self.started: list[ServerProcess] = []
        self.clients: list[openai.OpenAI] = []

    def start(self) -> ServerProcess:
        srv = start_server([*chat_only(), "--api-key", KEY], env=self.env, log_dir=self.tmp)
        self.started.append(srv)
        return srv

    def client(self, srv: ServerProcess) -> openai.OpenAI:
        c = openai.OpenAI(
            base_url=srv.base_url,
            api_key=KEY,
            http_client=httpx2.Client(transport=ValidatingTransport(), timeout=120),
            max_retries=0,
            _strict_response_validation=True,
        )
        self.clients.append(c)
        return c

    def close(self) -> None:
        for c in self.clients:
            c.close()
        for srv in self.started:
            srv.stop()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    s = Servers(tmp_path)
    yield s
    s.close()


def raw(srv: ServerProcess, path: str, **params: Any) -> Any:
    """A GET's JSON body exactly as the server sent it."""
    r = httpx2.get(f"{srv.base_url}{path}", params=params, headers={"authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_state_survives_sigkill_and_running_responses_end_failed(servers: Servers) -> None:
    srv = servers.start()
    c = servers.client(srv)
    stored = c.responses.create(model=CHAT, input="Say hi.", max_output_tokens=16, temperature=0, metadata={"kept": "yes"})
    one = c.responses.create(model=CHAT, input="Tell me about Paris.", max_output_tokens=16, temperature=0)
    two = c.responses.create(
        model=CHAT, previous_response_id=one.id, input="And about Rome?", max_output_tokens=16, temperature=0
    )
    conv = c.conversations.create(
        items=[{"type": "message", "role": "user", "content": "My name is Ada."}], metadata={"topic": "names"}
    )
    turn = c.responses.create(model=CHAT, conversation=conv.id, input="Hello!", max_output_tokens=16, temperature=0)
    c.conversations.items.create(conv.id, items=[{"type": "message", "role": "user", "content": "Remember me."}])
    running = c.responses.create(model=CHAT, input=LONG_STORY, max_output_tokens=1000, temperature=0, background=True)
    deadline = time.monotonic() + 30
    while c.responses.retrieve(running.id).status == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # a few tokens in

    before = {
        "stored": raw(srv, f"/responses/{stored.id}"),
        "two": raw(srv, f"/responses/{two.id}"),
        "turn": raw(srv, f"/responses/{turn.id}"),
        "inputs": raw(srv, f"/responses/{two.id}/input_items", order="asc"),
        "conv": raw(srv, f"/conversations/{conv.id}"),
        "items": raw(srv, f"/conversations/{conv.id}/items", order="asc"),
    }
    assert raw(srv, f"/responses/{running.id}")["status"] == "in_progress"

    srv.proc.kill()  # SIGKILL: no shutdown hook, the running response is never finished
    srv.proc.wait()

    srv = servers.start()
    c = servers.client(srv)
    after = {
        "stored": raw(srv, f"/responses/{stored.id}"),
        "two": raw(srv, f"/responses/{two.id}"),
        "turn": raw(srv, f"/responses/{turn.id}"),
        "inputs": raw(srv, f"/responses/{two.id}/input_items", order="asc"),
        "conv": raw(srv, f"/conversations/{conv.id}"),
        "items": raw(srv, f"/conversations/{conv.id}/items", order="asc"),
    }
    for name, obj in before.items():
        assert after[name] == obj, name  # identical JSON

    # what was running can never finish now: once its process has been quiet for STALE_S, failed, with an
    # error from OpenAI's enum (a live replica's responses are left alone: see the tests below)
    deadline = time.monotonic() + STALE_S + 20
    while (failed := c.responses.retrieve(running.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline, "a response of a killed process is still in_progress"
        time.sleep(0.5)
    assert failed.status == "failed" and failed.background is True
    assert failed.error is not None and failed.error.code == "server_error" and failed.error.message
    assert c.responses.cancel(running.id).status == "failed"  # nothing left to cancel

    # the chain continues: the prompt holds both stored turns, not only the new input
    three = c.responses.create(
        model=CHAT, previous_response_id=two.id, input="And about Madrid?", max_output_tokens=16, temperature=0
    )
    alone = c.responses.input_tokens.count(model=CHAT, input="And about Madrid?")
    counted = c.responses.input_tokens.count(model=CHAT, previous_response_id=two.id, input="And about Madrid?")
    assert three.status in ("completed", "incomplete") and three.usage is not None and two.usage is not None
    assert three.usage.input_tokens == counted.input_tokens > alone.input_tokens
    assert three.usage.input_tokens > two.usage.input_tokens + two.usage.output_tokens  # turn two, and one within it

    # the conversation goes on from its stored items
    more = c.responses.create(model=CHAT, conversation=conv.id, input="What is my name?", max_output_tokens=16, temperature=0)
    assert more.usage is not None and turn.usage is not None and more.usage.input_tokens > turn.usage.input_tokens
    items = list(c.conversations.items.list(conv.id, order="asc"))
    assert [i.id for i in items[:-2]] == [i["id"] for i in before["items"]["data"]]
    assert items[-1].id == more.output[0].id


def test_a_replica_starting_leaves_another_replicas_running_response_alone(database_url: str, tmp_path: Path) -> None:
    """Two replicas on one PostgreSQL store: b starting must not end the response a is generating."""
    servers = Servers(tmp_path)
    args = [*chat_only(), "--api-key", KEY, "--database-url", database_url]
    try:
        a = start_server(args, log_dir=tmp_path)
        servers.started.append(a)
        ca = servers.client(a)
        running = ca.responses.create(model=CHAT, input=LONG_STORY, max_output_tokens=1000, temperature=0, background=True)
        deadline = time.monotonic() + 30
        while ca.responses.retrieve(running.id).status == "queued":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        b = start_server(args, log_dir=tmp_path)
        servers.started.append(b)
        seen_on_b = servers.client(b).responses.retrieve(running.id).status
        still_running_on_a = ca.responses.retrieve(running.id).status
        ended = ca.responses.cancel(running.id).status
        assert still_running_on_a == "in_progress" and ended == "cancelled"
        assert seen_on_b in ("queued", "in_progress"), f"replica b reports {seen_on_b!r} for a response replica a is running"
    finally:
        servers.close()


def test_cancel_through_another_replica_stops_the_response(database_url: str, tmp_path: Path) -> None:
    """Two replicas on one PostgreSQL store, both up: a background response on a is cancelled through b."""
    servers = Servers(tmp_path)
    args = [*chat_only(), "--api-key", KEY, "--database-url", database_url]
    try:
        a, b = start_server(args, log_dir=tmp_path), start_server(args, log_dir=tmp_path)
        servers.started += [a, b]
        ca, cb = servers.client(a), servers.client(b)
        running = ca.responses.create(model=CHAT, input=LONG_STORY, max_output_tokens=1000, temperature=0, background=True)
        deadline = time.monotonic() + 30
        while ca.responses.retrieve(running.id).status == "queued":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        through_b = cb.responses.cancel(running.id).status
        time.sleep(0.5)
        on_a = ca.responses.retrieve(running.id).status
        if on_a == "in_progress":
            ca.responses.cancel(running.id)  # clean up: it would generate for a long while
        assert (through_b, on_a) == ("cancelled", "cancelled")
    finally:
        servers.close()
