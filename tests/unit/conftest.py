"""Shared unit-test fixtures: the store on SQLite and, where the PostgreSQL service is up, on
PostgreSQL; the bundled chat model and schedulers over it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faceplate.config import bundled_chat_model_path
from faceplate.store import Store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'faceplate.db'}"  # a folder that does not exist yet
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.close()


# ---------------------------------------------------------------- the bundled chat model and its scheduler


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    """The bundled SmolLM2 GGUF, loaded once per test module (the modules that use it skip without it)."""
    from faceplate.engines.llamacpp.model import LlamaModel

    path = bundled_chat_model_path()
    if path is None:
        pytest.skip("the bundled SmolLM2 GGUF is not installed")
    m = LlamaModel(str(path))
    yield m
    m.close()


@pytest.fixture
def make_scheduler(model: Any) -> Iterator[Callable[..., Any]]:
    """Build schedulers the way the engine does (LlamaModel -> new_context -> Scheduler) over small
    contexts; every one is stopped and freed after the test."""
    import llama_cpp as L

    from faceplate.engines.llamacpp.model import ContextSettings
    from faceplate.engines.llamacpp.scheduler import Scheduler

    made: list[tuple[Any, Any]] = []

    def make(n_parallel: int = 2, *, n_ctx: int = 256, n_batch: int = 256, start: bool = True, **options: Any) -> Any:
        threads = max(1, min(4, os.cpu_count() or 1))
        ctx = model.new_context(ContextSettings(n_ctx_per_seq=n_ctx, n_parallel=n_parallel, n_batch=n_batch, n_threads=threads))
        s = Scheduler(model, ctx, n_parallel=n_parallel, n_ctx_per_seq=n_ctx, n_batch=n_batch, **{"max_queue": 8, **options})
        made.append((s, ctx))
        if start:
            s.start()
        return s

    yield make
    for s, ctx in made:
        s.stop()
        L.llama_free(ctx)
