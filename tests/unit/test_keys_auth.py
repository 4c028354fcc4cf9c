"""Stored keys through the Authenticator: hashing, the lookup cache, revocation and expiry timing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from faceplate.access.auth import Authenticator, hash_key
from faceplate.errors import InvalidApiKey, ServiceUnavailable
from faceplate.store import CachedKeyLookup, Store


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


UNKNOWN = [f"sk-fp-{i:043d}" for i in range(10)]  # shaped like stored keys (see generate_secret); no key has them


def bearer(secret: str) -> Headers:
    return Headers({"authorization": f"Bearer {secret}"})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'f.db'}")
    yield s
    s.close()


def test_hash_key_is_sha256_hex() -> None:
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


async def test_lookups_are_cached_for_the_ttl(store: Store) -> None:
    clock = Clock()
    lookup = CachedKeyLookup(store.keys, ttl_s=5, clock=clock)
    key, secret = store.keys.create("alice", rpm=3)
    auth = Authenticator([], lookup, store_has_keys=True)
    for _ in range(50):
        p = await auth.authenticate(bearer(secret))
        assert p.key_id == key.id and p.rpm == 3
    assert lookup.queries == 1
    store.keys.revoke(key.id)  # as another process would: this one is not told
    clock.t = 4.9
    assert (await auth.authenticate(bearer(secret))).key_id == key.id  # still cached
    clock.t = 5.0
    with pytest.raises(InvalidApiKey):
        await auth.authenticate(bearer(secret))
    assert lookup.queries == 2


async def test_invalidate_makes_revocation_immediate(store: Store) -> None:
    lookup = CachedKeyLookup(store.keys, ttl_s=60)
    key, secret = store.keys.create("alice")
    auth = Authenticator([], lookup, store_has_keys=True)
    await auth.authenticate(bearer(secret))
    store.keys.revoke(key.id)
    auth.invalidate(key.key_hash)
    with pytest.raises(InvalidApiKey) as info:
        await auth.authenticate(bearer(secret))
    assert info.value.code == "invalid_api_key" and secret not in info.value.message


async def test_expiry_is_checked_on_every_use_even_when_cached(store: Store) -> None:
    wall = [time.time()]
    lookup = CachedKeyLookup(store.keys, ttl_s=60, wall=lambda: wall[0])
    _, secret = store.keys.create("short", expires_at=wall[0] + 10)
    auth = Authenticator([], lookup, store_has_keys=True)
    await auth.authenticate(bearer(secret))
    wall[0] += 10
    with pytest.raises(InvalidApiKey):
        await auth.authenticate(bearer(secret))
    assert lookup.queries == 1


async def test_unknown_keys_are_cached_too_and_the_cache_is_bounded(store: Store) -> None:
    lookup = CachedKeyLookup(store.keys, ttl_s=60, max_entries=3, max_misses=3)
    auth = Authenticator([], lookup, store_has_keys=True)
    for i in range(10):
        for _ in range(3):
            with pytest.raises(InvalidApiKey):
                await auth.authenticate(bearer(UNKNOWN[i]))
    assert lookup.queries == 10
    assert len(lookup._misses) == 3 and not lookup._entries  # misses have their own bounded cache


async def test_concurrent_misses_share_one_query(store: Store) -> None:
    lookup = CachedKeyLookup(store.keys, ttl_s=60)
    key, secret = store.keys.create("alice")
    results = await asyncio.gather(*(lookup.principal_for_hash(hash_key(secret)) for _ in range(30)))
    assert {p.key_id for p in results if p} == {key.id}
    assert lookup.queries == 1


async def test_an_unreachable_store_is_a_503_not_a_401(store: Store) -> None:
    lookup = CachedKeyLookup(store.keys, ttl_s=60)
    auth = Authenticator([], lookup, store_has_keys=True)

    def broken(key_hash: str) -> None:
        raise OSError("database is gone")

    store.keys.by_hash = broken  # type: ignore[method-assign]
    with pytest.raises(ServiceUnavailable) as info:
        await auth.authenticate(bearer(UNKNOWN[0]))  # shaped like a stored key, so the store is asked
    assert info.value.status == 503 and info.value.headers["retry-after"] == "1"


async def test_auth_turns_on_when_the_store_gets_a_key(store: Store) -> None:
    clock = Clock()
    lookup = CachedKeyLookup(store.keys, ttl_s=2, clock=clock)
    auth = Authenticator([], lookup, store_has_keys=store.keys.any())
    assert not auth.enabled
    assert (await auth.authenticate(Headers({}))).name == "anonymous"
    _, secret = store.keys.create("first")  # e.g. `faceplate keys create` while the server runs
    assert (await auth.authenticate(Headers({}))).name == "anonymous"  # not re-checked within the ttl
    clock.t = 2
    with pytest.raises(InvalidApiKey):
        await auth.authenticate(Headers({}))
    assert (await auth.authenticate(bearer(secret))).name == "first"
    assert auth.enabled


async def test_static_keys_still_work_beside_stored_ones(store: Store) -> None:
    lookup = CachedKeyLookup(store.keys)
    _, secret = store.keys.create("stored")
    auth = Authenticator(["sk-static-1"], lookup)
    assert (await auth.authenticate(bearer("sk-static-1"))).name == "static"
    assert (await auth.authenticate(bearer(secret))).name == "stored"
    assert lookup.queries == 1


async def test_a_stored_key_is_honoured_before_auth_notices_the_store(store: Store) -> None:
    clock = Clock()
    lookup = CachedKeyLookup(store.keys, ttl_s=60, clock=clock)
    auth = Authenticator([], lookup, store_has_keys=False)
    assert (await auth.authenticate(bearer("sk-anything"))).name == "anonymous"
    _, secret = store.keys.create("made-on-another-replica", rpm=5)
    p = await auth.authenticate(bearer(secret))  # has_keys is still cached as False, but this key is real
    assert p.name == "made-on-another-replica" and p.rpm == 5
    assert auth.enabled
    with pytest.raises(InvalidApiKey):
        await auth.authenticate(bearer("sk-anything"))
