"""Metering one API call: limits admitted before the work, usage recorded exactly once after it.

``Meter.admit`` reserves one request and an *estimate* of tokens (cheap, before any
template or tokenizer runs, so the requests-per-minute check costs nothing);
``Meter.finish`` settles the lease to the real count and records usage, once, whatever
ended the call: success, an error, the client leaving (499) or a bug (500).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from faceplate.access.auth import Principal
from faceplate.access.limits import Lease, Limiter, check_size
from faceplate.access.usage import UsageRecord, UsageSink
from faceplate.errors import FaceplateError

CLIENT_GONE = 499  # nginx's "client closed request": the caller left before the answer


def status_of(exc: BaseException | None) -> int:
    """The status a call ended with, for usage: its error's, 499 if cancelled, 500 for a bug."""
    if exc is None:
        return 200
    if isinstance(exc, FaceplateError):
        return exc.status
    if isinstance(exc, BaseException) and not isinstance(exc, Exception):  # CancelledError, GeneratorExit
        return CLIENT_GONE
    return 500


@dataclass
class Meter:
    limiter: Limiter
    usage: UsageSink
    principal: Principal
    endpoint: str
    model: str
    window_s: float = 60.0
    lease: Lease = field(default_factory=Lease)
    started: float = field(default_factory=time.monotonic)
    done: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return self.lease.headers

    async def admit(self, estimated_tokens: int) -> None:
        try:
            self.lease = await self.limiter.admit(self.principal, estimated_tokens)
        except FaceplateError as exc:  # 429 (or 503: limiter down) is recorded too, with no tokens
            await self.finish(exc.status, 0, 0)
            raise

    def check_size(self, tokens: int) -> None:
        """With the real prompt counted: a request asking for more than the key's whole TPM can never pass."""
        check_size(self.principal, tokens, self.window_s)

    async def finish(self, status: int, prompt_tokens: int, completion_tokens: int) -> None:
        if self.done:
            return
        self.done = True
        try:
            await self.lease.settle(prompt_tokens + completion_tokens)
        finally:
            self.usage.record(
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
