"""The batch store on SQLite and PostgreSQL: lifecycle, stage and line leases, exactly-once counting,
cancel and expiry, terminal statuses, concurrent claims, a 50,000-line start, migration 5."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import UniqueConstraint, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from faceplate.store import BatchRow, ClaimedRequest, Store
from faceplate.store.db import open_engine
from faceplate.store.migrations import MIGRATIONS, applied_versions, migrate
from faceplate.store.schema import batch_requests, batches, metadata
from tests.unit.old_schema import insert_key, key_ids

A, B = "key_alice", "key_bob"
NOW = 1_700_000_000.0
DAY = 86_400.0
PRINCIPAL = {"key_id": "key_1", "name": "alice", "models": None}


def request(i: int, model: str = "m") -> dict[str, Any]:
    return {
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": f"q{i}"}]},
    }


def lines(n: int) -> list[tuple[int, str, dict[str, Any]]]:
    return [(i, f"r{i}", request(i)) for i in range(1, n + 1)]


def create(store: Store, id: str, owner: str = A, *, created_at: float = NOW, metadata: dict[str, Any] | None = None) -> BatchRow:
    return store.batches.create(
        id=id,
        owner=owner,
        principal=PRINCIPAL,
        endpoint="/v1/chat/completions",
        input_file_id=f"file-{id}",
        completion_window="24h",
        created_at=created_at,
        expires_at=created_at + DAY,
        metadata=metadata if metadata is not None else {"k": "v"},
        output_expires_after=None,
    )


def running(store: Store, id: str, n: int = 3, owner: str = A, *, created_at: float = NOW) -> None:
    """A batch in_progress with ``n`` pending lines (no other batch may need stage work)."""
    create(store, id, owner, created_at=created_at)
    got = store.batches.claim_stage("stage", NOW, 60)
    assert got is not None and got.id == id
    assert store.batches.start(id, "stage", lines(n), "m", NOW)


def result(line: int) -> dict[str, Any]:
    return {"id": f"batch_req_{line}", "custom_id": f"r{line}", "response": {"status_code": 200, "body": {}}, "error": None}


def complete(store: Store, runner: str, c: ClaimedRequest | tuple[str, int], *, ok: bool = True, now: float = NOW) -> bool:
    batch_id, line = (c.batch_id, c.line) if isinstance(c, ClaimedRequest) else c
    return store.batches.complete(
        runner, batch_id, line, ok=ok, result=result(line), input_tokens=10, cached_tokens=4, output_tokens=5, now=now
    )


def keys(claimed: list[ClaimedRequest]) -> list[tuple[str, int]]:
    return [(c.batch_id, c.line) for c in claimed]


def request_rows(store: Store, id: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(batch_requests).where(batch_requests.c.batch_id == id)) or 0)


# --- the batch row ---------------------------------------------------------------------------------


def test_create_get_and_owner_isolation(store: Store) -> None:
    made = create(store, "batch_1", metadata={"job": "nightly"})
    assert made.status == "validating" and made.owner == A and made.principal == PRINCIPAL
    assert (made.created_at, made.expires_at, made.metadata) == (NOW, NOW + DAY, {"job": "nightly"})
    assert (made.total, made.completed, made.failed, made.input_tokens, made.cached_tokens, made.output_tokens) == (0,) * 6
    assert made.errors is None and made.model is None and made.output_file_id is None and made.lease_owner is None
    assert made.in_progress_at is None and made.cancelled_at is None
    assert store.batches.get("batch_1", A) == made
    assert store.batches.get("batch_1", B) is None  # another key never sees it
    assert store.batches.get("batch_nope", A) is None
    assert store.batches.get_any("batch_1") == made
    assert store.batches.request_cancel("batch_1", B, NOW) is None
    assert store.batches.get("batch_1", A) == made  # B's cancel did nothing
    assert store.batches.list(B, limit=10) == ([], False)
    with pytest.raises(IntegrityError):
        create(store, "batch_1")


def test_list_pages_newest_first(store: Store) -> None:
    for i in range(5):
        create(store, f"batch_{i}", created_at=NOW + i)
    create(store, "batch_b", B, created_at=NOW + 10)
    create(store, "batch_tie", created_at=NOW + 4)  # same created_at as batch_4: the id breaks the tie
    page, more = store.batches.list(A, limit=3)
    assert [b.id for b in page] == ["batch_tie", "batch_4", "batch_3"] and more
    page, more = store.batches.list(A, limit=3, after="batch_3")
    assert [b.id for b in page] == ["batch_2", "batch_1", "batch_0"] and not more
    assert store.batches.list(A, limit=3, after="batch_0") == ([], False)
    assert store.batches.list(A, limit=3, after="batch_unknown") == ([], False)
    assert store.batches.list(A, limit=3, after="batch_b") == ([], False)  # someone else's id is unknown here


# --- stage work --------------------------------------------------------------------------------------


def test_stage_claim_lease_and_takeover(store: Store) -> None:
    assert store.batches.claim_stage("r1", NOW, 60) is None
    create(store, "batch_1")
    create(store, "batch_2", created_at=NOW + 1)
    first = store.batches.claim_stage("r1", NOW, 60)
    assert first is not None and first.id == "batch_1" and (first.lease_owner, first.lease_until) == ("r1", NOW + 60)
    second = store.batches.claim_stage("r2", NOW, 60)
    assert second is not None and second.id == "batch_2"  # batch_1's lease is r1's
    assert store.batches.claim_stage("r3", NOW + 59, 60) is None
    # r1 died: after its lease, someone else takes batch_1 and r1 can no longer start it
    taken = store.batches.claim_stage("r3", NOW + 60, 60)
    assert taken is not None and taken.id == "batch_1" and taken.lease_owner == "r3"
    assert not store.batches.start("batch_1", "r1", lines(2), "m", NOW + 61)
    assert not store.batches.renew_stage("batch_1", "r1", NOW + 500)
    assert store.batches.renew_stage("batch_1", "r3", NOW + 500)
    assert store.batches.get_any("batch_1").lease_until == NOW + 500  # type: ignore[union-attr]
    assert store.batches.start("batch_1", "r3", lines(2), "m", NOW + 61)
    # r2 gives batch_2 back: another runner may take it at once
    assert not store.batches.release_stage("batch_2", "r1")
    assert store.batches.release_stage("batch_2", "r2")
    again = store.batches.claim_stage("r4", NOW + 1, 60)
    assert again is not None and again.id == "batch_2"


def test_start_stores_the_lines(store: Store) -> None:
    create(store, "batch_1")
    assert not store.batches.start("batch_1", "r1", lines(3), "m", NOW)  # nobody holds the lease yet
    assert store.batches.claim_stage("r1", NOW, 60) is not None
    assert not store.batches.start("batch_1", "r2", lines(3), "m", NOW)
    assert store.batches.start("batch_1", "r1", iter(lines(3)), "gpt-x", NOW + 2)  # any iterable, once
    b = store.batches.get("batch_1", A)
    assert b is not None
    assert (b.status, b.total, b.model, b.in_progress_at, b.lease_owner, b.lease_until) == (
        "in_progress",
        3,
        "gpt-x",
        NOW + 2,
        None,
        None,
    )
    assert list(store.batches.results("batch_1")) == [(i, f"r{i}", None, None, "pending") for i in (1, 2, 3)]
    assert not store.batches.start("batch_1", "r1", lines(3), "m", NOW)  # once only
    assert request_rows(store, "batch_1") == 3


def test_start_is_all_or_nothing(store: Store) -> None:
    create(store, "batch_1")
    assert store.batches.claim_stage("r1", NOW, 60) is not None
    dup = [*lines(1500), (1501, "r7", request(0))]  # a repeated custom_id past the first chunk
    with pytest.raises(IntegrityError):
        store.batches.start("batch_1", "r1", dup, "m", NOW)
    b = store.batches.get("batch_1", A)
    assert b is not None and (b.status, b.total, b.lease_owner) == ("validating", 0, "r1")
    assert request_rows(store, "batch_1") == 0


def test_start_50000_lines_on_sqlite(tmp_path: Path) -> None:
    s = Store.open(f"sqlite:///{tmp_path / 'faceplate.db'}")
    try:
        create(s, "batch_big")
        assert s.batches.claim_stage("r1", NOW, 60) is not None
        tiny = (
            (i, f"c{i}", {"method": "POST", "url": "/v1/embeddings", "body": {"model": "m", "input": "x"}})
            for i in range(1, 50_001)
        )
        started = time.perf_counter()
        assert s.batches.start("batch_big", "r1", tiny, "m", NOW)
        elapsed = time.perf_counter() - started
        b = s.batches.get_any("batch_big")
        assert b is not None and b.total == 50_000 and b.status == "in_progress"
        assert request_rows(s, "batch_big") == 50_000
        assert elapsed < 5, f"start of 50,000 lines took {elapsed:.1f}s"
        # the claims find the pending lines by index, in line order, however many are done
        got = s.batches.claim_requests("w", NOW, 60, 3)
        assert [c.line for c in got] == [1, 2, 3]
        assert sum(1 for _ in s.batches.results("batch_big")) == 50_000
    finally:
        s.close()


def test_fail_records_errors_and_stays_failed(store: Store) -> None:
    create(store, "batch_1")
    errors = [{"code": "duplicate_custom_id", "message": "dup", "param": "custom_id", "line": 2}]
    assert not store.batches.fail("batch_1", "r1", errors, NOW)  # no lease
    assert store.batches.claim_stage("r1", NOW, 60) is not None
    assert store.batches.fail("batch_1", "r1", errors, NOW + 1)
    b = store.batches.get("batch_1", A)
    assert b is not None and (b.status, b.failed_at, b.errors, b.lease_owner) == ("failed", NOW + 1, errors, None)
    # terminal: nothing moves it
    assert store.batches.claim_stage("r1", NOW + 1000, 60) is None
    assert not store.batches.fail("batch_1", "r1", [], NOW + 2)
    assert not store.batches.start("batch_1", "r1", lines(1), "m", NOW + 2)
    assert store.batches.request_cancel("batch_1", A, NOW + 2) == b
    assert store.batches.get("batch_1", A) == b


# --- lines -----------------------------------------------------------------------------------------


def test_claim_order_limit_and_complete(store: Store) -> None:
    running(store, "batch_old", 3, created_at=NOW - 10)
    running(store, "batch_new", 2, B)
    got = store.batches.claim_requests("w1", NOW, 30, 4)
    assert keys(got) == [("batch_old", 1), ("batch_old", 2), ("batch_old", 3), ("batch_new", 1)]
    first = got[0]
    assert (first.custom_id, first.request, first.endpoint, first.owner, first.principal) == (
        "r1",
        request(1),
        "/v1/chat/completions",
        A,
        PRINCIPAL,
    )
    assert keys(store.batches.claim_requests("w2", NOW, 30, 4)) == [("batch_new", 2)]
    assert store.batches.claim_requests("w2", NOW, 30, 4) == []
    assert store.batches.claim_requests("w2", NOW, 30, 0) == []
    assert [r[4] for r in store.batches.results("batch_old")] == ["running"] * 3

    assert not complete(store, "w2", first)  # not w2's
    assert complete(store, "w1", first, ok=True)
    assert not complete(store, "w1", first)  # already done: counted once
    assert complete(store, "w1", got[1], ok=False)
    b = store.batches.get("batch_old", A)
    assert b is not None
    assert (b.completed, b.failed, b.input_tokens, b.cached_tokens, b.output_tokens) == (1, 1, 20, 8, 10)
    assert list(store.batches.results("batch_old")) == [
        (1, "r1", True, result(1), "done"),
        (2, "r2", False, result(2), "done"),
        (3, "r3", None, None, "running"),
    ]
    assert not complete(store, "w1", ("batch_nope", 1))


def test_lease_expiry_takeover_counts_once(store: Store) -> None:
    running(store, "batch_1", 1)
    a = store.batches.claim_requests("A", NOW, 10, 5)
    assert keys(a) == [("batch_1", 1)]
    assert store.batches.claim_requests("B", NOW + 9, 10, 5) == []  # A's lease still holds
    b = store.batches.claim_requests("B", NOW + 10, 10, 5)  # time passed: A is presumed dead
    assert keys(b) == keys(a)
    assert store.batches.renew("A", keys(a), NOW + 100) == keys(a)  # A learns it lost the line
    assert not complete(store, "A", a[0], now=NOW + 11)  # A's late result is dropped
    assert complete(store, "B", b[0], now=NOW + 12)
    assert not complete(store, "A", a[0], now=NOW + 13)
    got = store.batches.get("batch_1", A)
    assert got is not None and (got.completed, got.failed, got.input_tokens) == (1, 0, 10)


def test_an_expired_lease_nobody_took_still_completes(store: Store) -> None:
    running(store, "batch_1", 1)
    a = store.batches.claim_requests("A", NOW, 10, 5)
    assert complete(store, "A", a[0], now=NOW + 1000)  # slow, but nobody took it over
    assert store.batches.claim_requests("B", NOW + 1000, 10, 5) == []


def test_renew_extends_and_reports_what_to_stop(store: Store) -> None:
    running(store, "batch_1", 2)
    running(store, "batch_2", 1, created_at=NOW + 1)
    got = store.batches.claim_requests("w", NOW, 10, 5)
    assert len(got) == 3
    assert store.batches.renew("w", [], NOW + 50) == []
    assert store.batches.renew("w", keys(got), NOW + 50) == []
    assert store.batches.claim_requests("x", NOW + 20, 10, 5) == []  # renewed past NOW + 20
    assert complete(store, "w", got[0])
    cancelled = store.batches.request_cancel("batch_2", A, NOW + 21)
    assert cancelled is not None and cancelled.status == "cancelling"
    stop = store.batches.renew("w", keys(got), NOW + 80)
    assert sorted(stop) == [("batch_1", 1), ("batch_2", 1)]  # done already; batch cancelling
    assert store.batches.renew("other", [("batch_1", 2)], NOW + 80) == [("batch_1", 2)]  # not its line


def test_owner_cap(store: Store) -> None:
    running(store, "batch_a", 10, A, created_at=NOW - 10)
    running(store, "batch_b", 3, B)
    got = store.batches.claim_requests("w", NOW, 30, 6, owner_cap=2)
    assert keys(got) == [("batch_a", 1), ("batch_a", 2), ("batch_b", 1), ("batch_b", 2)]
    assert keys(store.batches.claim_requests("w", NOW, 30, 6, owner_cap=3)) == [("batch_a", 3), ("batch_b", 3)]
    assert store.batches.claim_requests("w", NOW, 30, 6, owner_cap=3) == []  # A has 3 running
    assert complete(store, "w", got[0])
    assert keys(store.batches.claim_requests("w", NOW, 30, 6, owner_cap=3)) == [("batch_a", 4)]
    # leases that ran out do not count as running: they are up for grabs again, under the cap
    again = store.batches.claim_requests("v", NOW + 30, 30, 10, owner_cap=2)
    assert keys(again) == [("batch_a", 2), ("batch_a", 3), ("batch_b", 1), ("batch_b", 2)]


def test_expired_and_cancelling_batches_hand_out_no_lines(store: Store) -> None:
    running(store, "batch_1", 2)
    assert store.batches.claim_requests("w", NOW + DAY, 30, 5) == []  # past expires_at
    assert store.batches.request_cancel("batch_1", A, NOW) is not None
    assert store.batches.claim_requests("w", NOW, 30, 5) == []


# --- wrapping up ------------------------------------------------------------------------------------


def test_finalize_when_every_line_is_done(store: Store) -> None:
    running(store, "batch_1", 3)
    got = store.batches.claim_requests("w", NOW, 30, 5)
    assert store.batches.claim_stage("stage", NOW, 60) is None  # lines still running
    for c, ok in zip(got, (True, False, True), strict=True):
        assert complete(store, "w", c, ok=ok)
    claim = store.batches.claim_stage("stage", NOW + 5, 60)
    assert claim is not None and claim.id == "batch_1" and claim.status == "in_progress"
    assert not store.batches.mark_finalizing("batch_1", "other", NOW + 6)
    assert store.batches.mark_finalizing("batch_1", "stage", NOW + 6)
    assert [(r[0], r[2]) for r in store.batches.results("batch_1")] == [(1, True), (2, False), (3, True)]
    assert not store.batches.finish(
        "batch_1", "stage", status="completed", output_file_id="file-o", error_file_id="file-e", unrun=1, now=NOW + 7
    )  # the counts would not add up
    assert not store.batches.finish(
        "batch_1", "stage", status="cancelled", output_file_id="file-o", error_file_id="file-e", unrun=0, now=NOW + 7
    )  # it was never cancelled
    assert store.batches.finish(
        "batch_1", "stage", status="completed", output_file_id="file-o", error_file_id="file-e", unrun=0, now=NOW + 7
    )
    b = store.batches.get("batch_1", A)
    assert b is not None
    assert (b.status, b.finalizing_at, b.completed_at, b.output_file_id, b.error_file_id) == (
        "completed",
        NOW + 6,
        NOW + 7,
        "file-o",
        "file-e",
    )
    assert (b.total, b.completed, b.failed, b.lease_owner, b.lease_until) == (3, 2, 1, None, None)
    assert b.completed + b.failed == b.total
    assert_terminal(store, "batch_1", b)


def assert_terminal(store: Store, id: str, b: BatchRow) -> None:
    """Nothing moves a finished batch: every writer is a no-op on it."""
    later = NOW + 2 * DAY
    assert store.batches.claim_stage("late", later, 60) is None
    assert store.batches.claim_requests("late", later, 60, 10) == []
    assert not store.batches.mark_finalizing(id, "late", later)
    assert not store.batches.fail(id, "late", [], later)
    assert not store.batches.start(id, "late", lines(1), "m", later)
    for status in ("completed", "cancelled", "expired"):
        assert not store.batches.finish(id, "late", status=status, output_file_id=None, error_file_id=None, unrun=0, now=later)  # type: ignore[arg-type]
    assert store.batches.request_cancel(id, b.owner, later) == b  # a finished batch: unchanged (the API answers 400)
    assert not complete(store, "late", (id, 1), now=later)
    assert store.batches.get(id, b.owner) == b


def test_expiry_keeps_done_work_and_counts_the_rest_failed(store: Store) -> None:
    running(store, "batch_1", 4)
    got = store.batches.claim_requests("w", NOW, 30, 2)
    assert complete(store, "w", got[0])
    later = NOW + DAY + 1
    claim = store.batches.claim_stage("stage", later, 60)
    assert claim is not None and claim.id == "batch_1" and claim.status == "in_progress"  # past expires_at
    assert store.batches.mark_finalizing("batch_1", "stage", later)
    assert not complete(store, "w", got[1], now=later)  # too late: the batch is being wrapped up
    results = list(store.batches.results("batch_1"))
    unrun = sum(1 for r in results if r[4] != "done")
    assert unrun == 3
    assert store.batches.finish(
        "batch_1", "stage", status="expired", output_file_id="file-o", error_file_id="file-e", unrun=unrun, now=later + 1
    )
    b = store.batches.get("batch_1", A)
    assert b is not None
    assert (b.status, b.expired_at, b.finalizing_at, b.completed, b.failed, b.total) == ("expired", later + 1, later, 1, 3, 4)
    assert b.completed + b.failed == b.total
    assert_terminal(store, "batch_1", b)


def test_finish_straight_from_in_progress_sets_finalizing_at(store: Store) -> None:
    running(store, "batch_1", 2)
    later = NOW + DAY
    assert store.batches.claim_stage("stage", later, 60) is not None
    assert store.batches.finish(
        "batch_1", "stage", status="expired", output_file_id=None, error_file_id="file-e", unrun=2, now=later
    )
    b = store.batches.get("batch_1", A)
    assert b is not None and (b.status, b.finalizing_at, b.expired_at, b.failed, b.output_file_id) == (
        "expired",
        later,
        later,
        2,
        None,
    )


def test_cancel_keeps_done_work_and_stops_the_rest(store: Store) -> None:
    running(store, "batch_1", 4)
    got = store.batches.claim_requests("w", NOW, 30, 3)
    assert complete(store, "w", got[0], ok=False)
    cancelled = store.batches.request_cancel("batch_1", A, NOW + 1)
    assert cancelled is not None and (cancelled.status, cancelled.cancelling_at) == ("cancelling", NOW + 1)
    again = store.batches.request_cancel("batch_1", A, NOW + 2)
    assert again == cancelled  # a second cancel changes nothing
    assert store.batches.renew("w", keys(got[1:]), NOW + 60) == keys(got[1:])
    assert not complete(store, "w", got[1])  # in flight when the cancel came: dropped
    claim = store.batches.claim_stage("stage", NOW + 2, 60)
    assert claim is not None and claim.status == "cancelling"
    assert not store.batches.mark_finalizing("batch_1", "stage", NOW + 2)  # cancelling is not in_progress
    assert not store.batches.finish(
        "batch_1", "stage", status="completed", output_file_id=None, error_file_id=None, unrun=3, now=NOW + 3
    )
    unrun = sum(1 for r in store.batches.results("batch_1") if r[4] != "done")
    assert store.batches.finish(
        "batch_1", "stage", status="cancelled", output_file_id=None, error_file_id="file-e", unrun=unrun, now=NOW + 3
    )
    b = store.batches.get("batch_1", A)
    assert b is not None
    assert (b.status, b.cancelled_at, b.finalizing_at, b.completed, b.failed, b.total) == ("cancelled", NOW + 3, NOW + 3, 0, 4, 4)
    assert_terminal(store, "batch_1", b)


def test_cancel_while_validating(store: Store) -> None:
    create(store, "batch_1")
    assert store.batches.claim_stage("v", NOW, 60) is not None
    cancelled = store.batches.request_cancel("batch_1", A, NOW + 1)
    assert cancelled is not None and cancelled.status == "cancelling"
    assert not store.batches.start("batch_1", "v", lines(2), "m", NOW + 2)  # the validator lost the race
    assert not store.batches.fail("batch_1", "v", [], NOW + 2)
    assert store.batches.claim_stage("s", NOW + 2, 60) is None  # v still holds the lease ...
    assert store.batches.release_stage("batch_1", "v")  # ... until it gives it back
    claim = store.batches.claim_stage("s", NOW + 2, 60)
    assert claim is not None and claim.status == "cancelling"
    assert store.batches.finish("batch_1", "s", status="cancelled", output_file_id=None, error_file_id=None, unrun=0, now=NOW + 3)
    b = store.batches.get("batch_1", A)
    assert b is not None and (b.status, b.total, b.completed, b.failed) == ("cancelled", 0, 0, 0)


def test_a_finalize_a_dead_runner_left_is_taken_over(store: Store) -> None:
    running(store, "batch_1", 1)
    got = store.batches.claim_requests("w", NOW, 30, 1)
    assert complete(store, "w", got[0])
    assert store.batches.claim_stage("dead", NOW, 60) is not None
    assert store.batches.mark_finalizing("batch_1", "dead", NOW)
    assert store.batches.claim_stage("s", NOW + 59, 60) is None
    claim = store.batches.claim_stage("s", NOW + 60, 60)
    assert claim is not None and (claim.status, claim.lease_owner) == ("finalizing", "s")
    assert not store.batches.finish(
        "batch_1", "dead", status="completed", output_file_id="f", error_file_id=None, unrun=0, now=NOW + 61
    )
    assert store.batches.finish("batch_1", "s", status="completed", output_file_id="f", error_file_id=None, unrun=0, now=NOW + 61)
    b = store.batches.get("batch_1", A)
    assert b is not None and (b.status, b.finalizing_at, b.completed_at) == ("completed", NOW, NOW + 61)


def test_results_stream_in_line_order(store: Store) -> None:
    create(store, "batch_1")
    assert store.batches.claim_stage("s", NOW, 60) is not None
    shuffled = [(i, f"r{i}", request(i)) for i in (3, 1, 2500, 2)]
    assert store.batches.start("batch_1", "s", shuffled, "m", NOW)
    it = store.batches.results("batch_1")
    assert next(it) == (1, "r1", None, None, "pending")
    it.close()  # abandoning it ends the read transaction
    assert [r[0] for r in store.batches.results("batch_1")] == [1, 2, 3, 2500]
    assert list(store.batches.results("batch_nope")) == []


# --- concurrency --------------------------------------------------------------------------------------


def run_threads(n: int, target: Any) -> None:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.parametrize("owner_cap", [None, 1000])
def test_concurrent_claims_take_each_line_once(store: Store, owner_cap: int | None) -> None:
    sizes = {"batch_1": 120, "batch_2": 80, "batch_3": 100}
    for i, (id, n) in enumerate(sizes.items()):
        running(store, id, n, A if i % 2 == 0 else B, created_at=NOW + i)
    claims: dict[int, list[tuple[str, int]]] = {0: [], 1: [], 2: []}

    def worker(i: int) -> None:
        runner = f"w{i}"
        while True:
            got = store.batches.claim_requests(runner, NOW, 600, 7, owner_cap=owner_cap)
            if not got:
                return
            claims[i].extend(keys(got))
            for c in got:
                assert complete(store, runner, c)

    run_threads(3, worker)
    everything = claims[0] + claims[1] + claims[2]
    assert len(everything) == len(set(everything)) == sum(sizes.values())
    for id, n in sizes.items():
        b = store.batches.get_any(id)
        assert b is not None and (b.completed, b.total, b.input_tokens) == (n, n, 10 * n)


def test_concurrent_stage_claims_take_each_batch_once(store: Store) -> None:
    for i in range(12):
        create(store, f"batch_{i:02}", created_at=NOW + i)
    taken: dict[int, list[str]] = {0: [], 1: [], 2: []}

    def worker(i: int) -> None:
        while (got := store.batches.claim_stage(f"s{i}", NOW, 600)) is not None:
            taken[i].append(got.id)

    run_threads(3, worker)
    everything = taken[0] + taken[1] + taken[2]
    assert sorted(everything) == [f"batch_{i:02}" for i in range(12)]


def test_complete_races_cancel(store: Store) -> None:
    """Whatever the interleaving, a line is counted only if its result was recorded, and the
    counts then close exactly: completed + failed == total."""
    running(store, "batch_1", 60)
    got = store.batches.claim_requests("w", NOW, 600, 60)
    recorded: list[int] = []

    def worker(i: int) -> None:
        if i == 0:
            for c in got:
                if complete(store, "w", c):
                    recorded.append(c.line)
        else:
            time.sleep(0.01)
            assert store.batches.request_cancel("batch_1", A, NOW + 1) is not None

    run_threads(2, worker)
    claim = store.batches.claim_stage("s", NOW + 2, 60)
    assert claim is not None and claim.status == "cancelling"
    rows = list(store.batches.results("batch_1"))
    assert sorted(r[0] for r in rows if r[4] == "done") == sorted(recorded)
    unrun = sum(1 for r in rows if r[4] != "done")
    assert store.batches.finish(
        "batch_1", "s", status="cancelled", output_file_id=None, error_file_id=None, unrun=unrun, now=NOW + 3
    )
    b = store.batches.get("batch_1", A)
    assert b is not None and b.completed == len(recorded) and b.completed + b.failed == b.total == 60


# --- schema and migration ---------------------------------------------------------------------------

NEW_TABLES = ("batches", "batch_requests")


def test_the_batch_tables_match_the_schema(store: Store) -> None:
    inspector = inspect(store.engine)
    for name in NEW_TABLES:
        table = metadata.tables[name]
        live = {c["name"]: c["nullable"] for c in inspector.get_columns(name)}
        assert live == {c.name: c.nullable for c in table.columns}, name
        assert inspector.get_pk_constraint(name)["constrained_columns"] == [c.name for c in table.primary_key.columns]
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)}
        assert uniques == {tuple(c.name for c in u.columns) for u in table.constraints if isinstance(u, UniqueConstraint)}
    indexes = {n: {i["name"]: i["column_names"] for i in inspector.get_indexes(n)} for n in NEW_TABLES}
    assert indexes["batches"]["ix_batches_owner_created"] == ["owner", "created_at"]
    assert indexes["batches"]["ix_batches_status"] == ["status"]
    assert indexes["batch_requests"]["ix_batch_requests_status_lease"] == ["status", "lease_until"]
    assert indexes["batch_requests"]["ix_batch_requests_batch_status"] == ["batch_id", "status", "line"]


def test_migration_5_on_a_version_4_database(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        assert migrate(engine, MIGRATIONS[:4]) == [1, 2, 3, 4]
        old = Store(engine)
        insert_key(engine, "key_1")
        old.conversations.create(id="conv_1", owner=A, created_at=NOW, metadata={"k": "v"}, items=[])
        assert not set(NEW_TABLES) & set(inspect(engine).get_table_names())

        assert migrate(engine, MIGRATIONS[:5]) == [5]
        assert applied_versions(engine) == [1, 2, 3, 4, 5]
        assert key_ids(engine) == ["key_1"]
        migrate(engine)
        new = Store(engine)
        conv = new.conversations.get("conv_1", A)
        assert conv is not None and conv.metadata == {"k": "v"}
        create(new, "batch_1")
        assert new.batches.get("batch_1", A) is not None
    finally:
        engine.dispose()


def test_migration_6_adds_batch_limits_to_a_version_5_database(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        assert migrate(engine, MIGRATIONS[:5]) == [1, 2, 3, 4, 5]
        insert_key(engine, "key_1")
        with engine.begin() as conn:  # a batch as version 5 stored it
            conn.execute(
                text(
                    "INSERT INTO batches (id, owner, principal, endpoint, input_file_id, completion_window, status, "
                    "created_at, expires_at, metadata, total, completed, failed, input_tokens, cached_tokens, "
                    "output_tokens) VALUES ('batch_old', :owner, '{}', '/v1/chat/completions', 'file-1', '24h', "
                    "'in_progress', 1, 2, '{}', 0, 0, 0, 0, 0, 0)"
                ),
                {"owner": A},
            )
        assert migrate(engine) == [6]
        new = Store(engine)
        key = new.keys.get("key_1")
        assert key is not None and key.batch_token_limit is None
        row = new.batches.get("batch_old", A)
        assert row is not None and row.enqueued_tokens == 0
        made, _ = new.keys.create("bob", batch_token_limit=1000)
        assert new.keys.get(made.id).batch_token_limit == 1000  # type: ignore[union-attr]
    finally:
        engine.dispose()


def test_postgresql_claims_skip_what_another_transaction_holds(store: Store) -> None:
    if store.backend != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises writers instead")
    running(store, "batch_1", 3)
    create(store, "batch_2", created_at=NOW + 1)
    with store.engine.connect() as conn, conn.begin():  # another runner, mid-claim
        conn.execute(select(batch_requests.c.line).where(batch_requests.c.line == 1).with_for_update())
        conn.execute(select(batches.c.id).where(batches.c.id == "batch_2").with_for_update())
        assert [c.line for c in store.batches.claim_requests("w", NOW, 30, 2)] == [2, 3]  # no wait, no line 1
        assert store.batches.claim_stage("s", NOW, 60) is None  # batch_2 is skipped, not waited for
    got = store.batches.claim_stage("s", NOW, 60)
    assert got is not None and got.id == "batch_2"
