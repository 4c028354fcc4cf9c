"""Stored keys end to end: a real server on PostgreSQL, the CLI in another process, the official SDK.

The server serves only the bundled chat model, keeps key lookups for 1 s (so a revocation
from the CLI shows within a second) and uses an 8 s rate-limit window (rpm/tpm per 8 s) so
the retry test waits seconds, not a minute (the window must outlast one request on a busy machine).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from tests.conformance import ValidatingTransport
from tests.e2e.keys_helpers import ADMIN, CHAT, HI, admin_request, chat_only, cli, cli_json, close_clients, create_key, sdk
from tests.serverproc import ServerProcess, start_server

KEY_TTL_S = 1.0
WINDOW_S = 8.0

__all__ = ["close_clients"]  # an autouse fixture: imported to apply here


@pytest.fixture(scope="module")
def keyserver(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        [*chat_only(), "--database-url", database_url, "--admin-key", ADMIN],
        env={"FACEPLATE_KEY_CACHE_TTL_S": str(KEY_TTL_S), "FACEPLATE_RATE_LIMIT_WINDOW_S": str(WINDOW_S)},
        log_dir=tmp_path_factory.mktemp("keyserver"),
    )
    yield srv
    srv.stop()


def test_cli_key_lifecycle(keyserver: ServerProcess, database_url: str) -> None:
    created = cli_json("keys", "create", "--name", "cli-made", "--models", CHAT, "--expires-in", "1d", database_url=database_url)
    secret = created["key"]
    assert secret.startswith("sk-fp-") and created["status"] == "active" and created["models"] == [CHAT]

    client = sdk(keyserver, secret)
    reply = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=1)  # type: ignore[arg-type]
    assert reply.usage is not None and reply.usage.completion_tokens <= 1
    assert [m.id for m in client.models.list()] == [CHAT]

    time.sleep(KEY_TTL_S + 0.2)  # the server saw the store gain a key: anonymous access is over
    with sdk(keyserver, "sk-fp-not-a-key") as stranger, pytest.raises(openai.AuthenticationError) as info:
        stranger.models.list()
    assert info.value.code == "invalid_api_key"

    listed = cli("keys", "list", database_url=database_url).stdout
    assert created["id"] in listed and secret not in listed and secret[:10] + "..." in listed
    as_json = cli_json("keys", "list", database_url=database_url)
    assert secret not in str(as_json) and created["id"] in {k["id"] for k in as_json["data"]}

    cli("keys", "revoke", created["id"], database_url=database_url)
    revoked_at = time.monotonic()
    while True:
        try:
            client.models.list()
        except openai.AuthenticationError as exc:
            assert exc.status_code == 401 and exc.code == "invalid_api_key"
            break
        assert time.monotonic() - revoked_at < KEY_TTL_S + 1.0, "a revoked key was still accepted after the cache TTL"
        time.sleep(0.1)
    assert cli("keys", "revoke", "key_missing", database_url=database_url, check=False).returncode == 1


def test_admin_key_lifecycle_and_model_allow_list(keyserver: ServerProcess) -> None:
    assert admin_request(keyserver, "GET", "/admin/keys", headers={"authorization": "Bearer wrong"}).status_code == 401

    other = create_key(keyserver, name="other-models-only", models=["some-other-model"])
    with sdk(keyserver, other["key"]) as client:
        assert [m.id for m in client.models.list()] == []
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model=CHAT, messages=HI, max_tokens=1)  # type: ignore[arg-type]
        assert info.value.code == "model_not_found"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve(CHAT)

    key = create_key(keyserver, name="admin-made", rpm=100)
    client = sdk(keyserver, key["key"])
    assert client.chat.completions.create(model=CHAT, messages=HI, max_tokens=1).choices  # type: ignore[arg-type]
    listed = admin_request(keyserver, "GET", "/admin/keys").json()["data"]
    assert {k["id"]: k["status"] for k in listed}[key["id"]] == "active"
    assert key["key"] not in str(listed)

    r = admin_request(keyserver, "DELETE", f"/admin/keys/{key['id']}")
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError):  # at once: this server revoked it
        client.models.list()


def test_usage_totals_match_what_the_sdk_received(keyserver: ServerProcess, database_url: str) -> None:
    key = create_key(keyserver, name="metered")
    client = sdk(keyserver, key["key"])
    prompt = completion = requests = 0
    for max_tokens in (1, 3):
        r = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=max_tokens)  # type: ignore[arg-type]
        assert r.usage is not None
        prompt += r.usage.prompt_tokens
        completion += r.usage.completion_tokens
        requests += 1
    stream = client.chat.completions.create(
        model=CHAT,
        messages=HI,  # type: ignore[arg-type]
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    final = [c for c in stream if c.usage is not None][-1].usage
    assert final is not None
    prompt += final.prompt_tokens
    completion += final.completion_tokens
    requests += 1
    legacy = client.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=2)
    assert legacy.usage is not None
    prompt += legacy.usage.prompt_tokens
    completion += legacy.usage.completion_tokens
    requests += 1

    rows = admin_request(keyserver, "GET", "/admin/usage", params={"by": "key"}).json()["data"]
    row = next(r for r in rows if r["key"] == key["id"])
    assert (row["requests"], row["errors"], row["prompt_tokens"], row["completion_tokens"]) == (requests, 0, prompt, completion)
    assert row["total_tokens"] == prompt + completion and row["name"] == "metered"

    report = cli_json("usage", "--by", "key", database_url=database_url)  # the same rows, read from the store by the CLI
    assert next(r for r in report["data"] if r["key"] == key["id"]) == row
    by_model = {r["model"]: r for r in cli_json("usage", "--by", "model", database_url=database_url)["data"]}
    assert by_model[CHAT]["requests"] >= requests
    table = cli("usage", "--by", "day", database_url=database_url).stdout
    assert "TOTAL" in table and time.strftime("%Y-%m-%d", time.gmtime()) in table

    # A stream the client abandons is recorded too (status 499, the tokens generated so far).
    stream = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=200, stream=True)  # type: ignore[arg-type]
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 10
    while True:
        rows = admin_request(keyserver, "GET", "/admin/usage", params={"by": "key"}).json()["data"]
        row = next(r for r in rows if r["key"] == key["id"])
        if row["requests"] == requests + 1:
            break
        assert time.monotonic() < deadline, row
        time.sleep(0.2)
    assert row["errors"] == 1 and row["prompt_tokens"] > prompt


def test_rate_limit_error_and_the_sdk_honours_retry_after(keyserver: ServerProcess) -> None:
    key = create_key(keyserver, name="limited", rpm=1)  # 1 request per window
    client = sdk(keyserver, key["key"])
    raw = client.chat.completions.with_raw_response.create(model=CHAT, messages=HI, max_tokens=1)  # type: ignore[arg-type]
    assert raw.headers["x-ratelimit-limit-requests"] == "1"
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    assert raw.headers["x-ratelimit-reset-requests"] == "8s"
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=CHAT, messages=HI, max_tokens=1)  # type: ignore[arg-type]
    err = info.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded" and err.type == "requests"
    assert 0 < int(err.response.headers["retry-after-ms"]) <= WINDOW_S * 1000
    assert int(err.response.headers["retry-after"]) <= WINDOW_S

    transport = ValidatingTransport()
    retrying = sdk(keyserver, key["key"], max_retries=1, transport=transport)
    started = time.monotonic()
    reply = retrying.chat.completions.create(model=CHAT, messages=HI, max_tokens=1)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert reply.choices
    first, second = transport.headers[-2:]
    retry_after = int(first["retry-after-ms"]) / 1000
    assert "x-ratelimit-remaining-requests" in second and retry_after > 0.2
    assert elapsed >= retry_after, (elapsed, retry_after)
