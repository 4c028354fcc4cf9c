"""Two Faceplate processes sharing Redis and PostgreSQL enforce one limit per key and one usage total.

The servers use a one-hour rate-limit window, so nothing refills while a test runs and
the counts are exact. A third server pointed at a Redis that is not there shows the
failure mode: limited keys get 503 with retry-after, unlimited keys still work.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.e2e.keys_helpers import ADMIN, CHAT, HI, admin_request, chat_only, close_clients, create_key, sdk
from tests.serverproc import ServerProcess, free_port, start_server

WINDOW_S = 3600

__all__ = ["close_clients"]  # an autouse fixture: imported to apply here


@pytest.fixture(scope="module")
def pair(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    args = [*chat_only(), "--database-url", database_url, "--redis-url", redis_url, "--admin-key", ADMIN]
    env = {"FACEPLATE_RATE_LIMIT_WINDOW_S": str(WINDOW_S)}
    servers: list[ServerProcess] = []
    try:
        for name in ("a", "b"):
            servers.append(start_server(args, env=env, log_dir=tmp_path_factory.mktemp(f"replica-{name}")))
        yield servers
    finally:
        for srv in servers:
            srv.stop()


def _call(server: ServerProcess, key: str) -> str:
    client = sdk(server, key)
    try:
        raw = client.chat.completions.with_raw_response.create(model=CHAT, messages=HI, max_tokens=1)  # type: ignore[arg-type]
        kind = "requests" if "x-ratelimit-limit-requests" in raw.headers else "tokens"
        return "ok:" + raw.headers[f"x-ratelimit-remaining-{kind}"]
    except openai.RateLimitError as exc:
        assert exc.code == "rate_limit_exceeded"
        return f"429:{exc.type}"
    finally:
        client.close()


def _spread(pair: list[ServerProcess], key: str, n: int) -> list[str]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: _call(pair[i % 2], key), range(n)))


def test_two_servers_hold_one_request_limit(pair: list[ServerProcess]) -> None:
    key = create_key(pair[0], name="shared-rpm", rpm=5)["key"]
    results = _spread(pair, key, 14)
    ok = sorted(r for r in results if r.startswith("ok:"))
    assert ok == ["ok:0", "ok:1", "ok:2", "ok:3", "ok:4"], results
    assert results.count("429:requests") == 9


def test_two_servers_hold_one_token_limit(pair: list[ServerProcess]) -> None:
    probe = sdk(pair[0], create_key(pair[0], name="probe")["key"])
    usage = probe.chat.completions.create(model=CHAT, messages=HI, max_tokens=1).usage  # type: ignore[arg-type]
    assert usage is not None
    per_request = usage.prompt_tokens + 1  # what each request reserves: prompt + max_tokens
    key = create_key(pair[1], name="shared-tpm", tpm=3 * per_request + per_request // 2)["key"]
    results = _spread(pair, key, 10)
    assert sum(r.startswith("ok:") for r in results) == 3, results
    assert results.count("429:tokens") == 7


def test_usage_from_both_servers_lands_in_one_store(pair: list[ServerProcess]) -> None:
    key = create_key(pair[0], name="shared-usage")
    clients = [sdk(srv, key["key"]) for srv in pair]
    prompt = completion = 0
    for i in range(6):
        r = clients[i % 2].chat.completions.create(model=CHAT, messages=HI, max_tokens=2)  # type: ignore[arg-type]
        assert r.usage is not None
        prompt += r.usage.prompt_tokens
        completion += r.usage.completion_tokens
    deadline = time.monotonic() + 15  # server b writes its queue within a second or so
    while True:
        rows = admin_request(pair[0], "GET", "/admin/usage", params={"by": "key"}).json()["data"]
        row = next((r for r in rows if r["key"] == key["id"]), None)
        if row is not None and row["requests"] == 6:
            break
        assert time.monotonic() < deadline, row
        time.sleep(0.25)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)


def test_unreachable_redis_fails_closed(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    srv = start_server(
        [*chat_only(), "--database-url", database_url, "--redis-url", dead, "--admin-key", ADMIN],
        log_dir=tmp_path_factory.mktemp("no-redis"),
    )
    try:
        limited = sdk(srv, create_key(srv, name="limited-no-redis", rpm=1000)["key"])
        with pytest.raises(openai.InternalServerError) as info:
            limited.chat.completions.create(model=CHAT, messages=HI, max_tokens=1)  # type: ignore[arg-type]
        assert info.value.status_code == 503 and info.value.code == "rate_limiter_unavailable"
        assert info.value.response.headers["retry-after"] == "1"
        unlimited = sdk(srv, create_key(srv, name="unlimited-no-redis")["key"])
        assert unlimited.chat.completions.create(model=CHAT, messages=HI, max_tokens=1).choices  # type: ignore[arg-type]
        unlimited.close()
    finally:
        srv.stop()
