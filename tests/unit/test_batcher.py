"""The dynamic batcher: shared batches, bounds, error isolation, cancellation, batching off."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest

from faceplate.engines.batcher import Batcher
from faceplate.errors import EngineFailure, InvalidRequest, Overloaded, ServiceUnavailable


class CountingRun:
    """A batch function that records every batch it gets and the thread it ran on."""

    def __init__(self, delay_s: float = 0.0, fail_if: Callable[[list[str]], bool] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s
        self.fail_if = fail_if
        self.started = threading.Event()
        self.spans: list[tuple[float, float]] = []  # (start, end) of each batch

    def __call__(self, items: list[str]) -> list[str]:
        self.started.set()
        begun = time.monotonic()
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        if self.delay_s:
            time.sleep(self.delay_s)
        self.spans.append((begun, time.monotonic()))
        if self.fail_if and self.fail_if(items):
            raise RuntimeError("boom")
        return [f"<{x}>" for x in items]


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Batcher[str, str]]]:
    made: list[Batcher[str, str]] = []

    def factory(run: Callable[[list[str]], list[str]], **kw: object) -> Batcher[str, str]:
        kw.setdefault("max_batch", 256)
        kw.setdefault("wait_s", 0.05)
        b: Batcher[str, str] = Batcher(run, **kw)  # type: ignore[arg-type]
        made.append(b)
        return b

    yield factory
    for b in made:
        await asyncio.to_thread(b.close)


async def test_concurrent_requests_share_one_batch(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun()
    b = make(run, wait_s=0.2)
    results = await asyncio.gather(*(b.submit([f"r{i}"]) for i in range(10)))
    assert results == [[f"<r{i}>"] for i in range(10)]
    assert len(run.batches) == 1 and sorted(run.batches[0]) == sorted(f"r{i}" for i in range(10))
    assert b.stats()["largest_batch"] == 10 and b.stats()["batches"] == 1


async def test_each_request_gets_its_own_slice_in_order(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun()
    b = make(run, wait_s=0.05)
    requests = [[f"r{i}-{j}" for j in range(i + 1)] for i in range(6)]
    results = await asyncio.gather(*(b.submit(r) for r in requests))
    assert results == [[f"<{x}>" for x in r] for r in requests]


async def test_max_batch_is_respected(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun()
    b = make(run, max_batch=8, wait_s=0.05)
    requests = [[f"r{i}-{j}" for j in range(3)] for i in range(10)]
    results = await asyncio.gather(*(b.submit(r) for r in requests))
    assert results == [[f"<{x}>" for x in r] for r in requests]
    assert all(len(batch) <= 8 for batch in run.batches)
    assert sum(len(batch) for batch in run.batches) == 30
    assert max(len(batch) for batch in run.batches) == 8  # it does fill batches


async def test_one_big_request_is_split_across_batches(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun()
    b = make(run, max_batch=8, wait_s=0.0)
    items = [f"x{i}" for i in range(20)]
    assert await b.submit(items) == [f"<{x}>" for x in items]
    assert [len(batch) for batch in run.batches] == [8, 8, 4]


async def test_wait_is_bounded(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun()
    b = make(run, wait_s=0.1)
    started = time.monotonic()
    assert await b.submit(["alone"]) == ["<alone>"]
    elapsed = time.monotonic() - started
    assert 0.09 <= elapsed < 1.0  # waited for company, but not for long


async def test_full_batch_does_not_wait(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun()
    b = make(run, max_batch=4, wait_s=5.0)
    started = time.monotonic()
    assert await b.submit(["a", "b", "c", "d"]) == ["<a>", "<b>", "<c>", "<d>"]
    assert time.monotonic() - started < 2.0


async def test_backlog_runs_without_waiting_again(make: Callable[..., Batcher[str, str]]) -> None:
    """Inputs that queued while the worker was busy for longer than the wait run as soon as it is free."""
    run = CountingRun(delay_s=0.6)
    b = make(run, wait_s=0.2)
    first = asyncio.ensure_future(b.submit(["first"]))
    await asyncio.to_thread(run.started.wait, 5)
    later = await asyncio.gather(*(b.submit([f"later{i}"]) for i in range(5)))
    assert await first == ["<first>"]
    assert later == [[f"<later{i}>"] for i in range(5)]
    assert [len(batch) for batch in run.batches] == [1, 5]
    (_, first_end), (second_start, _) = run.spans
    assert second_start - first_end < 0.1  # no second 0.2 s wait once the worker is free


async def test_runs_off_the_event_loop(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun(delay_s=0.3)
    b = make(run, wait_s=0.0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    await b.submit(["slow"])
    task.cancel()
    assert ticks >= 10  # the loop kept running while the batch ran
    assert run.threads and threading.main_thread().name not in run.threads
    assert len(run.threads) == 1


async def test_failure_fails_only_the_requests_in_that_batch(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun(fail_if=lambda items: "bad" in items)
    b = make(run, max_batch=1, wait_s=0.0)
    results = await asyncio.gather(b.submit(["bad"]), b.submit(["ok"]), b.submit(["fine"]), return_exceptions=True)
    assert isinstance(results[0], EngineFailure)
    assert results[0].status == 500 and results[0].type == "server_error"
    assert results[1:] == [["<ok>"], ["<fine>"]]
    assert b.stats()["failed_batches"] == 1


async def test_failed_shared_batch_fails_its_members_and_the_worker_goes_on(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun(fail_if=lambda items: "bad" in items)
    b = make(run, wait_s=0.1)
    results = await asyncio.gather(b.submit(["bad"]), b.submit(["ok"]), return_exceptions=True)
    assert len(run.batches) == 1  # they shared a batch, so both failed
    assert all(isinstance(r, EngineFailure) for r in results)
    assert await b.submit(["after"]) == ["<after>"]


async def test_a_request_split_over_batches_fails_once_and_skips_the_rest(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun(fail_if=lambda items: "bad" in items)
    b = make(run, max_batch=2, wait_s=0.0)
    with pytest.raises(EngineFailure):
        await b.submit(["bad", "x", "y", "z", "w"])
    await asyncio.sleep(0.05)
    assert run.batches[0] == ["bad", "x"]
    assert ["y", "z"] not in run.batches[1:]  # nothing more of the failed request was run
    assert await b.submit(["ok"]) == ["<ok>"]


async def test_faceplate_errors_pass_through(make: Callable[..., Batcher[str, str]]) -> None:
    def run(items: list[str]) -> list[str]:
        raise InvalidRequest("bad input", param="input")

    b = make(run, wait_s=0.0)
    with pytest.raises(InvalidRequest):
        await b.submit(["x"])


async def test_batching_off_runs_each_request_alone(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun(delay_s=0.02)
    b = make(run, wait_s=0.5, enabled=False)
    requests = [[f"r{i}-a", f"r{i}-b"] for i in range(5)]
    started = time.monotonic()
    results = await asyncio.gather(*(b.submit(r) for r in requests))
    assert results == [[f"<{x}>" for x in r] for r in requests]
    assert sorted(run.batches) == sorted(requests)  # one batch per request, never mixed
    assert time.monotonic() - started < 0.5  # and no gathering wait
    assert b.stats()["batching"] is False


async def test_batching_off_still_splits_big_requests(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun()
    b = make(run, max_batch=3, enabled=False)
    assert await b.submit(list("abcdefg")) == [f"<{c}>" for c in "abcdefg"]
    assert [len(x) for x in run.batches] == [3, 3, 1]


async def test_cancelled_request_is_skipped(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun(delay_s=0.2)
    b = make(run, wait_s=0.0)
    first = asyncio.ensure_future(b.submit(["first"]))
    await asyncio.to_thread(run.started.wait, 5)
    gone = asyncio.ensure_future(b.submit(["gone"]))
    await asyncio.sleep(0.01)
    gone.cancel()
    assert await b.submit(["kept"]) == ["<kept>"]
    assert await first == ["<first>"]
    assert all("gone" not in batch for batch in run.batches)


async def test_queue_bound_gives_503(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun(delay_s=0.2)
    b = make(run, wait_s=0.0, max_requests=1)
    first = asyncio.ensure_future(b.submit(["first"]))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded) as err:
        await b.submit(["second"])
    assert err.value.status == 503 and "retry-after" in err.value.headers
    assert await first == ["<first>"]
    assert await b.submit(["third"]) == ["<third>"]


async def test_close_fails_waiting_requests(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun(delay_s=0.2)
    b = make(run, wait_s=0.0, max_batch=1)
    first = asyncio.ensure_future(b.submit(["first"]))
    await asyncio.to_thread(run.started.wait, 5)
    waiting = asyncio.ensure_future(b.submit(["waiting"]))
    await asyncio.sleep(0.01)
    await asyncio.to_thread(b.close)
    assert await first == ["<first>"]  # the running batch finishes
    with pytest.raises(ServiceUnavailable):
        await waiting
    with pytest.raises(ServiceUnavailable):
        await b.submit(["late"])


async def test_empty_submit_returns_at_once(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun()
    b = make(run)
    assert await b.submit([]) == []
    assert run.batches == []


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Batcher(lambda items: items, max_batch=0, wait_s=0.0)


async def test_interactive_requests_go_ahead_of_waiting_batch_requests(make: Callable[..., Batcher[str, str]]) -> None:
    run = CountingRun(delay_s=0.2)
    b = make(run, max_batch=2, wait_s=0.0)
    busy = asyncio.ensure_future(b.submit(["busy"]))
    await asyncio.to_thread(run.started.wait, 5)  # the worker is inside a batch: the rest queue up
    batch = asyncio.ensure_future(b.submit(["b1", "b2", "b3", "b4"], "batch"))
    await asyncio.sleep(0)
    client = asyncio.ensure_future(b.submit(["c1", "c2"]))
    assert await asyncio.wait_for(asyncio.gather(busy, batch, client), 10) == [
        ["<busy>"],
        ["<b1>", "<b2>", "<b3>", "<b4>"],
        ["<c1>", "<c2>"],
    ]
    assert run.batches == [["busy"], ["c1", "c2"], ["b1", "b2"], ["b3", "b4"]]
