"""FileStore on SQLite and PostgreSQL: ownership, paging in creation order, purpose filter, expiry, the purge's queries."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from faceplate.store import Store, StoredFile
from faceplate.store.db import open_engine
from faceplate.store.migrations import MIGRATIONS, applied_versions, migrate
from faceplate.store.schema import metadata

A, B = "key_a", "key_b"
NOW = 1_700_000_000.0


def make(
    store: Store, id: str, *, owner: str = A, purpose: str = "batch", at: float = NOW, expires: float | None = None
) -> StoredFile:
    f = StoredFile(id=id, owner=owner, filename=f"{id}.jsonl", purpose=purpose, bytes=10, created_at=at, expires_at=expires)
    store.files.create(f)
    return f


def ids(rows: list[StoredFile]) -> list[str]:
    return [r.id for r in rows]


def test_create_get_and_ownership(store: Store) -> None:
    made = make(store, "file-1", expires=NOW + 3600)
    assert store.files.get("file-1", A, now=NOW) == made
    assert store.files.get("file-1", B, now=NOW) is None  # another owner sees nothing
    assert store.files.get("file-2", A, now=NOW) is None
    assert store.files.get_any("file-1", now=NOW) == made  # internal readers see any owner's file


def test_a_big_size_and_an_odd_filename_round_trip(store: Store) -> None:
    f = StoredFile(
        id="file-big",
        owner=A,
        filename="données \u2603 (1).jsonl",
        purpose="user_data",
        bytes=5 * 2**40,
        created_at=NOW,
        expires_at=None,
    )
    store.files.create(f)
    assert store.files.get("file-big", A, now=NOW) == f


def test_expired_files_are_gone_for_every_reader(store: Store) -> None:
    make(store, "file-1", expires=NOW + 10)
    make(store, "file-2")  # never expires
    assert store.files.get("file-1", A, now=NOW + 9) is not None
    for reader in (lambda: store.files.get("file-1", A, now=NOW + 10), lambda: store.files.get_any("file-1", now=NOW + 10)):
        assert reader() is None  # expiry is the instant itself
    rows, more = store.files.list(A, limit=10, now=NOW + 10)
    assert ids(rows) == ["file-2"] and more is False


def test_list_is_newest_first_and_pages_with_after(store: Store) -> None:
    for i in range(5):
        make(store, f"file-{i}", at=NOW + i)
    make(store, "file-x", owner=B, at=NOW + 10)
    rows, more = store.files.list(A, limit=2, now=NOW)
    assert ids(rows) == ["file-4", "file-3"] and more
    rows, more = store.files.list(A, limit=2, after="file-3", now=NOW)
    assert ids(rows) == ["file-2", "file-1"] and more
    rows, more = store.files.list(A, limit=2, after="file-1", now=NOW)
    assert ids(rows) == ["file-0"] and not more
    rows, more = store.files.list(A, limit=10, order="asc", after="file-1", now=NOW)
    assert ids(rows) == ["file-2", "file-3", "file-4"] and not more
    assert store.files.list(A, limit=10, after="file-x", now=NOW) == ([], False)  # someone else's file is no cursor
    assert store.files.list(A, limit=10, after="file-nope", now=NOW) == ([], False)
    assert store.files.list(A, limit=0, now=NOW) == ([], True)


def test_files_created_in_the_same_instant_keep_a_total_order(store: Store) -> None:
    for i in range(6):
        make(store, f"file-{i}", at=NOW)  # one timestamp: the id breaks the tie
    seen: list[str] = []
    after = None
    while True:
        rows, more = store.files.list(A, limit=4, after=after, now=NOW)
        seen += ids(rows)
        if not more:
            break
        after = rows[-1].id
    assert seen == [f"file-{i}" for i in reversed(range(6))]


def test_purpose_filter(store: Store) -> None:
    make(store, "file-1", purpose="batch", at=NOW)
    make(store, "file-2", purpose="user_data", at=NOW + 1)
    make(store, "file-3", purpose="batch", at=NOW + 2)
    rows, _ = store.files.list(A, purpose="batch", limit=10, now=NOW)
    assert ids(rows) == ["file-3", "file-1"]
    rows, more = store.files.list(A, purpose="batch", limit=1, after="file-3", now=NOW)
    assert ids(rows) == ["file-1"] and not more
    assert store.files.list(A, purpose="batch", limit=10, after="file-2", now=NOW) == ([], False)  # not in this list
    assert store.files.list(A, purpose="vision", limit=10, now=NOW) == ([], False)


def test_list_refuses_a_bad_order(store: Store) -> None:
    with pytest.raises(ValueError):
        store.files.list(A, limit=1, order="sideways")
    with pytest.raises(ValueError):
        store.files.list(A, limit=-1)


def test_delete_is_the_owners_only(store: Store) -> None:
    make(store, "file-1")
    assert store.files.delete("file-1", B) is False
    assert store.files.delete("file-1", A) is True
    assert store.files.delete("file-1", A) is False
    assert store.files.get_any("file-1", now=NOW) is None


def test_expired_lists_what_the_purge_removes(store: Store) -> None:
    make(store, "file-1", expires=NOW + 30)
    make(store, "file-2", expires=NOW + 10, owner=B)
    make(store, "file-3")
    make(store, "file-4", expires=NOW + 100)
    assert store.files.expired(NOW) == []
    assert store.files.expired(NOW + 30) == ["file-2", "file-1"]  # oldest expiry first, any owner
    assert store.files.expired(NOW + 30, limit=1) == ["file-2"]
    assert store.files.remove(["file-2", "file-1", "file-nope"]) == 2
    assert store.files.expired(NOW + 1000) == ["file-4"]
    assert store.files.get("file-3", A, now=NOW + 10**9) is not None


def test_remove_many(store: Store) -> None:
    for i in range(1203):  # past one IN (...) chunk
        make(store, f"file-{i}", expires=NOW + 1)
    assert len(store.files.expired(NOW + 1, limit=5000)) == 1203
    assert store.files.remove(store.files.expired(NOW + 1, limit=5000)) == 1203
    assert store.files.expired(NOW + 1) == []


def test_the_files_table_matches_the_schema(store: Store) -> None:
    inspector = inspect(store.engine)
    live = {c["name"]: c["nullable"] for c in inspector.get_columns("files")}
    assert live == {c.name: c.nullable for c in metadata.tables["files"].columns}
    assert {i["name"] for i in inspector.get_indexes("files")} >= {"ix_files_owner_created", "ix_files_expires"}


def test_migration_4_on_a_version_3_database(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        assert migrate(engine, MIGRATIONS[:3]) == [1, 2, 3]
        assert "files" not in inspect(engine).get_table_names()
        assert migrate(engine, MIGRATIONS[:4]) == [4]
        assert applied_versions(engine) == [1, 2, 3, 4]
        s = Store(engine)
        make(s, "file-1")
        assert s.files.get("file-1", A, now=NOW) is not None
    finally:
        engine.dispose()
