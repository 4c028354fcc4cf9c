"""The batch store's limits and upkeep: the enqueued-token check in ``start`` (per owner, released
when a batch finishes), ``release`` of a running line, and no line rows left once a batch finished."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from faceplate.store import Store
from faceplate.store.batches import TokenLimitExceeded
from faceplate.store.schema import batch_requests
from tests.unit.test_store_batches import NOW, A, B, complete, create, lines


def start(store: Store, id: str, owner: str, tokens: int, limit: int | None, n: int = 2) -> bool:
    create(store, id, owner)
    got = store.batches.claim_stage("stage", NOW, 60)
    assert got is not None and got.id == id
    return store.batches.start(id, "stage", lines(n), "m", NOW, enqueued_tokens=tokens, token_limit=limit)


def line_rows(store: Store, id: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(batch_requests).where(batch_requests.c.batch_id == id)))


def test_start_refuses_past_the_owners_enqueued_token_limit(store: Store) -> None:
    assert start(store, "batch_1", A, 60, limit=100)
    assert start(store, "batch_other_owner", B, 90, limit=100)  # another owner's tokens never count
    with pytest.raises(TokenLimitExceeded) as refused:
        start(store, "batch_2", A, 41, limit=100)
    assert (refused.value.enqueued, refused.value.adding, refused.value.limit) == (60, 41, 100)
    row = store.batches.get("batch_2", A)
    assert row is not None and row.status == "validating" and row.total == 0 and line_rows(store, "batch_2") == 0
    assert row.lease_owner == "stage"  # still the runner's: it fails the batch next
    assert store.batches.fail("batch_2", "stage", [{"code": "token_limit_exceeded"}], NOW)
    assert start(store, "batch_3", A, 40, limit=100)  # exactly at the limit
    assert store.batches.get("batch_3", A).enqueued_tokens == 40  # type: ignore[union-attr]


def test_a_finished_batch_no_longer_counts_and_keeps_no_line_rows(store: Store) -> None:
    assert start(store, "batch_1", A, 80, limit=100, n=2)
    for c in store.batches.claim_requests("w", NOW, 30, 10):
        assert complete(store, "w", c)
    stage = store.batches.claim_stage("stage", NOW, 60)
    assert stage is not None and stage.id == "batch_1"
    assert store.batches.mark_finalizing("batch_1", "stage", NOW)
    assert line_rows(store, "batch_1") == 2
    assert store.batches.finish(
        "batch_1", "stage", status="completed", output_file_id="file-out", error_file_id=None, unrun=0, now=NOW
    )
    assert line_rows(store, "batch_1") == 0
    assert start(store, "batch_2", A, 80, limit=100)


def test_release_puts_a_running_line_back_for_anyone(store: Store) -> None:
    assert start(store, "batch_1", A, 0, limit=None, n=1)
    (c,) = store.batches.claim_requests("w1", NOW, 30, 5)
    assert not store.batches.release("w2", c.batch_id, c.line, NOW)  # not w2's
    assert store.batches.release("w1", c.batch_id, c.line, NOW)
    assert not store.batches.release("w1", c.batch_id, c.line, NOW)  # pending now: nothing to give back
    (again,) = store.batches.claim_requests("w2", NOW, 30, 5)  # at once, not after the lease
    assert (again.batch_id, again.line) == (c.batch_id, c.line)
    assert not complete(store, "w1", c) and complete(store, "w2", again)


def test_finish_records_the_result_files_with_the_status_or_not_at_all(store: Store) -> None:
    from faceplate.store import StoredFile

    assert start(store, "batch_1", A, 0, limit=None, n=1)
    stage = store.batches.claim_stage("stage", NOW, 60)  # one line pending: nothing to wrap up yet
    assert stage is None
    assert store.batches.request_cancel("batch_1", A, NOW) is not None
    stage = store.batches.claim_stage("stage", NOW, 60)
    assert stage is not None and stage.status == "cancelling"
    err = StoredFile(id="file-err", owner=A, filename="e.jsonl", purpose="batch_output", bytes=9, created_at=NOW, expires_at=None)
    refused = store.batches.finish(
        "batch_1",
        "someone-else",
        status="cancelled",
        output_file_id=None,
        error_file_id="file-err",
        unrun=1,
        now=NOW,
        files=[err],
    )
    assert not refused and store.files.get("file-err", A, now=NOW) is None  # no file row without the finish
    assert store.batches.finish(
        "batch_1", "stage", status="cancelled", output_file_id=None, error_file_id="file-err", unrun=1, now=NOW, files=[err]
    )
    assert store.files.get("file-err", A, now=NOW) is not None
    assert store.batches.get("batch_1", A).status == "cancelled"  # type: ignore[union-attr]
