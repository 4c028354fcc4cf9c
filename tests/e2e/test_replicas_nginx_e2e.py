"""Two Faceplate replicas sharing PostgreSQL and Redis, behind nginx with deploy/nginx.conf.

What a client sees through the load balancer: one rate limit per key however requests are
spread, streams that arrive token by token (not buffered by the proxy), both replicas
serving, and requests still answered when one replica dies.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from tests.e2e.keys_helpers import ADMIN, CHAT, HI, chat_only, close_clients, create_key, sdk
from tests.nginx import start_nginx
from tests.serverproc import ServerProcess, start_server

WINDOW_S = 3600  # nothing refills while a test runs: the counts are exact

__all__ = ["close_clients"]  # an autouse fixture: imported to apply here


def _replicas(database_url: str, redis_url: str, tmp: pytest.TempPathFactory, n: int = 2) -> list[ServerProcess]:
    args = [*chat_only(), "--database-url", database_url, "--redis-url", redis_url, "--admin-key", ADMIN]
    env = {"FACEPLATE_RATE_LIMIT_WINDOW_S": str(WINDOW_S)}
    servers: list[ServerProcess] = []
    try:
        for i in range(n):
            servers.append(start_server(args, env=env, log_dir=tmp.mktemp(f"replica-{i}")))
    except BaseException:
        for srv in servers:
            srv.stop()
        raise
    return servers


@pytest.fixture(scope="module")
def fleet(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, list[ServerProcess]]]:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    replicas = _replicas(database_url, redis_url, tmp_path_factory)
    lb = start_nginx([r.port for r in replicas], tmp_path_factory.mktemp("nginx"))
    yield lb, replicas
    lb.stop()
    for r in replicas:
        r.stop()


def _served(replica: ServerProcess) -> int:
    """Chat completions this replica answered, from its access log."""
    return len(re.findall(r"POST /v1/chat/completions", replica.log()))


def _call(lb: ServerProcess, key: str) -> str:
    client = sdk(lb, key)
    try:
        client.chat.completions.create(model=CHAT, messages=HI, max_tokens=1)  # type: ignore[arg-type]
        return "ok"
    except openai.RateLimitError as exc:
        return f"429:{exc.code}"
    finally:
        client.close()


def test_one_rate_limit_across_replicas_behind_nginx(fleet: tuple[ServerProcess, list[ServerProcess]]) -> None:
    lb, replicas = fleet
    key = create_key(lb, name="lb-rpm", rpm=6)["key"]  # the admin API answers through nginx too
    before = [_served(r) for r in replicas]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _call(lb, key), range(16)))
    assert results.count("ok") == 6, results
    assert results.count("429:rate_limit_exceeded") == 10, results
    deadline = time.monotonic() + 10  # a replica logs the access line as its response ends
    while sum(spread := [_served(r) - b for r, b in zip(replicas, before, strict=True)]) < 16 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sum(spread) == 16 and min(spread) > 0, spread  # least_conn used both


def test_streams_arrive_token_by_token_through_nginx(fleet: tuple[ServerProcess, list[ServerProcess]]) -> None:
    lb, _ = fleet
    client = sdk(lb, create_key(lb, name="lb-stream")["key"])
    arrivals: list[float] = []
    start = time.monotonic()
    stream = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Write a long poem about the sea."}],
        max_tokens=40,
        stream=True,
        logit_bias={"0": -100, "2": -100},  # SmolLM2's end-of-turn tokens: the answer runs its full length
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - start)
    assert len(arrivals) >= 30
    # Buffered by the proxy, the chunks would land in a few bursts at the end; unbuffered, they
    # are spread over the whole answer, one decode step apart.
    bursts = 1 + sum(1 for a, b in zip(arrivals, arrivals[1:], strict=False) if b - a > 0.002)
    assert bursts >= len(arrivals) // 2, arrivals
    assert arrivals[0] < 0.5 * arrivals[-1], arrivals


def test_a_dead_replica_is_passed_over(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    replicas = _replicas(database_url, redis_url, tmp_path_factory)
    lb = start_nginx([r.port for r in replicas], tmp_path_factory.mktemp("nginx-kill"))
    try:
        client = sdk(lb, create_key(lb, name="lb-kill")["key"])
        replicas[1].proc.kill()
        replicas[1].proc.wait()
        for _ in range(6):  # each would go to the dead one in turn without proxy_next_upstream
            r = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=1)  # type: ignore[arg-type]
            assert r.choices[0].finish_reason in ("stop", "length")
        assert "connect() failed" in (Path(lb.log_path).parent / "error.log").read_text()
    finally:
        lb.stop()
        for r in replicas:
            r.stop()
