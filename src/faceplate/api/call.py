"""What every /v1 endpoint shares: the services it is given, body reading, per-call accounting."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from faceplate.access.auth import Authenticator, Principal
from faceplate.config import Settings
from faceplate.engines.registry import Registry
from faceplate.errors import FaceplateError, PayloadTooLarge
from faceplate.access.limits import Lease, Limiter, Unlimited
from faceplate.access.usage import NullUsage, UsageRecord, UsageSink

if TYPE_CHECKING:
    from faceplate.store import Store


@dataclass
class Services:
    """Everything a route needs, passed in explicitly (no app.state service locator)."""

    settings: Settings
    registry: Registry
    auth: Authenticator
    limiter: Limiter = field(default_factory=Unlimited)
    usage: UsageSink = field(default_factory=NullUsage)
    store: Store | None = None  # keys and usage, for the admin API; None: no store


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body of {declared} bytes exceeds the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class Call:
    """One metered API call: reserves limits on admission, records usage exactly once at the end."""

    services: Services
    principal: Principal
    endpoint: str
    model: str
    lease: Lease = field(default_factory=Lease)
    started: float = field(default_factory=time.monotonic)
    _done: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return self.lease.headers

    async def admit(self, tokens: int) -> None:
        try:
            self.lease = await self.services.limiter.admit(self.principal, tokens)
        except FaceplateError as exc:  # 429 (or 503: limiter down) is recorded too, with no tokens
            await self.finish(exc.status, 0, 0)
            raise

    async def finish(self, status: int, prompt_tokens: int, completion_tokens: int) -> None:
        if self._done:
            return
        self._done = True
        await self.lease.settle(prompt_tokens + completion_tokens)
        self.services.usage.record(
            UsageRecord(
                key_id=self.principal.key_id,
                model=self.model,
                endpoint=self.endpoint,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                status=status,
                latency_ms=(time.monotonic() - self.started) * 1000,
                created=time.time(),
            )
        )
