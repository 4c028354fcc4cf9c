"""Hostile bearer tokens: malformed ones never reach the store, unknown ones never evict real keys."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest
from starlette.datastructures import Headers

from faceplate.access.auth import Authenticator, hash_key
from faceplate.errors import InvalidApiKey
from faceplate.store.keys import ApiKey, CachedKeyLookup, generate_secret


def bearer(secret: str) -> Headers:
    return Headers({"authorization": f"Bearer {secret}"})


def well_formed() -> str:
    """Shaped like a stored key, but no key has it."""
    return "sk-fp-" + secrets.token_urlsafe(32)


class FakeKeys:
    """The slice of KeyStore that CachedKeyLookup uses, counting lookups per hash."""

    def __init__(self) -> None:
        self.rows: dict[str, ApiKey] = {}
        self.lookups: dict[str, int] = {}

    def add(self, name: str) -> str:
        secret = generate_secret()
        digest = hash_key(secret)
        self.rows[digest] = ApiKey(
            id=f"key_{name}",
            name=name,
            prefix=secret[:10],
            models=None,
            rpm=None,
            tpm=None,
            created_at=time.time(),
            expires_at=None,
            revoked_at=None,
            key_hash=digest,
        )
        return secret

    def by_hash(self, key_hash: str) -> ApiKey | None:
        self.lookups[key_hash] = self.lookups.get(key_hash, 0) + 1
        return self.rows.get(key_hash)

    def any(self) -> bool:
        return bool(self.rows)

    @property
    def total(self) -> int:
        return sum(self.lookups.values())


async def refused(auth: Authenticator, token: str) -> None:
    with pytest.raises(InvalidApiKey):
        await auth.authenticate(bearer(token))


def test_generated_secrets_have_the_stored_key_shape() -> None:
    from faceplate.access.auth import could_be_stored_key

    for _ in range(500):
        assert could_be_stored_key(generate_secret())
    for bad in ("", "sk-fp-", "sk-fp-short", "sk-x-" + "a" * 44, well_formed() + "a", well_formed()[:-1], "sk-fp-" + "+" * 43):
        assert not could_be_stored_key(bad)


@pytest.mark.parametrize("store_has_keys", [True, False])
async def test_malformed_tokens_cost_no_store_lookup(store_has_keys: bool) -> None:
    keys = FakeKeys()
    real = keys.add("alice")
    lookup = CachedKeyLookup(keys, ttl_s=60)  # type: ignore[arg-type]
    auth = Authenticator([], lookup, store_has_keys=store_has_keys)
    malformed = [
        "sk-anything",
        "sk-fp-anything",
        "sk-fp-" + "A" * 42,  # one short
        "sk-fp-" + "A" * 44,  # one long
        "sk-fp-" + "A" * 42 + "=",  # outside the URL-safe alphabet
        "sk-fp-" + "A" * 42 + "\u00e9",
        "SK-FP-" + real[6:],
        "x" * 4000,
    ]
    for token in malformed * 20:
        await refused(auth, token)
    assert keys.total == 0
    assert (await auth.authenticate(bearer(real))).name == "alice" and keys.total == 1


async def test_static_keys_of_any_shape_still_work() -> None:
    keys = FakeKeys()
    auth = Authenticator(["my-own-static-key"], CachedKeyLookup(keys))  # type: ignore[arg-type]
    assert (await auth.authenticate(bearer("my-own-static-key"))).name == "static"
    await refused(auth, "my-own-static-kez")
    assert keys.total == 0


async def test_unknown_tokens_never_evict_cached_keys() -> None:
    keys = FakeKeys()
    alice, bob = keys.add("alice"), keys.add("bob")
    lookup = CachedKeyLookup(keys, ttl_s=60, max_entries=2, max_misses=64)  # type: ignore[arg-type]
    auth = Authenticator([], lookup, store_has_keys=True)
    for secret in (alice, bob):
        await auth.authenticate(bearer(secret))
    for _ in range(3000):
        await refused(auth, well_formed())
    for _ in range(10):
        assert (await auth.authenticate(bearer(alice))).name == "alice"
        assert (await auth.authenticate(bearer(bob))).name == "bob"
    assert keys.lookups[hash_key(alice)] == 1 and keys.lookups[hash_key(bob)] == 1  # still cached: no second lookup
    assert len(lookup._misses) == 64  # the misses' own cache is bounded


async def test_repeated_unknown_tokens_are_looked_up_once_per_ttl() -> None:
    now = [0.0]
    keys = FakeKeys()
    lookup = CachedKeyLookup(keys, ttl_s=5, clock=lambda: now[0])  # type: ignore[arg-type]
    auth = Authenticator([], lookup, store_has_keys=True)
    tokens = [well_formed() for _ in range(20)]
    for _ in range(50):
        for token in tokens:
            await refused(auth, token)
    assert keys.total == 20
    now[0] = 5.0
    await refused(auth, tokens[0])
    assert keys.total == 21


async def test_a_key_created_here_is_not_hidden_by_a_cached_miss() -> None:
    keys = FakeKeys()
    lookup = CachedKeyLookup(keys, ttl_s=60)  # type: ignore[arg-type]
    auth = Authenticator([], lookup, store_has_keys=True)
    token = well_formed()
    await refused(auth, token)
    keys.rows[hash_key(token)] = _row(token)  # e.g. made here through the admin API
    auth.invalidate(hash_key(token))  # what the admin API does after creating or revoking a key
    assert (await auth.authenticate(bearer(token))).name == "late"


def _row(secret: str) -> ApiKey:
    return ApiKey("key_late", "late", secret[:10], None, None, None, time.time(), None, None, hash_key(secret))


async def test_concurrent_lookups_of_one_hash_still_share_one_query() -> None:
    keys = FakeKeys()
    real = keys.add("alice")
    lookup = CachedKeyLookup(keys, ttl_s=60)  # type: ignore[arg-type]
    auth = Authenticator([], lookup, store_has_keys=True)
    unknown = well_formed()

    async def attempt(token: str) -> Any:
        try:
            return await auth.authenticate(bearer(token))
        except InvalidApiKey as exc:
            return exc

    results = await asyncio.gather(*(attempt(t) for t in [real] * 30 + [unknown] * 30))
    assert {r.name for r in results[:30]} == {"alice"}
    assert all(isinstance(r, InvalidApiKey) for r in results[30:])
    assert keys.lookups == {hash_key(real): 1, hash_key(unknown): 1}
