"""The usage sink: queued on the request path, written in batches off it, flushed at close."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from faceplate.access.usage import BatchingUsageSink, UsageRecord


def rec(i: int) -> UsageRecord:
    return UsageRecord("key_1", "m", "/v1/chat/completions", i, 1, 200, 1.0, time.time())


class Writer:
    def __init__(self) -> None:
        self.batches: list[list[UsageRecord]] = []
        self.fail = False
        self.threads: set[str] = set()
        self.block = threading.Event()
        self.block.set()

    def __call__(self, records: Sequence[UsageRecord]) -> None:
        self.block.wait()
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise OSError("store down")
        self.batches.append(list(records))

    @property
    def written(self) -> list[int]:
        return [r.prompt_tokens for b in self.batches for r in b]


def wait_for(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_records_are_written_in_batches_by_a_background_thread() -> None:
    w = Writer()
    sink = BatchingUsageSink(w, interval_s=0.05, max_batch=10)
    for i in range(25):
        sink.record(rec(i))
    wait_for(lambda: len(w.written) == 25)
    assert w.written == list(range(25))
    assert all(len(b) <= 10 for b in w.batches)
    assert w.threads == {"faceplate-usage"}
    sink.close()


def test_record_never_waits_for_the_store() -> None:
    w = Writer()
    w.block.clear()  # the store hangs
    sink = BatchingUsageSink(w, interval_s=0.01, max_batch=5)
    started = time.monotonic()
    for i in range(1000):
        sink.record(rec(i))
    assert time.monotonic() - started < 0.5
    w.block.set()
    sink.close()
    assert w.written == list(range(1000))


def test_close_flushes_what_is_queued() -> None:
    w = Writer()
    sink = BatchingUsageSink(w, interval_s=3600)
    for i in range(7):
        sink.record(rec(i))
    sink.close()
    assert w.written == list(range(7)) and sink.pending == 0 and sink.written == 7


def test_failed_writes_are_kept_and_retried_in_order() -> None:
    w = Writer()
    w.fail = True
    sink = BatchingUsageSink(w, interval_s=0.02, max_batch=3)
    for i in range(5):
        sink.record(rec(i))
    time.sleep(0.1)
    assert sink.pending == 5
    w.fail = False
    wait_for(lambda: len(w.written) == 5)
    assert w.written == list(range(5))
    sink.close()


def test_the_queue_is_bounded() -> None:
    w = Writer()
    w.fail = True
    sink = BatchingUsageSink(w, interval_s=3600, max_pending=10)
    for i in range(15):
        sink.record(rec(i))
    assert sink.pending == 10 and sink.dropped == 5
    w.fail = False
    assert sink.flush() == 10
    assert w.written == list(range(5, 15))
    sink.close()
