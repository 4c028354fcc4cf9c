"""The conversation store on SQLite and PostgreSQL: CRUD, item order and paging, duplicates, owner isolation."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from faceplate.store import Conversation, DuplicateItem, Store
from faceplate.store.schema import conversation_items, conversations

A, B = "key_alice", "key_bob"


def msg(id: str, text: str = "hi") -> dict[str, Any]:
    return {"id": id, "type": "message", "role": "user", "status": "completed", "content": [{"type": "input_text", "text": text}]}


def count(store: Store, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


def ids(items: list[dict[str, Any]] | None) -> list[str]:
    assert items is not None
    return [i["id"] for i in items]


def test_crud_and_owner_isolation(store: Store) -> None:
    conv = store.conversations.create(id="conv_1", owner=A, created_at=1000.5, metadata={"topic": "x"}, items=[msg("m0")])
    assert conv == Conversation(id="conv_1", owner=A, created_at=1000.5, metadata={"topic": "x"})
    assert store.conversations.get("conv_1", A) == conv
    assert store.conversations.get("conv_1", B) is None
    assert store.conversations.get("conv_nope", A) is None

    assert store.conversations.update("conv_1", B, {"topic": "stolen"}) is None
    updated = store.conversations.update("conv_1", A, {"other": "y"})
    assert updated == Conversation(id="conv_1", owner=A, created_at=1000.5, metadata={"other": "y"})  # replaced, not merged
    assert store.conversations.get("conv_1", A) == updated
    assert store.conversations.update("conv_nope", A, {}) is None

    assert store.conversations.items("conv_1", B) is None
    assert store.conversations.list_items("conv_1", B, limit=10, order="asc", after=None) is None
    assert store.conversations.delete("conv_1", B) is False
    assert store.conversations.delete("conv_1", A) is True
    assert store.conversations.get("conv_1", A) is None
    assert store.conversations.items("conv_1", A) is None
    assert count(store, conversation_items) == 0 and count(store, conversations) == 0
    assert store.conversations.delete("conv_1", A) is False


def test_items_keep_their_order(store: Store) -> None:
    store.conversations.create(id="conv_1", owner=A, created_at=1000, metadata={}, items=[msg("m2"), msg("m0")])
    assert store.conversations.add_items("conv_1", A, [msg("m1", "later"), msg("m9")], now=1001) is True
    assert ids(store.conversations.items("conv_1", A)) == ["m2", "m0", "m1", "m9"]
    assert store.conversations.items("conv_1", A)[2] == msg("m1", "later")  # type: ignore[index]
    assert store.conversations.add_items("conv_1", B, [msg("mb")], now=1002) is False
    assert store.conversations.add_items("conv_nope", A, [msg("mx")], now=1002) is False
    assert store.conversations.add_items("conv_1", A, [], now=1003) is True
    assert count(store, conversation_items) == 4


def test_duplicate_items_are_refused_whole(store: Store) -> None:
    store.conversations.create(id="conv_1", owner=A, created_at=1000, metadata={}, items=[msg("m0")])
    with pytest.raises(DuplicateItem) as info:
        store.conversations.add_items("conv_1", A, [msg("m1"), msg("m0")], now=1001)
    assert info.value.item_id == "m0"
    with pytest.raises(DuplicateItem) as info:
        store.conversations.add_items("conv_1", A, [msg("m2"), msg("m2")], now=1001)
    assert info.value.item_id == "m2"
    assert ids(store.conversations.items("conv_1", A)) == ["m0"]  # nothing from either batch

    with pytest.raises(DuplicateItem):
        store.conversations.create(id="conv_2", owner=A, created_at=1000, metadata={}, items=[msg("x"), msg("x")])
    assert store.conversations.get("conv_2", A) is None

    store.conversations.create(id="conv_3", owner=A, created_at=1000, metadata={}, items=[msg("m0")])  # other conversation: fine
    assert ids(store.conversations.items("conv_3", A)) == ["m0"]
    with pytest.raises(ValueError):
        store.conversations.add_items("conv_3", A, [{"type": "message", "role": "user", "content": []}], now=1001)


def test_list_items_paging(store: Store) -> None:
    store.conversations.create(id="conv_1", owner=A, created_at=1000, metadata={}, items=[msg(f"m{i}") for i in range(3)])
    store.conversations.add_items("conv_1", A, [msg("m3"), msg("m4")], now=1001)
    store.conversations.create(id="conv_2", owner=A, created_at=1000, metadata={}, items=[msg("z")])

    def page(order: str, limit: int, after: str | None = None) -> tuple[list[str], bool]:
        got = store.conversations.list_items("conv_1", A, limit=limit, order=order, after=after)
        assert got is not None
        return ids(got[0]), got[1]

    assert page("asc", 2) == (["m0", "m1"], True)
    assert page("asc", 2, "m1") == (["m2", "m3"], True)
    assert page("asc", 2, "m3") == (["m4"], False)
    assert page("asc", 5) == (["m0", "m1", "m2", "m3", "m4"], False)
    assert page("desc", 3) == (["m4", "m3", "m2"], True)
    assert page("desc", 2, "m2") == (["m1", "m0"], False)
    assert page("desc", 2, "m0") == ([], False)
    assert page("asc", 2, "z") == ([], False)  # another conversation's item
    assert page("asc", 2, "nope") == ([], False)
    assert store.conversations.list_items("conv_nope", A, limit=2, order="asc", after=None) is None
    with pytest.raises(ValueError):
        store.conversations.list_items("conv_1", A, limit=2, order="random", after=None)


def test_get_and_delete_item(store: Store) -> None:
    store.conversations.create(id="conv_1", owner=A, created_at=1000, metadata={}, items=[msg("m0", "a"), msg("m1", "b")])
    store.conversations.create(id="conv_2", owner=A, created_at=1000, metadata={}, items=[msg("m1", "other")])
    assert store.conversations.get_item("conv_1", A, "m1") == msg("m1", "b")
    assert store.conversations.get_item("conv_2", A, "m1") == msg("m1", "other")
    assert store.conversations.get_item("conv_1", B, "m1") is None
    assert store.conversations.get_item("conv_1", A, "nope") is None

    assert store.conversations.delete_item("conv_1", B, "m1") is False
    assert store.conversations.delete_item("conv_1", A, "nope") is False
    assert store.conversations.delete_item("conv_1", A, "m1") is True
    assert store.conversations.delete_item("conv_1", A, "m1") is False
    assert ids(store.conversations.items("conv_1", A)) == ["m0"]
    assert ids(store.conversations.items("conv_2", A)) == ["m1"]  # same id elsewhere untouched
    assert store.conversations.add_items("conv_1", A, [msg("m1", "again")], now=1001)  # a deleted id may come back
    assert store.conversations.items("conv_1", A) == [msg("m0", "a"), msg("m1", "again")]


def test_concurrent_appends_of_one_id_add_it_once(store: Store) -> None:
    store.conversations.create(id="conv_1", owner=A, created_at=1000, metadata={}, items=[])
    outcomes: list[str] = []

    def add(n: int) -> None:
        try:
            store.conversations.add_items("conv_1", A, [msg(f"own_{n}"), msg("shared")], now=1001)
            outcomes.append("added")
        except DuplicateItem:
            outcomes.append("duplicate")
        except BaseException as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=add, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["added"] + ["duplicate"] * 5
    assert ids(store.conversations.items("conv_1", A))[1] == "shared"
    assert count(store, conversation_items) == 2
