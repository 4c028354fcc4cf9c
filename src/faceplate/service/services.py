"""Everything a caller of the service layer needs, built once and passed in (no app.state locator)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from faceplate.access.auth import Authenticator, Principal
from faceplate.access.limits import Limiter, Unlimited
from faceplate.access.usage import NullUsage, UsageSink
from faceplate.config import Settings
from faceplate.engines.base import ChatEngine, EmbeddingEngine, Priority
from faceplate.engines.registry import Registry
from faceplate.service.cpu import CpuPool
from faceplate.service.drain import Drain
from faceplate.service.metering import Meter
from faceplate.service.metrics import Metrics
from faceplate.service.response_runs import Runs

if TYPE_CHECKING:
    from faceplate.store import Store
    from faceplate.store.blobs import BlobStore


@dataclass
class Services:
    settings: Settings
    registry: Registry
    auth: Authenticator
    limiter: Limiter = field(default_factory=Unlimited)
    usage: UsageSink = field(default_factory=NullUsage)
    store: Store | None = None  # keys and usage, for the admin API; None: no store
    cpu: CpuPool = field(default_factory=CpuPool)
    runs: Runs = field(default_factory=Runs)  # Responses being generated in this process
    blobs: BlobStore | None = None  # uploaded files' bytes (their metadata is in the store); None: no Files API
    priority: Priority = "interactive"  # the engines' queue this caller's work goes in (Batch API lines: "batch")
    drain: Drain = field(default_factory=Drain)  # the server's shutdown state (SIGTERM starts it)
    metrics: Metrics = field(default=None)  # type: ignore[assignment]  # made in __post_init__ (needs the registry)

    def __post_init__(self) -> None:
        if self.metrics is None:
            self.metrics = Metrics(self.registry.stats)

    def chat_engine(self, principal: Principal, model: str) -> ChatEngine:
        """The chat engine a name (model id or alias) stands for, if this principal may use it."""
        principal.check_model(model, self.registry.resolve(model))
        return self.registry.chat(model)

    def embedding_engine(self, principal: Principal, model: str) -> EmbeddingEngine:
        principal.check_model(model, self.registry.resolve(model))
        return self.registry.embedding(model)

    def meter(self, principal: Principal, endpoint: str, model: str) -> Meter:
        return Meter(
            self.limiter, self.usage, principal, endpoint, model, window_s=self.settings.rate_limit_window_s, metrics=self.metrics
        )
