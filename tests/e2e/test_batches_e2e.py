"""The Batch API with the official SDK (strict response validation, every JSON body checked against
OpenAI's spec by the transport) against a real `faceplate serve`, driven by the worker the app
starts in its lifespan: a chat batch to completed with SDK-parseable answers; a line with a bad
body fails alone (its 400 in the error file, the same body the endpoint itself answers), and a
batch whose every line fails completes with no output file; a cancel
mid-run keeps what ran and reports the rest as ``batch_cancelled``; a batch past its window (a server
with a short ``FACEPLATE_BATCH_WINDOW_S``) ends ``expired``, done lines kept, the rest
``batch_expired``; a finished batch cannot be cancelled; another key sees nothing; the list pages
newest first."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai.types.chat import ChatCompletion

from tests.conformance import ValidatingTransport
from tests.e2e.batch_helpers import (
    LONG,
    assert_usage,
    by_custom_id,
    chat_line,
    chat_lines,
    chat_server,
    counts,
    create_batch,
    read_lines,
    some_done,
    successes,
    unrun,
    wait_for,
    wait_until,
)
from tests.e2e.conftest import E2E_KEY
from tests.e2e.keys_helpers import close_clients, refusal, sdk
from tests.serverproc import ServerProcess, start_server

__all__ = ["close_clients"]  # the autouse fixture that closes every client `sdk` made

OTHER_KEY = "sk-e2e-batches-other-0123456789"
WINDOW_S = 6  # the short-window server's batches expire this long after they are created


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        [*chat_server(), "--api-key", E2E_KEY, "--api-key", OTHER_KEY],
        log_dir=tmp_path_factory.mktemp("batches"),
    )
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return sdk(server, E2E_KEY)


def test_a_chat_batch_runs_to_completed_with_the_sdk(server: ServerProcess) -> None:
    transport = ValidatingTransport()
    client = sdk(server, E2E_KEY, transport=transport)
    batch = create_batch(client, chat_lines(3), metadata={"job": "e2e"})
    assert batch.endpoint == "/v1/chat/completions" and batch.metadata == {"job": "e2e"}
    done = wait_for(client, batch.id)
    assert done.status == "completed", done
    assert counts(done) == (3, 3, 0) and done.model is not None
    assert done.in_progress_at is not None and done.finalizing_at is not None and done.completed_at is not None
    assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at
    assert done.output_file_id is not None and done.error_file_id is None and done.errors is None
    bodies = successes(read_lines(client, done.output_file_id), "CreateChatCompletionResponse")
    assert sorted(bodies) == ["r0", "r1", "r2"]
    for body in bodies.values():
        parsed = ChatCompletion.model_validate(body)
        assert parsed.usage is not None and 1 <= parsed.usage.completion_tokens <= 2
    assert_usage(done, bodies.values())
    with pytest.raises(openai.BadRequestError) as info:
        client.batches.cancel(done.id)
    assert refusal(info.value) == (400, "invalid_request_error", None, None, "Cannot cancel a batch with status 'completed'.")
    assert done.id in [b.id for b in client.batches.list(limit=10)]
    other = sdk(server, OTHER_KEY)
    for call in (other.batches.retrieve, other.batches.cancel):
        with pytest.raises(openai.NotFoundError) as missing:
            call(done.id)
        assert refusal(missing.value) == (404, "invalid_request_error", None, None, f"No batch found with id '{done.id}'.")
    assert done.id not in [b.id for b in other.batches.list()]
    with pytest.raises(openai.NotFoundError):
        other.files.content(done.output_file_id)  # the output file is the owner's too
    # every body above was checked against the spec on its way in (a violation raises in the call)
    assert any(isinstance(r, dict) and r.get("object") == "batch" for r in transport.responses)


def test_a_bad_body_fails_only_its_line(client: openai.OpenAI) -> None:
    bad = chat_line("bad-temperature", temperature=3)
    lines = [chat_line("ok0"), bad, chat_line("streamed", stream=True), chat_line("ok1")]
    expiry = {"anchor": "created_at", "seconds": 3600}
    done = wait_for(client, create_batch(client, lines, output_expires_after=expiry).id)
    assert done.status == "completed" and counts(done) == (4, 2, 2), done
    for file_id in (done.output_file_id, done.error_file_id):
        made = client.files.retrieve(file_id)  # type: ignore[arg-type]
        assert made.expires_at == made.created_at + 3600, made
    assert sorted(successes(read_lines(client, done.output_file_id), "CreateChatCompletionResponse")) == ["ok0", "ok1"]
    errors = by_custom_id(read_lines(client, done.error_file_id))
    assert sorted(errors) == ["bad-temperature", "streamed"]
    for x in errors.values():
        assert x["error"] is None and x["response"]["status_code"] == 400, x
        assert x["response"]["request_id"].startswith("req_")
    # the line's error is exactly what the endpoint answers for the same body
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**bad["body"])
    assert errors["bad-temperature"]["response"]["body"] == {"error": info.value.body}
    assert info.value.param == "temperature" and info.value.type == "invalid_request_error"
    streamed = errors["streamed"]["response"]["body"]["error"]
    assert (streamed["param"], streamed["type"]) == ("stream", "invalid_request_error"), streamed


def test_a_batch_whose_every_line_fails_completes_without_an_output_file(client: openai.OpenAI) -> None:
    done = wait_for(client, create_batch(client, [chat_line("a", max_tokens=0), chat_line("b", n=99)]).id)
    assert done.status == "completed" and counts(done) == (2, 0, 2), done
    assert done.output_file_id is None and done.error_file_id is not None
    errors = by_custom_id(read_lines(client, done.error_file_id))
    assert {cid: x["response"]["body"]["error"]["param"] for cid, x in errors.items()} == {"a": "max_tokens", "b": "n"}
    assert done.usage is not None and done.usage.total_tokens == 0


def test_cancel_mid_run_keeps_what_ran_and_reports_the_rest(client: openai.OpenAI) -> None:
    n = 30
    batch = create_batch(client, chat_lines(n, max_tokens=8, content=LONG + " ({i})"))
    running = wait_until(client, batch.id, some_done)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None, cancelling
    done = wait_for(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None and done.completed_at is None, done
    total, completed, failed = counts(done)
    assert total == n and completed + failed == n
    assert counts(running)[1] <= completed < n  # what had finished is kept; not everything ran
    bodies = successes(read_lines(client, done.output_file_id), "CreateChatCompletionResponse")
    cancelled = unrun(read_lines(client, done.error_file_id), "batch_cancelled")
    assert len(bodies) == completed and len(cancelled) == failed
    assert set(bodies) | cancelled == {f"r{i}" for i in range(n)} and not set(bodies) & cancelled
    assert_usage(done, bodies.values())
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)


def test_cancel_while_validating(client: openai.OpenAI) -> None:
    # 20,000 lines take the worker far longer to read than the cancel takes to arrive
    batch = create_batch(client, chat_lines(20_000))
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.in_progress_at is None, cancelling
    done = wait_for(client, batch.id)
    assert done.status == "cancelled" and done.in_progress_at is None, done
    assert counts(done) == (0, 0, 0) and done.output_file_id is None and done.error_file_id is None


@pytest.fixture(scope="module")
def short_window(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Batches expire WINDOW_S after creation; one line at a time, so a big batch cannot finish in time."""
    srv = start_server(
        [*chat_server(), "--api-key", E2E_KEY],
        env={"FACEPLATE_BATCH_WINDOW_S": str(WINDOW_S), "FACEPLATE_BATCH_CONCURRENCY": "1"},
        log_dir=tmp_path_factory.mktemp("batches-window"),
    )
    yield srv
    srv.stop()


def test_a_batch_past_its_window_expires_keeping_what_ran(short_window: ServerProcess) -> None:
    client = sdk(short_window, E2E_KEY)
    # one line at a time, each pass of the worker 0.2 s apart: at most ~30 lines can run in the window
    n = 100
    batch = create_batch(client, chat_lines(n, max_tokens=1))
    assert batch.expires_at == batch.created_at + WINDOW_S
    done = wait_for(client, batch.id, timeout=60)
    assert done.status == "expired", done
    assert done.expired_at is not None and done.expires_at is not None
    assert done.expires_at <= done.expired_at <= done.expires_at + 10 and done.completed_at is None
    total, completed, failed = counts(done)
    assert total == n and completed + failed == n and 0 < completed < n, done
    bodies = successes(read_lines(client, done.output_file_id), "CreateChatCompletionResponse")
    expired = unrun(read_lines(client, done.error_file_id), "batch_expired")
    assert len(bodies) == completed and len(expired) == failed
    assert set(bodies) | expired == {f"r{i}" for i in range(n)} and not set(bodies) & expired
    assert_usage(done, bodies.values())
    # lines run in order, one at a time: what ran is a prefix of the file
    assert set(bodies) == {f"r{i}" for i in range(completed)}


def test_list_auto_pages_newest_first(client: openai.OpenAI) -> None:
    made = [create_batch(client, chat_lines(1)).id for _ in range(3)]
    for batch_id in made:
        client.batches.cancel(batch_id)  # nothing needs to run
    everything = client.batches.list(limit=100)
    ids = [b.id for b in everything.data]
    assert not everything.has_more and ids[:3] == made[::-1]
    assert [b.id for b in client.batches.list(limit=2)] == ids  # auto-paging follows after=last_id
    created = [b.created_at for b in everything.data]
    assert created == sorted(created, reverse=True)
    page = client.batches.list(limit=2, after=ids[0])
    assert [b.id for b in page.data] == ids[1:3] and page.has_more == (len(ids) > 3)
