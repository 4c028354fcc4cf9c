"""Batch API work yields to clients inside the llama.cpp scheduler (bundled SmolLM2 GGUF).

Interactive jobs are admitted before batch jobs that queued earlier, batch jobs hold at most
``batch_slots`` slots, the two have separate queues, and a step prefills a client's prompt
before any batch prompt.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from faceplate.config import bundled_chat_model_path
from faceplate.engines.base import Finished, SamplingParams
from faceplate.errors import Overloaded

MODEL_PATH = bundled_chat_model_path()
pytestmark = [
    pytest.mark.skipif(MODEL_PATH is None, reason="the bundled SmolLM2 GGUF is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"),
]

N_CTX = 128
TIMEOUT_S = 120


def job(model: Any, text: str, *, tokens: int = 4, n: int = 1) -> Any:
    from faceplate.engines.llamacpp.request import TokenRequest

    params = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
    return TokenRequest("req", tuple(model.tokenize(text, add_special=True, parse_special=False)), params, n)


async def record(streams: dict[str, AsyncIterator[Any]]) -> list[tuple[str, str]]:
    """Run the streams together; every event as (name, "token" | "finished") in the order it came."""
    seen: list[tuple[str, str]] = []

    async def drain(name: str, stream: AsyncIterator[Any]) -> None:
        async for ev in stream:
            seen.append((name, "finished" if isinstance(ev, Finished) else "token"))

    await asyncio.wait_for(asyncio.gather(*(drain(k, v) for k, v in streams.items())), TIMEOUT_S)
    return seen


def first(seen: list[tuple[str, str]], name: str, kind: str) -> int:
    return seen.index((name, kind))


async def test_interactive_job_is_admitted_before_batch_jobs_queued_earlier(model: Any, make_scheduler: Any) -> None:
    s = make_scheduler(1, n_ctx=N_CTX, n_batch=128, start=False)
    streams = {
        "batch_a": s.submit(job(model, "One"), "batch"),
        "batch_b": s.submit(job(model, "Two"), "batch"),
        "client": s.submit(job(model, "Three"), "interactive"),
    }
    s.start()  # all three wait: one slot, so admission order is finish order
    seen = await record(streams)
    finished = [name for name, kind in seen if kind == "finished"]
    assert finished == ["client", "batch_a", "batch_b"]


async def test_batch_jobs_hold_at_most_batch_slots_and_leave_the_rest_to_clients(model: Any, make_scheduler: Any) -> None:
    s = make_scheduler(3, n_ctx=N_CTX, n_batch=128, start=False, batch_slots=1)
    streams = {
        "batch_a": s.submit(job(model, "One", tokens=6), "batch"),
        "batch_b": s.submit(job(model, "Two", tokens=6), "batch"),
        "client_1": s.submit(job(model, "Three", tokens=3), "interactive"),
        "client_2": s.submit(job(model, "Four", tokens=3), "interactive"),
    }
    s.start()
    seen = await record(streams)
    # one batch job at a time, though a slot stood free while batch_b waited
    assert first(seen, "batch_a", "finished") < first(seen, "batch_b", "token")
    # the clients ran beside batch_a, not after it
    assert first(seen, "client_1", "finished") < first(seen, "batch_a", "finished")
    assert first(seen, "client_2", "finished") < first(seen, "batch_a", "finished")
    assert s.stats()["batch_sequences"] == 0 and s.stats()["batch_slots"] == 1


async def test_a_lone_batch_job_wider_than_the_cap_still_runs(model: Any, make_scheduler: Any) -> None:
    s = make_scheduler(2, n_ctx=N_CTX, n_batch=128, start=False, batch_slots=1)
    stream = s.submit(job(model, "Hello", n=2), "batch")
    s.start()
    seen = await record({"wide": stream})
    assert seen.count(("wide", "finished")) == 2


async def test_batch_and_interactive_queues_are_separate(model: Any, make_scheduler: Any) -> None:
    s = make_scheduler(1, n_ctx=N_CTX, n_batch=128, start=False, max_queue=1)  # not started: everything stays queued
    queued = [s.submit(job(model, "One"), "batch")]
    with pytest.raises(Overloaded):
        s.submit(job(model, "Two"), "batch")
    queued.append(s.submit(job(model, "Three"), "interactive"))  # a full batch queue never refuses a client
    with pytest.raises(Overloaded):
        s.submit(job(model, "Four"), "interactive")
    assert s.stats()["queued_requests"] == 2 and s.stats()["queued_batch_requests"] == 1
    for stream in queued:
        await stream.aclose()


def test_a_step_prefills_a_client_prompt_before_any_batch_prompt() -> None:
    from faceplate.engines.llamacpp.batch import Batch
    from faceplate.engines.llamacpp.slot import Slot

    batch = Batch(64, 16)
    try:
        client = Slot(seq=0, job=SimpleNamespace(priority="interactive"), pending=list(range(1, 11)))  # type: ignore[arg-type]
        worker = Slot(seq=1, job=SimpleNamespace(priority="batch"), pending=list(range(1, 11)))  # type: ignore[arg-type]
        assert batch.fill([worker, client])
        assert client.pending == [] and len(worker.pending) == 10  # the batch prompt waited
        client.next_token = 5  # the client now decodes; the batch prompt gets its turn beside it
        assert batch.fill([worker, client])
        assert worker.pending == [] and batch.batch.n_tokens == 11
    finally:
        batch.free()
