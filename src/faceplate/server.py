"""Wire settings into services and run uvicorn."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from types import FrameType

import uvicorn

from faceplate.access.auth import Authenticator
from faceplate.access.limits import Limiter, MemoryLimiter, RedisLimiter
from faceplate.access.usage import BatchingUsageSink
from faceplate.app import create_app
from faceplate.config import Settings
from faceplate.engines.registry import Registry
from faceplate.http.connection import client_protocol
from faceplate.service.cpu import CpuPool
from faceplate.service.services import Services
from faceplate.store import CachedKeyLookup, Store
from faceplate.store.blobs import DirectoryBlobs

log = logging.getLogger("faceplate.server")


def build_services(settings: Settings, registry: Registry, *, store: Store | None = None) -> Services:
    """Open (and migrate) the store and the files folder, and build auth, the rate limiter and the usage sink around them.

    The limiter is Redis-backed when ``settings.redis_url`` is set (one limit shared by every
    replica), in-process otherwise. Close what this opens with ``close_services``.
    """
    store = store or Store.open(settings.resolved_database_url())
    keys = CachedKeyLookup(store.keys, ttl_s=settings.key_cache_ttl_s)
    auth = Authenticator(settings.api_keys, keys, store_has_keys=store.keys.any())
    limiter: Limiter
    if settings.redis_url:
        limiter = RedisLimiter(settings.redis_url, window_s=settings.rate_limit_window_s)
    else:
        limiter = MemoryLimiter(window_s=settings.rate_limit_window_s)
    usage = BatchingUsageSink(store.usage.insert)
    cpu = CpuPool(settings.cpu_workers, settings.cpu_queue)
    blobs = DirectoryBlobs(settings.resolved_files_dir())
    return Services(
        settings=settings, registry=registry, auth=auth, limiter=limiter, usage=usage, store=store, cpu=cpu, blobs=blobs
    )


async def close_services(services: Services) -> None:
    """Write queued usage, then close the limiter's connection and the store."""
    for closer in (getattr(services.usage, "aclose", None), getattr(services.limiter, "aclose", None)):
        if closer is not None:
            try:
                await closer()
            except Exception:
                log.exception("error while shutting down")
    services.cpu.close()
    if services.store is not None:
        services.store.close()


class DrainingServer(uvicorn.Server):
    """uvicorn with a drain first: the first SIGTERM (or SIGINT) runs ``Drain.run`` (readiness off, new
    requests 503, ``drain_grace_s`` for what is in flight, then the rest ended with an error event),
    and only then does uvicorn shut down; the process exits 0. A second signal stops at once."""

    def __init__(self, config: uvicorn.Config, services: Services) -> None:
        super().__init__(config)
        self.services = services
        self._drain_task: asyncio.Task[None] | None = None
        self._signalled = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)  # exits the process when it cannot bind
        if self.should_exit:
            return
        settings = self.services.settings
        host = f"[{settings.host}]" if ":" in settings.host else settings.host  # an IPv6 address in a URL
        ids = ", ".join(self.services.registry.ids())
        log.info("serving %s on http://%s:%d/v1", ids, host, settings.port)
        log.info("playground: http://%s:%d/ui/ (operators' console: /ui/console)", host, settings.port)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._signalled:
            super().handle_exit(sig, frame)
            return
        self._signalled = True
        loop = asyncio.get_event_loop()  # the server's, running in this (the main) thread
        loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.get_running_loop().create_task(self._drain(), name="drain")

    async def _drain(self) -> None:
        svc = self.services
        try:
            await svc.drain.run(svc.settings.drain_grace_s, busy=svc.runs.busy, on_cut=svc.runs.close)
        finally:
            self.should_exit = True


def run(settings: Settings) -> int:
    registry = asyncio.run(Registry.load(settings))
    services = build_services(settings, registry)
    app = create_app(services, on_shutdown=[functools.partial(close_services, services)])
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        http=client_protocol(
            header_timeout_s=settings.header_timeout_s,
            max_header_count=settings.max_header_count,
            max_header_bytes=settings.max_header_bytes,
        ),
        loop="uvloop",
        lifespan="on",
        log_config=None,  # faceplate.logs configured the handlers (text or JSON)
        access_log=False,  # one faceplate.access line per request, with more in it
        timeout_graceful_shutdown=5,
    )
    DrainingServer(config, services).run()  # says where it serves once it has bound (startup)
    return 0
