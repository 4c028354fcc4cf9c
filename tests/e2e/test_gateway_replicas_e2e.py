"""Two gateway replicas behind nginx (deploy/nginx.conf), sharing PostgreSQL and Redis, over a pool
of two upstreams: limits, usage and open circuits are the fleet's, not one replica's.

- one key's rate limit holds exactly however nginx spreads the requests;
- usage recorded by either replica is read back whole through either;
- an upstream that fails on one replica has its circuit opened on the other too (Redis), so the
  other replica stops sending to it without having seen it fail;
- both replicas place a conversation on the same upstream (rendezvous hashing, no coordination).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.e2e.keys_helpers import ADMIN, admin_request, close_clients, create_key, sdk
from tests.gateway import pool_stats, start_gateway
from tests.nginx import start_nginx
from tests.serverproc import ServerProcess
from tests.upstreams.launch import MockProcess, run_mockai

MODEL = "pooled"
HI = [{"role": "user", "content": "Say hi."}]
WINDOW_S = 3600  # nothing refills while a test runs: the counts are exact

__all__ = ["close_clients"]  # an autouse fixture: imported to apply here


@pytest.fixture(scope="module")
def mocks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[MockProcess]]:
    log_dir = tmp_path_factory.mktemp("mocks")
    with run_mockai(log_dir=log_dir, model="mock-a") as a, run_mockai(log_dir=log_dir, model="mock-b") as b:
        yield [a, b]


@pytest.fixture(scope="module")
def fleet(
    mocks: list[MockProcess], database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, list[ServerProcess]]]:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    members = [{"id": MODEL, "url": str(m), "kind": "openai"} for m in mocks]
    routing = {"breaker_failures": 2, "breaker_open_s": 30, "retries": 1, "health_interval_s": 0.5}
    args = ["--database-url", database_url, "--redis-url", redis_url, "--admin-key", ADMIN]
    env = {"FACEPLATE_RATE_LIMIT_WINDOW_S": str(WINDOW_S)}
    replicas: list[ServerProcess] = []
    try:
        for i in range(2):
            log_dir = tmp_path_factory.mktemp(f"gateway-{i}")
            replicas.append(start_gateway(members, log_dir=log_dir, routing=routing, args=args, env=env))
        lb = start_nginx([r.port for r in replicas], tmp_path_factory.mktemp("nginx"))
    except BaseException:
        for r in replicas:
            r.stop()
        raise
    yield lb, replicas
    lb.stop()
    for r in replicas:
        r.stop()


def _call(lb: ServerProcess, key: str, user: str) -> str:
    client = sdk(lb, key)
    try:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2, user=user)  # type: ignore[arg-type]
        return "ok"
    except openai.RateLimitError as exc:
        return f"429:{exc.code}"
    finally:
        client.close()


def _served(replica: ServerProcess) -> int:
    return replica.log().count("POST /v1/chat/completions")


def test_one_rate_limit_and_one_usage_ledger_across_gateways(fleet: tuple[ServerProcess, list[ServerProcess]]) -> None:
    lb, replicas = fleet
    key = create_key(lb, name="gw-rpm", rpm=7)
    before = [_served(r) for r in replicas]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: _call(lb, key["key"], f"user-{i}"), range(18)))
    assert results.count("ok") == 7 and results.count("429:rate_limit_exceeded") == 11, results
    deadline = time.monotonic() + 10
    while sum(spread := [_served(r) - b for r, b in zip(replicas, before, strict=True)]) < 18 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert min(spread) > 0, spread  # nginx used both replicas
    for replica in replicas:  # either replica reads the whole ledger (each flushes its rows within a second)
        while True:
            rows = admin_request(replica, "GET", "/admin/usage?by=key").json()["data"]
            mine = [r for r in rows if r["key"] == key["id"]]
            if mine and mine[0]["requests"] == 18 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert mine and mine[0]["requests"] == 18 and mine[0]["completion_tokens"] == 7 * 2, mine


def test_both_gateways_place_a_conversation_on_the_same_upstream(
    fleet: tuple[ServerProcess, list[ServerProcess]], mocks: list[MockProcess]
) -> None:
    _, replicas = fleet
    key = create_key(replicas[0], name="gw-affinity")["key"]
    for session in ("alice", "bob", "carol", "dave"):
        landed = set()
        for replica in replicas:
            for _ in range(2):
                seen = [httpx.get(f"{m}/mock/stats").json()["completed"] for m in mocks]
                sdk(replica, key).chat.completions.create(model=MODEL, messages=HI, max_tokens=1, user=session)  # type: ignore[arg-type]
                after = [httpx.get(f"{m}/mock/stats").json()["completed"] for m in mocks]
                landed |= {i for i, (a, b) in enumerate(zip(seen, after, strict=True)) if b > a}
        assert len(landed) == 1, (session, landed)


def test_a_circuit_opened_by_one_gateway_is_open_on_the_other(
    fleet: tuple[ServerProcess, list[ServerProcess]], mocks: list[MockProcess]
) -> None:
    _, (first, second) = fleet
    bad = mocks[0]
    httpx.post(f"{bad}/mock/config", json={"status": 500}).raise_for_status()
    try:
        key = create_key(first, name="gw-breaker")["key"]
        deadline = time.monotonic() + 15
        circuit = lambda gw: next(u for u in pool_stats(gw, MODEL, key)["upstreams"] if u["url"] == str(bad))  # noqa: E731
        while circuit(first)["circuit"] != "open":
            assert time.monotonic() < deadline, circuit(first)
            r = sdk(first, key).chat.completions.create(model=MODEL, messages=HI, max_tokens=1, user=f"u{time.monotonic()}")  # type: ignore[arg-type]
            assert r.choices  # retried on the good upstream: the client never sees the failures
        assert circuit(second)["failures"] == 0
        while circuit(second)["circuit"] != "open":  # read from Redis within a second or so
            assert time.monotonic() < deadline, circuit(second)
            time.sleep(0.1)
        sent = httpx.get(f"{bad}/mock/stats").json()["requests"].get("/v1/chat/completions", 0)
        for i in range(6):
            sdk(second, key).chat.completions.create(model=MODEL, messages=HI, max_tokens=1, user=f"s{i}")  # type: ignore[arg-type]
        assert httpx.get(f"{bad}/mock/stats").json()["requests"].get("/v1/chat/completions", 0) == sent
    finally:
        httpx.post(f"{bad}/mock/config", json={"status": None}).raise_for_status()


def test_a_responses_chain_stays_on_one_upstream_across_gateways(
    fleet: tuple[ServerProcess, list[ServerProcess]], mocks: list[MockProcess]
) -> None:
    """previous_response_id affinity: each turn of a chain goes through the other replica, and every
    turn lands on the upstream holding the chain's prefix (the key is the chain's first response). Each
    turn's ``instructions`` differ, so the conversation's start alone would scatter the turns."""
    _, replicas = fleet
    key = create_key(replicas[0], name="gw-chains")["key"]

    def completed() -> list[int]:
        return [httpx.get(f"{m}/mock/stats").json()["completed"] for m in mocks]

    for chain in range(4):
        landed: set[int] = set()
        previous = None
        for turn in range(4):
            before = completed()
            r = sdk(replicas[turn % 2], key).responses.create(
                model=MODEL,
                instructions=f"Answer in style {turn}.",
                input=f"chain {chain} turn {turn}: go on",
                previous_response_id=previous,
                max_output_tokens=16,
            )
            assert r.status == "completed" and r.output_text, r
            landed |= {i for i, (a, b) in enumerate(zip(before, completed(), strict=True)) if b > a}
            previous = r.id
        assert len(landed) == 1, (chain, landed)
