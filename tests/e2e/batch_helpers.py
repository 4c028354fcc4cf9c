"""Shared by the Batch API end-to-end tests: input lines and JSONL files, upload and create with the
SDK, waiting on a batch, reading its output and error files, and the engines' counters from /health."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import httpx2
import openai
import sqlalchemy
from openai.types import Batch, FileObject

from tests import spec
from tests.e2e.keys_helpers import CHAT, chat_only
from tests.serverproc import ServerProcess

CHAT_URL = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")
LONG = "Write a very long story about a dragon, a knight and a princess, with many chapters."


def chat_server() -> list[str]:
    """``serve`` arguments for the batch tests: the bundled chat model only, four sequences, one
    thread. One thread, because a batch test's server shares two cores with the test itself, the
    worker's store calls and, in some tests, a second server; llama.cpp's threads slow down badly
    when they must wait for a core."""
    return [*chat_only(), "--threads", "1"]


def line(custom_id: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def chat_line(
    custom_id: str, content: str = "Say hi.", *, max_tokens: int = 2, model: str = CHAT, **extra: Any
) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **extra}
    return line(custom_id, CHAT_URL, body)


def chat_lines(n: int, *, max_tokens: int = 2, content: str = "Say {i}.", prefix: str = "r") -> list[dict[str, Any]]:
    return [chat_line(f"{prefix}{i}", content.format(i=i), max_tokens=max_tokens) for i in range(n)]


def jsonl(lines: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(x, separators=(",", ":")).encode() + b"\n" for x in lines)


def upload(client: openai.OpenAI, content: bytes | list[dict[str, Any]], filename: str = "input.jsonl") -> FileObject:
    data = content if isinstance(content, bytes) else jsonl(content)
    return client.files.create(file=(filename, io.BytesIO(data)), purpose="batch")


def create_batch(client: openai.OpenAI, content: bytes | list[dict[str, Any]], endpoint: str = CHAT_URL, **extra: Any) -> Batch:
    """Upload ``content`` (lines or raw JSONL bytes) and create a batch on it: ``validating``."""
    uploaded = upload(client, content)
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        **extra,
    )
    assert batch.status == "validating" and batch.input_file_id == uploaded.id, batch
    return batch


def wait_until(client: openai.OpenAI, batch_id: str, done: Callable[[Batch], bool], *, timeout: float = 120.0) -> Batch:
    """Poll the batch (every 50 ms) until ``done(batch)``; fail if it ends (terminal) without that."""
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if done(batch):
            return batch
        assert batch.status not in TERMINAL, f"batch ended {batch.status} before the awaited state: {batch}"
        assert time.monotonic() < deadline, f"batch still {batch.status} after {timeout}s: {batch.request_counts}"
        time.sleep(0.05)


def wait_for(client: openai.OpenAI, batch_id: str, *, timeout: float = 120.0) -> Batch:
    """The batch once it is terminal (completed, failed, expired or cancelled)."""
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in TERMINAL:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status} after {timeout}s: {batch.request_counts}"
        time.sleep(0.1)


def counts(batch: Batch) -> tuple[int, int, int]:
    """(total, completed, failed)."""
    assert batch.request_counts is not None, batch
    return batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed


def some_done(batch: Batch) -> bool:
    """Some lines are done and some are not: the moment to cancel, kill or expire a batch mid-run."""
    total, completed, failed = counts(batch)
    return batch.status == "in_progress" and 0 < completed + failed < total


def read_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    """An output or error file's lines ([] for None). The file is the batch owner's, purpose
    batch_output, its size the bytes served; every line has the BatchRequestOutput shape."""
    if file_id is None:
        return []
    meta = client.files.retrieve(file_id)
    assert meta.purpose == "batch_output" and meta.filename.endswith(".jsonl"), meta
    raw = client.files.content(file_id).content
    assert meta.bytes == len(raw) and raw.endswith(b"\n")
    lines = [json.loads(x) for x in raw.splitlines()]
    for x in lines:
        assert set(x) == {"id", "custom_id", "response", "error"}, x
        assert x["id"].startswith("batch_req_") and isinstance(x["custom_id"], str), x
    assert len({x["id"] for x in lines}) == len(lines)
    return lines


def by_custom_id(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The lines keyed by custom_id; fails if any custom_id appears more than once."""
    twice = [cid for cid, n in Counter(x["custom_id"] for x in lines).items() if n > 1]
    assert not twice, f"custom_ids written more than once: {twice}"
    return {x["custom_id"]: x for x in lines}


def successes(lines: list[dict[str, Any]], schema: str) -> dict[str, dict[str, Any]]:
    """The output file's lines by custom_id, each a 200 whose body validates as ``schema``: the bodies."""
    out: dict[str, dict[str, Any]] = {}
    for cid, x in by_custom_id(lines).items():
        response = x["response"]
        assert x["error"] is None and response["status_code"] == 200, x
        assert response["request_id"].startswith("req_"), x
        spec.validate(response["body"], schema)
        out[cid] = response["body"]
    return out


def unrun(lines: list[dict[str, Any]], code: str) -> set[str]:
    """The custom_ids of error-file lines that never ran (response null, error.code ``code``);
    fails on any other kind of line."""
    for x in lines:
        assert x["response"] is None and x["error"]["code"] == code and x["error"]["message"], x
    return set(by_custom_id(lines))


def usage_sums(bodies: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """(prompt, completion) tokens summed over chat or completion bodies."""
    prompt = completion = 0
    for body in bodies:
        prompt += body["usage"]["prompt_tokens"]
        completion += body["usage"]["completion_tokens"]
    return prompt, completion


def assert_usage(batch: Batch, bodies: Iterable[dict[str, Any]]) -> None:
    """The batch's usage is the sum of its output bodies' usage."""
    prompt, completion = usage_sums(bodies)
    assert batch.usage is not None, batch
    assert (batch.usage.input_tokens, batch.usage.output_tokens, batch.usage.total_tokens) == (
        prompt,
        completion,
        prompt + completion,
    )


def engine_counters(server: ServerProcess, key: str, model: str = CHAT) -> dict[str, Any]:
    """One model's engine counters (``submitted``, ``completed``, ...) from GET /health with a key."""
    r = httpx2.get(f"{server.root}/health", headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json()["models"][model])


def _store(database_url: str, sql: str, batch_id: str) -> list[Any]:
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sqlalchemy.text(sql), {"id": batch_id}).all())
    finally:
        engine.dispose()


def lines_by_status(database_url: str, batch_id: str) -> tuple[dict[str, int], int]:
    """The batch's request lines counted by status (pending, running, done), and how many runners
    (server processes) hold its running lines, read from the store itself: what a frozen or killed
    server left there, which no API shows."""
    rows = _store(database_url, "SELECT status, count(*) FROM batch_requests WHERE batch_id = :id GROUP BY status", batch_id)
    running = "SELECT count(DISTINCT lease_owner) FROM batch_requests WHERE batch_id = :id AND status = 'running'"
    return {str(status): int(n) for status, n in rows}, int(_store(database_url, running, batch_id)[0][0])


def stage_state(database_url: str, batch_id: str) -> tuple[str, bool, int]:
    """The batch row as the store holds it: (status, whether a runner holds its stage lease, its lines stored)."""
    [(status, owner)] = _store(database_url, "SELECT status, lease_owner FROM batches WHERE id = :id", batch_id)
    lines = _store(database_url, "SELECT count(*) FROM batch_requests WHERE batch_id = :id", batch_id)[0][0]
    return str(status), owner is not None, int(lines)


def kill_when(server: ServerProcess, ready: Callable[[], tuple[bool, Any]], *, timeout: float = 120.0, poll: float = 0.02) -> Any:
    """SIGKILL ``server`` at a moment when ``ready()`` (which reads the store) says so; returns what it
    read. The process is frozen (SIGSTOP) while ``ready`` reads, so what it shows is exactly what the
    kill leaves; if that is not the moment, the process thaws (SIGCONT) and the check repeats after
    ``poll`` seconds (0: at once, to catch a moment of a few milliseconds)."""
    deadline = time.monotonic() + timeout
    pid = server.proc.pid
    while True:
        os.kill(pid, signal.SIGSTOP)
        try:
            now, seen = ready()
        except BaseException:
            os.kill(pid, signal.SIGCONT)
            raise
        if now:
            server.proc.kill()
            server.proc.wait()
            return seen
        os.kill(pid, signal.SIGCONT)
        assert time.monotonic() < deadline, f"the moment to kill never came: {seen}"
        time.sleep(poll)


def kill_mid_batch(
    server: ServerProcess, database_url: str, batch_id: str, *, runners: int = 1, timeout: float = 120.0
) -> dict[str, int]:
    """SIGKILL ``server`` (see ``kill_when``) at a moment when some of the batch's lines are done and
    ``runners`` server processes are running others (with two servers on one store, ``runners=2``
    means the killed one holds running lines too). Returns the lines by status at the kill."""

    def ready() -> tuple[bool, dict[str, int]]:
        left, running_on = lines_by_status(database_url, batch_id)
        assert left.get("pending", 0) + left.get("running", 0) > 0 or not left, f"the batch ran to its end first: {left}"
        return left.get("done", 0) > 0 and running_on >= runners, left

    return dict(kill_when(server, ready, timeout=timeout))
