"""The store on SQLite and PostgreSQL: migrations, key lifecycle, usage reports, concurrent writers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect, select, text

from faceplate.access.auth import hash_key
from faceplate.access.usage import UsageRecord
from faceplate.store import Store, normalize_url, parse_duration, parse_time
from faceplate.store.db import open_engine
from faceplate.store.keys import SECRET_PREFIX
from faceplate.store.migrations import MIGRATIONS, SchemaTooNew, applied_versions, migrate
from faceplate.store.schema import api_keys, schema_migrations


def test_normalize_url() -> None:
    assert normalize_url("postgresql://u:p@h:5/db") == "postgresql+psycopg://u:p@h:5/db"
    assert normalize_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert normalize_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    assert normalize_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_migrations_apply_once_in_order(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        assert applied_versions(engine) == []
        assert migrate(engine) == [m.version for m in MIGRATIONS]
        assert migrate(engine) == []
        assert applied_versions(engine) == [m.version for m in MIGRATIONS] == [1, 2, 3, 4, 5, 6]
        tables = set(inspect(engine).get_table_names())
        responses = {"responses", "response_items", "conversations", "conversation_items"}
        assert {"schema_migrations", "api_keys", "usage", "files", "batches", "batch_requests"} | responses <= tables
        indexes = {i["name"] for i in inspect(engine).get_indexes("usage")}
        assert {"ix_usage_created", "ix_usage_key_created"} <= indexes
        with engine.connect() as conn:
            names = conn.execute(select(schema_migrations.c.name).order_by(schema_migrations.c.version)).scalars().all()
        assert names == ["api_keys", "usage", "responses", "files", "batches", "batch_limits"]
    finally:
        engine.dispose()


def test_a_newer_schema_is_refused(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(insert(schema_migrations).values(version=999, name="future", applied_at=time.time()))
        with pytest.raises(SchemaTooNew):
            migrate(engine)
    finally:
        engine.dispose()


def test_concurrent_migrations_apply_each_once(db_url: str) -> None:
    errors: list[BaseException] = []
    results: list[list[int]] = []

    def run() -> None:
        engine = open_engine(db_url)
        try:
            results.append(migrate(engine))
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results, key=len) == [[], [], [], [1, 2, 3, 4, 5, 6]]


def test_sqlite_file_and_folder_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "faceplate.db"
    s = Store.open(f"sqlite:///{path}")
    try:
        assert path.is_file()
        with s.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        s.close()


def test_key_lifecycle(store: Store) -> None:
    assert not store.keys.any()
    key, secret = store.keys.create("alice", models=["m1", "m2", "m1"], rpm=10, tpm=1000, expires_at=time.time() + 3600)
    assert secret.startswith(SECRET_PREFIX) and len(secret) == len(SECRET_PREFIX) + 43
    assert key.prefix == secret[:10] and key.models == ("m1", "m2")
    assert store.keys.any()
    found = store.keys.by_hash(hash_key(secret))
    assert found is not None and found.id == key.id and found.status() == "active"
    p = found.principal()
    assert (p.key_id, p.name, p.models, p.rpm, p.tpm) == (key.id, "alice", frozenset({"m1", "m2"}), 10, 1000)
    assert store.keys.by_hash(hash_key(secret + "x")) is None

    other, _ = store.keys.create("bob")
    assert [k.id for k in store.keys.list()] == [key.id, other.id]
    assert other.principal().models is None and other.principal().rpm is None

    revoked = store.keys.revoke(key.id)
    assert revoked is not None and revoked.status() == "revoked"
    again = store.keys.revoke(key.id)
    assert again is not None and again.revoked_at == revoked.revoked_at  # idempotent
    assert store.keys.revoke("key_nope") is None
    assert [k.id for k in store.keys.list(include_inactive=False)] == [other.id]
    assert store.keys.any()  # revoked keys still count: auth never switches back off

    expired, _ = store.keys.create("old", expires_at=time.time() - 1)
    assert expired.status() == "expired"
    assert expired.to_json()["status"] == "expired"


def test_secrets_are_never_stored(store: Store) -> None:
    key, secret = store.keys.create("alice")
    with store.engine.connect() as conn:
        rows = conn.execute(select(api_keys)).all()
    dump = json.dumps([list(map(str, r)) for r in rows])
    assert secret not in dump and secret[10:] not in dump
    assert hash_key(secret) in dump
    assert "key_hash" not in key.to_json() and secret not in json.dumps(key.to_json())


def test_invalid_keys_are_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        store.keys.create("  ")
    with pytest.raises(ValueError):
        store.keys.create("x", rpm=0)


def rec(
    key_id: str | None, model: str, prompt: int, completion: int, status: int = 200, created: float | None = None
) -> UsageRecord:
    return UsageRecord(key_id, model, "/v1/chat/completions", prompt, completion, status, 12.5, created or time.time())


def test_usage_report(store: Store) -> None:
    key, _ = store.keys.create("alice")
    day1 = parse_time("2026-03-01T10:00:00Z")
    day2 = parse_time("2026-03-02T23:59:59Z")
    store.usage.insert(
        [
            rec(key.id, "m1", 10, 5, created=day1),
            rec(key.id, "m2", 20, 0, status=429, created=day1),
            rec(None, "m1", 1, 1, created=day2),
            rec(key.id, "m1", 7, 3, status=499, created=day2),
        ]
    )
    by_key = store.usage.report("key")
    assert by_key == [
        {
            "key": None,
            "name": "(static key or anonymous)",
            "redacted_value": None,
            "requests": 1,
            "errors": 0,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "total_tokens": 2,
        },
        {
            "key": key.id,
            "name": "alice",
            "redacted_value": key.prefix + "...",
            "requests": 3,
            "errors": 2,
            "prompt_tokens": 37,
            "completion_tokens": 8,
            "total_tokens": 45,
        },
    ]
    by_model = {r["model"]: (r["requests"], r["total_tokens"]) for r in store.usage.report("model")}
    assert by_model == {"m1": (3, 27), "m2": (1, 20)}
    by_day = store.usage.report("day")
    assert [(r["day"], r["requests"]) for r in by_day] == [("2026-03-01", 2), ("2026-03-02", 2)]
    since = store.usage.report("day", since=parse_time("2026-03-02"))
    assert [(r["day"], r["requests"]) for r in since] == [("2026-03-02", 2)]
    until = store.usage.report("model", until=parse_time("2026-03-02"))
    assert {r["model"]: r["requests"] for r in until} == {"m1": 1, "m2": 1}
    with pytest.raises(ValueError):
        store.usage.report("endpoint")  # type: ignore[arg-type]


def test_parse_duration_and_time() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("90m") == 5400
    assert parse_duration("2w") == 14 * 86400
    assert parse_duration("45") == 45
    for bad in ["", "3q", "-1d", "0s"]:
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert parse_time("2026-01-01") == parse_time("2026-01-01T00:00:00Z") == 1767225600
    assert parse_time("2026-01-01T01:00:00+01:00") == 1767225600
    with pytest.raises(ValueError):
        parse_time("tomorrow")


WRITER = textwrap.dedent(
    """
    import sys, time
    from faceplate.store import Store
    from faceplate.access.usage import UsageRecord
    store = Store.open(sys.argv[1])
    tag = sys.argv[2]
    for i in range(40):
        store.usage.insert([UsageRecord(tag, "m", "/v1/x", 1, 2, 200, 1.0, time.time()) for _ in range(25)])
        if i % 10 == 0:
            store.keys.create(f"{tag}-{i}")
            store.keys.revoke(store.keys.list()[-1].id)
    store.close()
    """
)


def test_two_processes_write_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"  # not migrated yet: both processes race for that too
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, tag], stderr=subprocess.PIPE) for tag in ("a", "b", "c")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    s = Store.open(url)
    try:
        assert {r["key"]: r["requests"] for r in s.usage.report("key")} == {"a": 1000, "b": 1000, "c": 1000}
        assert len(s.keys.list()) == 12
        with s.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM schema_migrations")).scalar() == len(MIGRATIONS)
    finally:
        s.close()
