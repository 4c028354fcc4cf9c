"""Wire settings into services and run uvicorn."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from faceplate.api.call import Services
from faceplate.app import create_app
from faceplate.auth import Authenticator
from faceplate.config import Settings
from faceplate.engines.registry import Registry

log = logging.getLogger("faceplate.server")


def build_services(settings: Settings, registry: Registry) -> Services:
    return Services(settings=settings, registry=registry, auth=Authenticator(settings.api_keys))


def run(settings: Settings) -> int:
    registry = asyncio.run(Registry.load(settings))
    services = build_services(settings, registry)
    app = create_app(services)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        http="httptools",
        loop="uvloop",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    log.info("serving %s on http://%s:%d/v1", ", ".join(registry.ids()), settings.host, settings.port)
    server.run()
    return 0
