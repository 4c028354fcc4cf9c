"""The Batch API with the official SDK (strict response validation, every JSON body checked against
OpenAI's spec by the transport) against a real `faceplate serve`: the worker the app starts in its
lifespan runs a chat batch to completed, and the output file holds the SDK-parseable answers;
a finished batch cannot be cancelled; another key sees nothing."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import openai
import pytest
from openai.types import Batch

from tests import spec
from tests.conformance import ValidatingTransport
from tests.e2e.conftest import E2E_KEY
from tests.e2e.keys_helpers import CHAT, chat_only, close_clients, sdk
from tests.serverproc import ServerProcess, start_server

__all__ = ["close_clients"]

OTHER_KEY = "sk-e2e-batches-other-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        [*chat_only(), "--api-key", E2E_KEY, "--api-key", OTHER_KEY],
        log_dir=tmp_path_factory.mktemp("batches"),
    )
    yield srv
    srv.stop()


def _wait(client: openai.OpenAI, batch_id: str, timeout: float = 120.0) -> Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.2)


def test_a_chat_batch_runs_to_completed_with_the_sdk(server: ServerProcess) -> None:
    transport = ValidatingTransport()
    client = sdk(server, E2E_KEY, transport=transport)
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": CHAT, "messages": [{"role": "user", "content": f"Say {i}"}], "max_tokens": 2},
        }
        for i in range(3)
    ]
    content = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    uploaded = client.files.create(file=("input.jsonl", io.BytesIO(content)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "validating"
    done = _wait(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts is not None and (done.request_counts.completed, done.request_counts.failed) == (3, 0)
    assert done.output_file_id is not None and done.error_file_id is None
    out = [json.loads(x) for x in client.files.content(done.output_file_id).content.splitlines()]
    assert sorted(x["custom_id"] for x in out) == ["r0", "r1", "r2"]
    for x in out:
        spec.validate(x["response"]["body"], "CreateChatCompletionResponse")
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(done.id)
    assert [b.id for b in client.batches.list(limit=10)] == [done.id]
    other = sdk(server, OTHER_KEY)
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(done.id)
    # every body above was checked against the spec on its way in (a violation raises in the call)
    assert any(isinstance(r, dict) and r.get("object") == "batch" for r in transport.responses)
