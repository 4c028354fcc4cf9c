"""API keys: created with a random secret shown once, stored only as its SHA-256 hash.

A key is ``sk-fp-`` followed by 43 URL-safe characters (256 random bits). The table keeps
its hash (unique, indexed: the lookup), a visible prefix for listings, the models it may
use, its per-minute limits, and created / expires / revoked times. Keys are revoked, never
deleted, so usage rows keep pointing at a name.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from faceplate.access.auth import STORED_KEY_PREFIX, Principal, hash_key
from faceplate.errors import ServiceUnavailable
from faceplate.store.db import read_transaction, write_transaction
from faceplate.store.schema import api_keys

SECRET_PREFIX = STORED_KEY_PREFIX  # the Authenticator looks up only tokens of this shape (auth.could_be_stored_key)
VISIBLE_CHARS = len(SECRET_PREFIX) + 4  # "sk-fp-AbCd": enough to tell keys apart, 24 of 256 bits

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def generate_secret() -> str:
    """``sk-fp-`` and 43 URL-safe characters: the shape ``auth.could_be_stored_key`` accepts (keep the two in step)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not m:
        raise ValueError(f"invalid duration {text!r}: use a number with s, m, h, d or w (e.g. 30d)")
    seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be positive")
    return seconds


def parse_time(text: str) -> float:
    """An ISO 8601 date or date-time (UTC when no offset is given) -> Unix seconds."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"invalid date/time {text!r}: use ISO 8601, e.g. 2026-12-31 or 2026-12-31T23:59:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    models: tuple[str, ...] | None
    rpm: int | None
    tpm: int | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    key_hash: str
    batch_token_limit: int | None = None  # None: the server's batch_token_limit setting

    def status(self, now: float | None = None) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (time.time() if now is None else now):
            return "expired"
        return "active"

    def principal(self) -> Principal:
        return self._principal

    @cached_property
    def _principal(self) -> Principal:  # built once per cached row, not per request
        models = frozenset(self.models) if self.models is not None else None
        return Principal(key_id=self.id, name=self.name, models=models, rpm=self.rpm, tpm=self.tpm)

    def to_json(self) -> dict[str, Any]:
        """The public view: never the secret, never the hash."""
        return {
            "object": "api_key",
            "id": self.id,
            "name": self.name,
            "redacted_value": self.prefix + "...",
            "models": list(self.models) if self.models is not None else None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "batch_token_limit": self.batch_token_limit,
            "created_at": int(self.created_at),
            "expires_at": None if self.expires_at is None else int(self.expires_at),
            "revoked_at": None if self.revoked_at is None else int(self.revoked_at),
            "status": self.status(),
        }

    @classmethod
    def from_row(cls, row: Any) -> ApiKey:
        models = json.loads(row.models) if row.models is not None else None
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            models=tuple(models) if models is not None else None,
            rpm=row.rpm,
            tpm=row.tpm,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            key_hash=row.key_hash,
            batch_token_limit=row.batch_token_limit,
        )


class KeyStore:
    """Synchronous key operations (the CLI calls them directly; the server through a thread)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self,
        name: str,
        *,
        models: Sequence[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        expires_at: float | None = None,
        batch_token_limit: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret. The secret is not stored and cannot be shown again."""
        if not name.strip():
            raise ValueError("a key needs a name")
        for label, value in (("rpm", rpm), ("tpm", tpm), ("batch_token_limit", batch_token_limit)):
            if value is not None and value < 1:
                raise ValueError(f"{label} must be at least 1")
        secret = generate_secret()
        key = ApiKey(
            id="key_" + secrets.token_hex(12),
            name=name.strip(),
            prefix=secret[:VISIBLE_CHARS],
            models=tuple(dict.fromkeys(models)) if models is not None else None,
            rpm=rpm,
            tpm=tpm,
            created_at=time.time(),
            expires_at=expires_at,
            revoked_at=None,
            key_hash=hash_key(secret),
            batch_token_limit=batch_token_limit,
        )
        with write_transaction(self._engine) as conn:
            conn.execute(
                insert(api_keys).values(
                    id=key.id,
                    name=key.name,
                    key_hash=key.key_hash,
                    prefix=key.prefix,
                    models=json.dumps(list(key.models)) if key.models is not None else None,
                    rpm=rpm,
                    tpm=tpm,
                    created_at=key.created_at,
                    expires_at=expires_at,
                    revoked_at=None,
                    batch_token_limit=batch_token_limit,
                )
            )
        return key, secret

    def list(self, *, include_inactive: bool = True) -> list[ApiKey]:
        with read_transaction(self._engine) as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)).all()
        keys = [ApiKey.from_row(r) for r in rows]
        return keys if include_inactive else [k for k in keys if k.status() == "active"]

    def get(self, key_id: str) -> ApiKey | None:
        with read_transaction(self._engine) as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        return ApiKey.from_row(row) if row is not None else None

    def by_hash(self, key_hash: str) -> ApiKey | None:
        with read_transaction(self._engine) as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash)).first()
        return ApiKey.from_row(row) if row is not None else None

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke a key (idempotent: a revoked key keeps its first revocation time). None if there is no such key."""
        with write_transaction(self._engine) as conn:
            conn.execute(
                update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=time.time())
            )
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        return ApiKey.from_row(row) if row is not None else None

    def any(self) -> bool:
        """Whether any key was ever created (revoked and expired ones count: auth never switches back off)."""
        with read_transaction(self._engine) as conn:
            return bool(conn.scalar(select(func.count()).select_from(api_keys)))


def _store_down() -> ServiceUnavailable:
    return ServiceUnavailable("The API key store is unavailable. Please retry shortly.", headers={"retry-after": "1"})


@dataclass
class _Entry:
    key: ApiKey | None
    fetched: float


class CachedKeyLookup:
    """The Authenticator's view of the store (``auth.KeyLookup``), with a short in-process cache.

    A key's row is cached for ``ttl_s`` seconds (at most ``max_entries`` of them, least
    recently used dropped first), so under load auth costs no database round trip. Misses
    (hashes no key has) are cached apart, for the same time, in a smaller LRU of their own
    (``max_misses``): an unknown token sent again and again costs one query per ``ttl_s``,
    and no number of unknown tokens pushes a real key out of the cache. (Tokens not shaped
    like a stored key never get here: see ``auth.could_be_stored_key``.) Revocation in
    another process takes effect here within ``ttl_s``; in this process (admin API) at once.
    Expiry is checked on every use. Concurrent misses for the same key share one query. A
    database that cannot be reached is a 503, never a 401 and never a stale answer.
    """

    def __init__(
        self,
        keys: KeyStore,
        *,
        ttl_s: float = 5.0,
        max_entries: int = 10_000,
        max_misses: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_misses = max_misses
        self._clock = clock
        self._wall = wall
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # keys that exist (active or not)
        self._misses: OrderedDict[str, float] = OrderedDict()  # hashes no key has -> when that was learnt
        self._inflight: dict[str, asyncio.Task[ApiKey | None]] = {}
        self._has_keys = False
        self._has_keys_checked = -float("inf")
        self.queries = 0  # database lookups made, for tests and benchmarks

    async def principal_for_hash(self, key_hash: str) -> Principal | None:
        key = await self._key(key_hash)
        if key is None or key.status(self._wall()) != "active":
            return None
        return key.principal()

    async def _key(self, key_hash: str) -> ApiKey | None:
        entry = self._entries.get(key_hash)
        if entry is not None and self._clock() - entry.fetched < self.ttl_s:
            self._entries.move_to_end(key_hash)
            return entry.key
        missed = self._misses.get(key_hash)
        if missed is not None and self._clock() - missed < self.ttl_s:
            self._misses.move_to_end(key_hash)
            return None
        task = self._inflight.get(key_hash)
        if task is None:
            # A task of its own: a caller that is cancelled does not cancel the others' lookup.
            task = asyncio.ensure_future(self._fetch(key_hash))
            self._inflight[key_hash] = task
            task.add_done_callback(lambda t: self._done(key_hash, t))
        return await asyncio.shield(task)

    def _done(self, key_hash: str, task: asyncio.Task[ApiKey | None]) -> None:
        self._inflight.pop(key_hash, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so an unawaited failure is not logged as lost

    async def _fetch(self, key_hash: str) -> ApiKey | None:
        self.queries += 1
        try:
            key = await asyncio.to_thread(self.keys.by_hash, key_hash)
        except Exception as exc:
            raise _store_down() from exc
        if key is None:
            self._entries.pop(key_hash, None)
            self._remember(self._misses, key_hash, self._clock(), self.max_misses)
        else:
            self._misses.pop(key_hash, None)
            self._remember(self._entries, key_hash, _Entry(key, self._clock()), self.max_entries)
        return key

    @staticmethod
    def _remember(cache: OrderedDict[str, Any], key_hash: str, value: Any, limit: int) -> None:
        cache[key_hash] = value
        cache.move_to_end(key_hash)
        while len(cache) > limit:
            cache.popitem(last=False)

    async def has_keys(self) -> bool:
        """Whether the store holds a key; checked at most once per ``ttl_s`` until it does."""
        if self._has_keys:
            return True
        now = self._clock()
        if now - self._has_keys_checked >= self.ttl_s:
            self._has_keys_checked = now
            try:
                self._has_keys = await asyncio.to_thread(self.keys.any)
            except Exception as exc:
                raise _store_down() from exc
        return self._has_keys

    def key_created(self) -> None:
        self._has_keys = True

    def invalidate(self, key_hash: str | None = None) -> None:
        if key_hash is None:
            self._entries.clear()
            self._misses.clear()
        else:
            self._entries.pop(key_hash, None)
            self._misses.pop(key_hash, None)
