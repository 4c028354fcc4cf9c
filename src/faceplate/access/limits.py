"""Per-key rate limits: requests and tokens per minute, the way OpenAI enforces and reports them.

Algorithm: two token buckets per key, one for requests and one for tokens. Each holds at
most the per-minute limit and refills continuously at limit / 60 s (``window_s``), so a
key may burst up to its whole limit and then proceeds at the steady rate; a bucket left
alone is full again one window later. ``admit`` takes 1 request and the route's estimate
of tokens (prompt + max tokens) from both buckets at once, or from neither; when either
is short it raises ``RateLimited`` (429, ``type`` ``requests`` or ``tokens``) with the
exact wait in ``retry-after`` / ``retry-after-ms``. ``Lease.settle`` gives back what the
request reserved but did not use (or takes the excess). A request larger than the whole
token limit can never pass: it gets a 429 with ``x-should-retry: false``.

Every admitted response carries OpenAI's headers: ``x-ratelimit-limit-*`` (the per-minute
limit), ``x-ratelimit-remaining-*`` (what is left in the bucket after this request) and
``x-ratelimit-reset-*`` (how long until the bucket is full again, as ``1s``, ``6m0s``,
``120ms``). Keys without limits (static keys, anonymous) bypass the limiter and get none.

``MemoryLimiter`` keeps the buckets in this process (no awaits inside admit/settle, so
they are atomic on the event loop). ``RedisLimiter`` keeps them in Redis and runs each
admit and each settle as one Lua script, timed by Redis's own clock, so any number of
Faceplate processes sharing a Redis enforce one limit. If Redis cannot be reached, limited
keys fail closed: 503 ``rate_limiter_unavailable`` with ``retry-after: 1`` (the limit is
never silently lifted or multiplied); unlimited keys are unaffected. The Redis URL is only
ever logged with its password replaced by ``***``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from faceplate.access.auth import Principal
from faceplate.config import redact_url, scrub, url_secrets
from faceplate.errors import RateLimited, ServiceUnavailable

log = logging.getLogger("faceplate.access.limits")

DEFAULT_WINDOW_S = 60.0
EPS = 1e-6  # clock arithmetic in floats: a client that waits exactly retry-after must get in


@dataclass
class Lease:
    """An admitted request: the headers to send, and how to reconcile reserved tokens."""

    headers: dict[str, str] = field(default_factory=dict)

    async def settle(self, used_tokens: int) -> None:
        return None


class Limiter(Protocol):
    async def admit(self, principal: Principal, tokens: int) -> Lease:
        """Reserve one request and ``tokens`` tokens, or raise RateLimited."""
        ...


class Unlimited:
    async def admit(self, principal: Principal, tokens: int) -> Lease:
        return Lease()


def format_duration(seconds: float) -> str:
    """OpenAI's reset durations (Go's duration format at millisecond precision, rounded up).

    0 -> ``0s``; 0.12 -> ``120ms``; 1 -> ``1s``; 1.5 -> ``1.5s``; 360 -> ``6m0s``; 3723 -> ``1h2m3s``.
    """
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = str(rest // 1000) if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return f"{out}{secs}s"


def _bucket_key(principal: Principal) -> str:
    return principal.key_id or f"name:{principal.name}"


def _is_limited(principal: Principal) -> bool:
    return bool(principal.rpm) or bool(principal.tpm)


def _headers(principal: Principal, req_level: float | None, tok_level: float | None, window_s: float) -> dict[str, str]:
    out: dict[str, str] = {}
    rpm, tpm = principal.rpm, principal.tpm
    if rpm and req_level is not None:
        out["x-ratelimit-limit-requests"] = str(rpm)
        out["x-ratelimit-remaining-requests"] = str(max(0, math.floor(req_level + 1e-9)))
        out["x-ratelimit-reset-requests"] = format_duration((rpm - req_level) * window_s / rpm)
    if tpm and tok_level is not None:
        out["x-ratelimit-limit-tokens"] = str(tpm)
        out["x-ratelimit-remaining-tokens"] = str(max(0, math.floor(tok_level + 1e-9)))
        out["x-ratelimit-reset-tokens"] = format_duration((tpm - tok_level) * window_s / tpm)
    return out


def check_size(principal: Principal, tokens: int, window_s: float) -> None:
    """A request that by itself asks for more than the key's whole TPM can never pass: 429, not worth retrying."""
    if principal.tpm and tokens > principal.tpm:
        raise too_large(principal, tokens, window_s)


def too_large(principal: Principal, tokens: int, window_s: float) -> RateLimited:
    err = RateLimited(
        f"Request too large for key {principal.name} on tokens per min (TPM): Limit {principal.tpm}, Requested {tokens}. "
        "The input or output tokens must be reduced in order to run successfully.",
        limit_type="tokens",
        retry_after_s=window_s,
        headers={"x-should-retry": "false"},
    )
    return err


def _rejected(principal: Principal, kind: str, level: float, cost: float, wait_s: float, headers: dict[str, str]) -> RateLimited:
    limit = principal.rpm if kind == "requests" else principal.tpm
    short = "RPM" if kind == "requests" else "TPM"
    # Whole milliseconds, rounded up (the nudge survives RateLimited's int()): a client that waits exactly that long gets in.
    wait_s = math.ceil(wait_s * 1000 - 1e-6) / 1000 + 1e-6
    used = max(0, math.ceil((limit or 0) - level))
    return RateLimited(
        f"Rate limit reached for key {principal.name} on {kind} per min ({short}): Limit {limit}, Used {used}, "
        f"Requested {int(cost)}. Please try again in {format_duration(wait_s)}.",
        limit_type=kind,
        retry_after_s=wait_s,
        headers=headers,
    )


@dataclass
class BucketLease(Lease):
    """A lease whose unused tokens go back to the bucket when the request finishes."""

    reserved: int = 0
    give_back: Callable[[int], Awaitable[None]] | None = None
    settled: bool = False

    async def settle(self, used_tokens: int) -> None:
        if self.settled or self.give_back is None:
            return
        self.settled = True
        delta = self.reserved - used_tokens
        if delta:
            await self.give_back(delta)


# -- in-process ---------------------------------------------------------------------------


@dataclass
class _Bucket:
    level: float
    at: float

    def refill(self, now: float, capacity: float, window_s: float) -> float:
        self.level = min(capacity, self.level + max(0.0, now - self.at) * capacity / window_s)
        self.at = now
        return self.level


class MemoryLimiter:
    """Token buckets in this process. ``clock`` is injectable so tests need not wait a minute."""

    def __init__(self, *, window_s: float = DEFAULT_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def _bucket(self, key: str, kind: str, capacity: int, now: float) -> _Bucket:
        b = self._buckets.get((key, kind))
        if b is None:
            b = self._buckets[(key, kind)] = _Bucket(float(capacity), now)
        b.refill(now, capacity, self.window_s)
        return b

    async def admit(self, principal: Principal, tokens: int) -> Lease:
        if not _is_limited(principal):
            return Lease()
        check_size(principal, tokens, self.window_s)
        # Everything below runs without an await: atomic on the event loop.
        now = self._clock()
        key = _bucket_key(principal)
        req = self._bucket(key, "requests", principal.rpm, now) if principal.rpm else None
        tok = self._bucket(key, "tokens", principal.tpm, now) if principal.tpm else None
        if req is not None and req.level < 1 - EPS:
            wait = (1 - req.level) * self.window_s / principal.rpm  # type: ignore[operator]
            hdrs = _headers(principal, req.level, tok.level if tok else None, self.window_s)
            raise _rejected(principal, "requests", req.level, 1, wait, hdrs)
        if tok is not None and tok.level < tokens - EPS:
            wait = (tokens - tok.level) * self.window_s / principal.tpm  # type: ignore[operator]
            hdrs = _headers(principal, req.level if req else None, tok.level, self.window_s)
            raise _rejected(principal, "tokens", tok.level, tokens, wait, hdrs)
        if req is not None:
            req.level -= 1
        if tok is not None:
            tok.level -= tokens
        headers = _headers(principal, req.level if req else None, tok.level if tok else None, self.window_s)
        give_back = None
        if tok is not None:
            tpm = principal.tpm

            async def give_back(delta: int) -> None:
                b = self._bucket(key, "tokens", tpm, self._clock())  # type: ignore[arg-type]
                b.level = max(-float(tpm), min(float(tpm), b.level + delta))  # type: ignore[arg-type]

        return BucketLease(headers=headers, reserved=tokens, give_back=give_back)


# -- shared through Redis -------------------------------------------------------------------

# Both buckets of a key in one script: refill, check both, take from both or neither.
# KEYS: request bucket, token bucket. ARGV: now_ms ("" = Redis TIME), window_ms, rpm, tpm, cost (0 = none).
# Returns {status (0 ok, 1 requests, 2 tokens), request level, token level, wait_ms}.
_ADMIT_LUA = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local window = tonumber(ARGV[2])
local rpm, tpm, cost = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function level(key, cap)
  local v = redis.call('HMGET', key, 'l', 't')
  local l, t = tonumber(v[1]), tonumber(v[2])
  if not l then return cap end
  local elapsed = now - t
  if elapsed < 0 then elapsed = 0 end
  return math.min(cap, l + elapsed * cap / window)
end
local rl, tl = -1, -1
if rpm > 0 then rl = level(KEYS[1], rpm) end
if tpm > 0 then tl = level(KEYS[2], tpm) end
if rpm > 0 and rl < 1 - 1e-6 then
  return {1, tostring(rl), tostring(tl), tostring((1 - rl) * window / rpm)}
end
if tpm > 0 and tl < cost - 1e-6 then
  return {2, tostring(rl), tostring(tl), tostring((cost - tl) * window / tpm)}
end
if rpm > 0 then
  rl = rl - 1
  redis.call('HSET', KEYS[1], 'l', tostring(rl), 't', tostring(now))
  redis.call('PEXPIRE', KEYS[1], window + 1000)
end
if tpm > 0 then
  tl = tl - cost
  redis.call('HSET', KEYS[2], 'l', tostring(tl), 't', tostring(now))
  redis.call('PEXPIRE', KEYS[2], window + 1000)
end
return {0, tostring(rl), tostring(tl), '0'}
"""

# Give back (or take) tokens after the request. KEYS: token bucket. ARGV: now_ms, window_ms, tpm, delta.
_SETTLE_LUA = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local window, tpm, delta = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 'l', 't')
local l, t = tonumber(v[1]), tonumber(v[2])
if not l then l = tpm; t = now end
local elapsed = now - t
if elapsed < 0 then elapsed = 0 end
l = math.min(tpm, l + elapsed * tpm / window) + delta
if l > tpm then l = tpm end
if l < -tpm then l = -tpm end
redis.call('HSET', KEYS[1], 'l', tostring(l), 't', tostring(now))
redis.call('PEXPIRE', KEYS[1], window + 1000)
return tostring(l)
"""


class RedisLimiter:
    """Token buckets in Redis, shared by every process that uses the same ``url`` and ``prefix``.

    ``clock`` (seconds) replaces Redis's own clock; tests use it, servers must not (every
    process must read the same clock, and Redis's is the one they share).
    """

    def __init__(
        self,
        url: str,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        prefix: str = "faceplate:ratelimit:",
        timeout_s: float = 0.5,
        retry_after_s: float = 1.0,
        clock: Callable[[], float] | None = None,
        client: Any = None,
    ) -> None:
        import redis.asyncio as aioredis

        self.url = redact_url(url)  # for logs and messages: never the password
        self._secrets = url_secrets(url)
        self.window_s = window_s
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._redis = client or aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
        )
        self._admit = self._redis.register_script(_ADMIT_LUA)
        self._settle = self._redis.register_script(_SETTLE_LUA)
        self._down_until = 0.0
        self._last_log = 0.0

    def _keys(self, principal: Principal) -> list[str]:
        base = f"{self.prefix}{{{_bucket_key(principal)}}}"  # hash tag: both buckets in one cluster slot
        return [f"{base}:requests", f"{base}:tokens"]

    def _scrub(self, exc: BaseException) -> str:
        """An exception's text without the URL's password (a client library may quote the URL)."""
        return scrub(str(exc), self._secrets)

    def _now_arg(self) -> str:
        return "" if self._clock is None else str(int(self._clock() * 1000))

    def _unavailable(self, exc: BaseException | None) -> ServiceUnavailable:
        now = time.monotonic()
        if exc is not None:
            self._down_until = now + self.retry_after_s
            if now - self._last_log > 10:
                self._last_log = now
                log.warning(
                    "rate limiter: Redis at %s is unreachable (%s); limited keys get 503 until it is back",
                    self.url,
                    self._scrub(exc),
                )
        err = ServiceUnavailable(
            "Rate limiting is temporarily unavailable, so requests with rate-limited keys cannot be admitted. "
            "Please retry shortly.",
            code="rate_limiter_unavailable",
            headers={"retry-after": str(max(1, math.ceil(self.retry_after_s)))},
        )
        return err

    async def admit(self, principal: Principal, tokens: int) -> Lease:
        if not _is_limited(principal):
            return Lease()
        check_size(principal, tokens, self.window_s)
        if time.monotonic() < self._down_until:
            raise self._unavailable(None)  # fail fast while Redis is known to be down
        window_ms = max(1, int(self.window_s * 1000))
        keys = self._keys(principal)
        args = [self._now_arg(), window_ms, principal.rpm or 0, principal.tpm or 0, tokens if principal.tpm else 0]
        try:
            status, rl, tl, wait_ms = await self._admit(keys=keys, args=args)
        except Exception as exc:  # connection refused, timeout, NOSCRIPT races, ...
            raise self._unavailable(exc) from exc
        req_level = float(rl) if principal.rpm else None
        tok_level = float(tl) if principal.tpm else None
        headers = _headers(principal, req_level, tok_level, self.window_s)
        status = int(status)
        if status == 1:
            raise _rejected(principal, "requests", req_level or 0.0, 1, float(wait_ms) / 1000, headers)
        if status == 2:
            raise _rejected(principal, "tokens", tok_level or 0.0, tokens, float(wait_ms) / 1000, headers)
        give_back = None
        if principal.tpm:
            tpm = principal.tpm

            async def give_back(delta: int) -> None:
                try:
                    await self._settle(keys=keys[1:], args=[self._now_arg(), window_ms, tpm, delta])
                except Exception as exc:  # the reservation stays charged: conservative, and it refills anyway
                    log.warning("rate limiter: could not settle %+d tokens in Redis: %s", delta, self._scrub(exc))

        return BucketLease(headers=headers, reserved=tokens if principal.tpm else 0, give_back=give_back)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def aclose(self) -> None:
        await self._redis.aclose()
