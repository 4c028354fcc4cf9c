"""Batch API refusals end to end, with the official SDK (strict response validation, every body
checked against OpenAI's spec by the transport) against a real `faceplate serve`:

- an input file that does not validate: ``batches.create`` answers 200 ``validating``, then the batch
  ends ``failed`` with ``errors.data`` naming each problem's code, 1-based ``line`` (blank lines
  counted, as an editor shows them) and ``param``; nothing runs (all or nothing);
- what ``batches.create``, ``retrieve``, ``cancel`` and ``list`` refuse at once: 400 or 404, each as
  the SDK's exception with the error body's type, param and code, and no batch made.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.e2e.batch_helpers import (
    CHAT_URL,
    chat_line,
    chat_lines,
    chat_server,
    counts,
    create_batch,
    engine_counters,
    jsonl,
    line,
    upload,
    wait_for,
)
from tests.e2e.conftest import E2E_KEY
from tests.e2e.keys_helpers import CHAT, close_clients, refusal, sdk
from tests.serverproc import ServerProcess, start_server

__all__ = ["close_clients"]  # the autouse fixture that closes every client `sdk` made

OTHER_KEY = "sk-e2e-batch-validation-other-0123456789"
MAX_REQUESTS = 50_000
EMBEDDINGS_URL = "/v1/embeddings"
NOT_JSON = "This line is not parseable as valid JSON."


def _too_many() -> bytes:
    """50,001 requests, each as small as a valid line can be (the body needs only its model)."""
    one = {"custom_id": "{i}", "method": "POST", "url": CHAT_URL, "body": {"model": CHAT}}
    head, tail = json.dumps(one, separators=(",", ":")).encode().split(b"{i}")
    return b"".join(head + str(i).encode() + tail + b"\n" for i in range(MAX_REQUESTS + 1))


# name -> (the input file, the errors it must fail with: (code, line, param))
CASES: dict[str, tuple[bytes, list[tuple[str, int | None, str | None]]]] = {
    "invalid_json_line": (
        jsonl([chat_line("r0")])
        + b"\n"  # line 2 is blank: skipped, but still counted
        + b'{"custom_id": "r1", "method": \n'
        + jsonl([{**chat_line("r2"), "method": "GET"}, chat_line("r3")]),
        [("invalid_json_line", 3, None), ("invalid_json_line", 4, "method")],
    ),
    "duplicate_custom_id": (
        jsonl([chat_line("r0"), chat_line("r1"), chat_line("r0")]),
        [("duplicate_custom_id", 3, "custom_id")],
    ),
    "url_mismatch": (
        jsonl([chat_line("r0"), line("r1", "/v1/completions", {"model": CHAT, "prompt": "hi"})]),
        [("url_mismatch", 2, "url")],
    ),
    "model_mismatch": (
        jsonl([chat_line("r0"), chat_line("r1"), chat_line("r2", model="another-model")]),
        [("model_mismatch", 3, "body.model")],
    ),
    "empty_file": (b"", [("empty_file", None, None)]),
    "empty_file-blank_lines": (b"\n   \n\r\n", [("empty_file", None, None)]),
    "too_many_tasks": (_too_many(), [("too_many_tasks", MAX_REQUESTS + 1, None)]),
    "too_many_tasks-embedding_inputs": (  # an /v1/embeddings batch: 50,000 inputs in all, whatever the lines
        jsonl(
            [
                line("e0", EMBEDDINGS_URL, {"model": "any-embedding-model", "input": ["a"] * 30_000}),
                line("e1", EMBEDDINGS_URL, {"model": "any-embedding-model", "input": ["b"] * 20_001}),
            ]
        ),
        [("too_many_tasks", 2, "body.input")],
    ),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        [*chat_server(), "--api-key", E2E_KEY, "--api-key", OTHER_KEY],
        log_dir=tmp_path_factory.mktemp("batch-validation"),
    )
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return sdk(server, E2E_KEY)


@pytest.fixture(scope="module")
def invalid(server: ServerProcess) -> Iterator[tuple[dict[str, str], int]]:
    """Every case's batch, created at once so the worker validates them while the tests wait; and
    the chat engine's ``submitted`` count before any of them."""
    before = engine_counters(server, E2E_KEY)["submitted"]
    client = sdk(server, E2E_KEY)
    ids = {
        name: create_batch(client, content, EMBEDDINGS_URL if name.endswith("embedding_inputs") else CHAT_URL).id
        for name, (content, _) in CASES.items()
    }
    yield ids, before
    client.close()


@pytest.mark.parametrize("case", list(CASES))
def test_an_invalid_input_file_fails_the_batch(case: str, invalid: tuple[dict[str, str], int], client: openai.OpenAI) -> None:
    ids, _ = invalid
    done = wait_for(client, ids[case], timeout=60)
    assert done.status == "failed", done
    assert done.failed_at is not None and done.in_progress_at is None and done.completed_at is None
    assert counts(done) == (0, 0, 0) and done.output_file_id is None and done.error_file_id is None
    assert done.errors is not None and done.errors.object == "list"
    got = [(e.code, e.line, e.param) for e in done.errors.data or []]
    assert got == CASES[case][1], done.errors
    assert all(e.message for e in done.errors.data or [])
    raw = json.loads(client.batches.with_raw_response.retrieve(done.id).content)  # as sent, not as the SDK reads it
    assert [sorted(e) for e in raw["errors"]["data"]] == [["code", "line", "message", "param"]] * len(got)
    if case == "invalid_json_line":
        assert (done.errors.data or [])[0].message == NOT_JSON
    if case == "duplicate_custom_id":
        assert "line 1" in str((done.errors.data or [])[0].message)


def test_a_failed_batch_ran_nothing(invalid: tuple[dict[str, str], int], client: openai.OpenAI, server: ServerProcess) -> None:
    """All or nothing: not one line of any invalid file reached the model, valid lines included."""
    ids, before = invalid
    assert all(wait_for(client, batch_id, timeout=60).status == "failed" for batch_id in ids.values())
    assert engine_counters(server, E2E_KEY)["submitted"] == before


def _refused(exc_type: type[openai.APIStatusError], call: Any, **kw: Any) -> tuple[int, str, str | None, str | None, str]:
    with pytest.raises(exc_type) as info:
        call(**kw)
    return refusal(info.value)


def test_create_refusals(client: openai.OpenAI, server: ServerProcess) -> None:
    before = [b.id for b in client.batches.list(limit=100)]
    good = upload(client, chat_lines(1)).id
    theirs = upload(sdk(server, OTHER_KEY), chat_lines(1)).id
    notes = client.files.create(file=("notes.jsonl", jsonl(chat_lines(1))), purpose="user_data").id
    ok: dict[str, Any] = {"input_file_id": good, "endpoint": CHAT_URL, "completion_window": "24h"}
    bad = "invalid_request_error"

    def create(**changes: Any) -> tuple[int, str, str | None, str | None, str]:
        return _refused(openai.BadRequestError, client.batches.create, **{**ok, **changes})

    assert create(input_file_id="file-doesnotexist") == (
        400,
        bad,
        "input_file_id",
        None,
        "Could not find file with ID 'file-doesnotexist'.",
    )
    assert create(input_file_id=theirs) == (400, bad, "input_file_id", None, f"Could not find file with ID '{theirs}'.")
    assert create(input_file_id=notes) == (
        400,
        bad,
        "input_file_id",
        None,
        f"The file '{notes}' has purpose 'user_data'; a batch's input file must have purpose 'batch'.",
    )
    status, kind, param, code, message = create(endpoint="/v1/moderations")
    assert (status, kind, param, code) == (400, bad, "endpoint", None)
    assert message.startswith("Invalid value for 'endpoint': '/v1/moderations' is not supported"), message
    status, kind, param, code, message = create(completion_window="48h")
    assert (status, kind, param, code) == (400, bad, "completion_window", None)
    assert "'48h'" in message, message
    status, kind, param, code, message = create(metadata={f"k{i}": "v" for i in range(17)})
    assert (status, kind, param, code) == (400, bad, "metadata", None)
    assert "at most 16 properties" in message, message
    assert create(metadata={f"k{i}": "v" for i in range(16)}, input_file_id="file-doesnotexist")[2] == "input_file_id"
    status, kind, param, code, _ = create(output_expires_after={"anchor": "created_at", "seconds": 60})
    assert (status, kind, param, code) == (400, bad, "output_expires_after.seconds", None)
    assert [b.id for b in client.batches.list(limit=100)] == before  # nothing was made


def test_unknown_batches_and_bad_paging(client: openai.OpenAI) -> None:
    missing = "batch_00000000000000000000000000000000"
    for call in (client.batches.retrieve, client.batches.cancel):
        assert _refused(openai.NotFoundError, call, batch_id=missing) == (
            404,
            "invalid_request_error",
            None,
            None,
            f"No batch found with id '{missing}'.",
        )
    for limit in (0, 101):
        assert _refused(openai.BadRequestError, client.batches.list, limit=limit)[:4] == (
            400,
            "invalid_request_error",
            "limit",
            None,
        )
