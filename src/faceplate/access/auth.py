"""Who is calling: a Bearer API key becomes a Principal (allowed models, limits).

Static keys come from settings; stored keys (``faceplate keys create``) from the key
store, looked up by their SHA-256 hash. Secrets are compared with hmac.compare_digest.

Auth is on when a static key is configured or the store holds a key. A server that
started with neither asks the store again (``KeyLookup.has_keys``, cached for a few
seconds) so a key created later from the CLI turns auth on without a restart; once on,
it stays on. Until then, a request that presents a stored key is still treated as that
key (its models and limits), so a key made on another replica is never served anonymously.

Stored keys have one shape (``sk-fp-`` and 43 URL-safe characters, see ``store.keys``): a
token of any other shape is refused without asking the store, so garbage tokens cost no
database round trip and never touch the key cache.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Protocol

from starlette.datastructures import Headers

from faceplate.errors import InvalidApiKey, ModelNotFound


@dataclass(frozen=True)
class Principal:
    key_id: str | None  # None: anonymous (no keys configured) or a static key
    name: str
    models: frozenset[str] | None = None  # None: every model
    rpm: int | None = None
    tpm: int | None = None
    static_id: str | None = None  # a static key: a short hash of it, so each static key owns its own objects

    @property
    def owner(self) -> str:
        """Who stored objects (responses, conversations) belong to: another key sees none of them."""
        if self.key_id is not None:
            return self.key_id
        return f"static:{self.static_id}" if self.static_id else "anonymous"

    def check_model(self, model: str, served_as: str | None = None) -> None:
        """``served_as``: the model an alias names; a key allowed either name may use it."""
        if not self.can_see(model, served_as):
            raise ModelNotFound(model)

    def can_see(self, model: str, served_as: str | None = None) -> bool:
        return self.models is None or model in self.models or served_as in self.models


ANONYMOUS = Principal(key_id=None, name="anonymous")

# The shape of every stored key: store.keys.generate_secret makes them, secrets.token_urlsafe(32).
STORED_KEY_PREFIX = "sk-fp-"
STORED_KEY_RANDOM_CHARS = 43  # 32 random bytes, URL-safe base64 without padding
_STORED_KEY = re.compile(re.escape(STORED_KEY_PREFIX) + rf"[A-Za-z0-9_-]{{{STORED_KEY_RANDOM_CHARS}}}")


def could_be_stored_key(secret: str) -> bool:
    """Whether ``secret`` has the shape of a stored key; anything else is not worth a store lookup."""
    return len(secret) == len(STORED_KEY_PREFIX) + STORED_KEY_RANDOM_CHARS and _STORED_KEY.fullmatch(secret) is not None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyLookup(Protocol):
    async def principal_for_hash(self, key_hash: str) -> Principal | None:
        """The active (not revoked, not expired) key with this hash, or None."""
        ...

    async def has_keys(self) -> bool:
        """Whether the store holds at least one key (then auth is required)."""
        ...


class Authenticator:
    def __init__(self, static_keys: list[str], store: KeyLookup | None = None, *, store_has_keys: bool = False) -> None:
        self._static = [hash_key(k) for k in static_keys]
        self._store = store
        self.enabled = bool(static_keys) or store_has_keys

    def enable_store(self) -> None:
        self.enabled = self._store is not None

    def invalidate(self, key_hash: str | None = None) -> None:
        """Forget cached lookups (one key's, or all) so a revocation here takes effect at once."""
        forget = getattr(self._store, "invalidate", None)
        if forget is not None:
            forget(key_hash)

    async def authenticate(self, headers: Headers) -> Principal:
        auth = headers.get("authorization", "")
        scheme, _, secret = auth.partition(" ")
        secret = secret.strip()
        if not self.enabled:
            if self._store is None:
                return ANONYMOUS
            if scheme.lower() == "bearer" and could_be_stored_key(secret):
                # A stored key is honoured (with its models and limits) even before this process
                # has noticed that the store holds keys: another replica may have just made it.
                principal = await self._store.principal_for_hash(hash_key(secret))
                if principal is not None:
                    self.enabled = True
                    return principal
            has_keys = getattr(self._store, "has_keys", None)
            if has_keys is None or not await has_keys():
                return ANONYMOUS
            self.enabled = True
        if scheme.lower() != "bearer" or not secret:
            raise InvalidApiKey(
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        digest = hash_key(secret)
        # Compare against every static key, without stopping early, so timing says nothing.
        matched = False
        for known in self._static:
            matched |= hmac.compare_digest(known, digest)
        if matched:
            return Principal(key_id=None, name="static", static_id=digest[:16])
        if self._store is not None and could_be_stored_key(secret):
            principal = await self._store.principal_for_hash(digest)
            if principal is not None:
                return principal
        shown = secret[:3] + "*" * 4 + secret[-4:] if len(secret) > 8 else "*" * len(secret)
        raise InvalidApiKey(f"Incorrect API key provided: {shown}. You can find your API key in your Faceplate admin.")
