"""Metering one API call: limits admitted before the work, usage recorded exactly once after it.

Two steps, so a key over its requests-per-minute costs nothing:
- ``admit`` takes one request and an *estimate* of the tokens (about four characters a
  token), before any template or tokenizer runs;
- ``reserve``, once the engine has counted the prompt, tops the reservation up to the real
  prompt plus the completion budget (or 429s), so bursts are held to the key's TPM exactly.
``finish`` settles the lease to what was really used and records usage, once, whatever
ended the call: success, an error, the client leaving (499) or a bug (500).

A request without ``max_tokens`` reserves ``completion`` (the server's bounded default)
but never more than the key's TPM leaves beside its prompt: it is "too large" (429, not
worth retrying) only when what it asks for by itself exceeds the whole TPM.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from faceplate.access.auth import Principal
from faceplate.access.limits import BucketLease, Lease, Limiter, check_size
from faceplate.access.usage import UsageRecord, UsageSink
from faceplate.errors import FaceplateError, RateLimited
from faceplate.service import request_log
from faceplate.service.metrics import Metrics

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
    metrics: Metrics | None = None

    @property
    def headers(self) -> dict[str, str]:
        return self.lease.headers

    def _total(self, prompt: int, completion: int, explicit: bool) -> int:
        tpm = self.principal.tpm
        if tpm and not explicit:
            completion = min(completion, max(0, tpm - prompt))
        return prompt + completion

    def _check_size(self, prompt: int, completion: int, explicit: bool) -> None:
        check_size(self.principal, prompt + (completion if explicit else 0), self.window_s)

    async def admit(self, prompt_estimate: int, completion: int, *, explicit: bool) -> None:
        """Before the work: one request and an estimate of its tokens."""
        total = self._total(prompt_estimate, completion, explicit)
        try:
            self._check_size(prompt_estimate, completion, explicit)
            self.lease = await self.limiter.admit(self.principal, total)
        except FaceplateError as exc:  # 429 (or 503: limiter down) is recorded too, with no tokens
            if isinstance(exc, RateLimited) and self.metrics is not None:
                self.metrics.rate_limited.labels(exc.type).inc()
            await self.finish(exc.status, 0, 0)
            raise

    async def reserve(self, prompt_tokens: int, completion: int, *, explicit: bool) -> None:
        """With the prompt counted: the size check, then the rest of the reservation (the caller settles on failure)."""
        self._check_size(prompt_tokens, completion, explicit)
        lease = self.lease
        if not isinstance(lease, BucketLease) or lease.give_back is None:
            return  # no token limit to hold
        extra = self._total(prompt_tokens, completion, explicit) - lease.reserved
        if extra <= 0:
            return
        more = await self.limiter.admit(replace(self.principal, rpm=None), extra)  # the token bucket alone
        lease.reserved += extra
        lease.headers.update({k: v for k, v in more.headers.items() if k.endswith("-tokens")})

    async def finish(self, status: int, prompt_tokens: int, completion_tokens: int) -> None:
        if self.done:
            return
        self.done = True
        elapsed = time.monotonic() - self.started
        request_log.note(model=self.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        if self.metrics is not None:
            m = self.metrics
            m.requests.labels(self.endpoint, self.model, str(status)).inc()
            m.prompt_tokens.labels(self.model).inc(prompt_tokens)
            m.generation_tokens.labels(self.model).inc(completion_tokens)
            if status < 400:
                m.e2e.labels(self.model).observe(elapsed)
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
                    latency_ms=elapsed * 1000,
                    created=time.time(),
                )
            )
