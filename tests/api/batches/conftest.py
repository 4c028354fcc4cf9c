"""Fixtures of the in-process Batch API tests: fake engines, a real SQLite store and blob store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from faceplate.access.auth import Authenticator
from faceplate.config import Settings
from faceplate.engines.fake import FakeEngine
from faceplate.engines.fake_embedding import FakeEmbeddingEngine
from faceplate.engines.registry import Registry
from faceplate.service.batch_worker import BatchWorker
from faceplate.service.services import Services
from faceplate.store import Store
from faceplate.store.blobs import DirectoryBlobs
from tests.api.conftest import API_KEY, OTHER_KEY, client_for
from tests.recorders import Recorder


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine("fake-model", n_ctx=512, words=4)


@pytest.fixture
def usage() -> Recorder:
    return Recorder()


@pytest.fixture
def make(engine: FakeEngine, usage: Recorder, tmp_path: Path) -> Iterator[Callable[..., Services]]:
    stores: list[Store] = []

    def build(**settings: Any) -> Services:
        store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
        stores.append(store)
        keys = [API_KEY, OTHER_KEY]
        registry = Registry([engine, FakeEmbeddingEngine("fake-embedding", max_input_tokens=64)])
        return Services(
            settings=Settings(api_keys=keys, **settings),
            registry=registry,
            auth=Authenticator(keys),
            store=store,
            blobs=DirectoryBlobs(tmp_path / "files"),
            usage=usage,
        )

    yield build
    for store in stores:
        store.close()


@pytest.fixture
async def svc(make: Callable[..., Services]) -> AsyncIterator[Services]:
    services = make()
    yield services
    await services.runs.close()


@pytest.fixture
async def api(svc: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(svc) as client:
        yield client


@pytest.fixture
async def worker(svc: Services) -> AsyncIterator[BatchWorker]:
    w = BatchWorker(svc)
    w.start()
    yield w
    await w.stop()
