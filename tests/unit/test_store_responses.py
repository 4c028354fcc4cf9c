"""The response store on SQLite and PostgreSQL: rows and items, finish, chains, paging, recovery, purge, migration 3."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import UniqueConstraint, func, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError

from faceplate.access.usage import UsageRecord
from faceplate.store import BrokenChain, Store, StoredResponse
from faceplate.store import responses as responses_module
from faceplate.store.db import open_engine
from faceplate.store.migrations import MIGRATIONS, applied_versions, migrate
from faceplate.store.schema import conversation_items, metadata, response_items, responses
from tests.unit.old_schema import insert_key, key_ids

A, B = "key_alice", "key_bob"


def msg(id: str, text: str, role: str = "user") -> dict[str, Any]:
    kind = "input_text" if role == "user" else "output_text"
    return {"id": id, "type": "message", "role": role, "status": "completed", "content": [{"type": kind, "text": text}]}


def obj(id: str, status: str = "in_progress", created_at: float = 1000.0, **extra: Any) -> dict[str, Any]:
    return {"id": id, "object": "response", "status": status, "created_at": created_at, "completed_at": None, **extra}


def make(
    store: Store,
    id: str,
    owner: str = A,
    *,
    inputs: list[dict[str, Any]] | None = None,
    previous: str | None = None,
    conversation: str | None = None,
    status: str = "in_progress",
    created_at: float = 1000.0,
    background: bool = False,
) -> None:
    store.responses.create(
        id=id,
        owner=owner,
        object=obj(id, status, created_at),
        background=background,
        previous_response_id=previous,
        conversation_id=conversation,
        input_items=inputs if inputs is not None else [msg(f"msg_{id}_in", f"question {id}")],
    )


def count(store: Store, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


def test_create_get_and_owner_isolation(store: Store) -> None:
    make(store, "resp_1", previous=None, conversation="conv_x", background=True, created_at=1234.5)
    got = store.responses.get("resp_1", A)
    assert got == StoredResponse(
        id="resp_1",
        owner=A,
        status="in_progress",
        background=True,
        created_at=1234.5,
        updated_at=1234.5,
        previous_response_id=None,
        conversation_id="conv_x",
        object=obj("resp_1", "in_progress", 1234.5),
        events=None,
    )
    assert store.responses.get("resp_1", B) is None
    assert store.responses.get("resp_nope", A) is None
    assert store.responses.input_items("resp_1", B, limit=10, order="asc", after=None) is None
    assert store.responses.chain("resp_1", B) == []
    assert store.responses.delete("resp_1", B) is False
    assert store.responses.get("resp_1", A) is not None
    assert store.responses.delete("resp_1", A) is True
    assert store.responses.get("resp_1", A) is None
    assert count(store, response_items) == 0
    assert store.responses.delete("resp_1", A) is False


def test_an_item_without_an_id_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        make(store, "resp_1", inputs=[msg("msg_ok", "a"), {"type": "message", "role": "user", "content": []}])
    with pytest.raises(ValueError):
        make(store, "resp_2", inputs=[msg("x" * 65, "too long an id")])
    assert count(store, responses) == 0


def test_update_and_finish_are_idempotent(store: Store) -> None:
    make(store, "resp_1", status="queued", background=True)
    store.responses.update("resp_1", obj("resp_1", "in_progress"))
    running = store.responses.get("resp_1", A)
    assert running is not None and running.status == "in_progress" and running.object["status"] == "in_progress"
    assert running.updated_at > running.created_at

    done = obj("resp_1", "completed", completed_at=1001, output=[msg("msg_out", "answer", "assistant")])
    events = [{"type": "response.created", "sequence_number": 0}, {"type": "response.completed", "sequence_number": 1}]
    outputs = [msg("msg_out", "answer", "assistant"), {"id": "fc_1", "type": "function_call", "name": "f", "arguments": "{}"}]
    store.responses.finish("resp_1", object=done, output_items=outputs, events=events)
    store.responses.finish("resp_1", object=done, output_items=outputs, events=events)  # a retry
    got = store.responses.get("resp_1", A)
    assert got is not None and got.status == "completed" and got.object == done and got.events == events
    [turn] = store.responses.chain("resp_1", A)
    assert turn.outputs == outputs
    assert count(store, response_items) == 3  # one input, two outputs: the retry added nothing

    failed = obj("resp_1", "failed")
    store.responses.finish("resp_1", object=failed, output_items=outputs[:1])  # a terminal status never changes
    [turn] = store.responses.chain("resp_1", A)
    assert turn.outputs == outputs
    assert store.responses.get("resp_1", A).object == done  # type: ignore[union-attr]


def test_heartbeats_keep_a_live_runners_responses_and_carry_cancels(store: Store) -> None:
    make(store, "resp_live", status="in_progress", background=True)
    make(store, "resp_quiet", status="in_progress", background=True)
    with store.engine.begin() as conn:
        conn.execute(responses.update().values(runner="r1", heartbeat_at=1000.0))
    assert store.responses.heartbeat("r1", ["resp_live"], now=2000.0) == []
    assert store.responses.heartbeat("r2", ["resp_quiet"], now=2000.0) == []  # another runner's row is not refreshed
    assert store.responses.fail_unfinished("quiet", now=2001.0, stale_before=1500.0) == ["resp_quiet"]
    assert store.responses.get("resp_live", A).status == "in_progress"  # type: ignore[union-attr]
    assert not store.responses.request_cancel("resp_live", B)  # another owner cannot
    assert store.responses.request_cancel("resp_live", A)
    assert store.responses.heartbeat("r1", ["resp_live"], now=2002.0) == ["resp_live"]
    assert not store.responses.request_cancel("resp_quiet", A)  # finished: nothing to cancel


def test_a_deleted_response_stays_deleted(store: Store) -> None:
    make(store, "resp_1")
    assert store.responses.delete("resp_1", A)
    store.responses.update("resp_1", obj("resp_1", "in_progress"))
    store.responses.finish("resp_1", object=obj("resp_1", "completed"), output_items=[msg("msg_o", "late", "assistant")])
    assert store.responses.get("resp_1", A) is None
    assert count(store, responses) == 0 and count(store, response_items) == 0


def test_chain_is_oldest_first_with_inputs_and_outputs(store: Store) -> None:
    make(store, "resp_1", inputs=[msg("m1a", "one"), msg("m1b", "two")])
    store.responses.finish("resp_1", object=obj("resp_1", "completed"), output_items=[msg("o1", "first", "assistant")])
    make(store, "resp_2", previous="resp_1", inputs=[msg("m2", "three")])
    store.responses.finish(
        "resp_2", object=obj("resp_2", "completed"), output_items=[msg("o2a", "x", "assistant"), msg("o2b", "y", "assistant")]
    )
    make(store, "resp_3", previous="resp_2", inputs=[msg("m3", "four")])
    make(store, "resp_other", previous="resp_2", inputs=[msg("m4", "branch")])  # a sibling branch stays out

    chain = store.responses.chain("resp_3", A)
    assert [t.response_id for t in chain] == ["resp_1", "resp_2", "resp_3"]
    assert [[i["id"] for i in t.inputs] for t in chain] == [["m1a", "m1b"], ["m2"], ["m3"]]
    assert [[i["id"] for i in t.outputs] for t in chain] == [["o1"], ["o2a", "o2b"], []]
    assert chain[0].inputs[1] == msg("m1b", "two")
    assert [t.response_id for t in store.responses.chain("resp_1", A)] == ["resp_1"]
    assert store.responses.chain("resp_nope", A) == []
    assert store.responses.chain("resp_3", B) == []


def test_a_missing_link_breaks_the_chain(store: Store) -> None:
    make(store, "resp_1")
    make(store, "resp_2", previous="resp_1")
    make(store, "resp_3", previous="resp_2")
    assert store.responses.delete("resp_2", A)
    with pytest.raises(BrokenChain) as info:
        store.responses.chain("resp_3", A)
    assert info.value.missing_id == "resp_2"

    make(store, "resp_b1", owner=B)
    make(store, "resp_a", previous="resp_b1")  # another owner's response is as good as missing
    with pytest.raises(BrokenChain) as info:
        store.responses.chain("resp_a", A)
    assert info.value.missing_id == "resp_b1"


def test_chain_walk_is_cut_at_cycles_and_at_the_cap(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    make(store, "resp_1")
    make(store, "resp_2", previous="resp_1")
    with store.engine.begin() as conn:  # cannot happen through the API; the walk must still end
        conn.execute(update(responses).where(responses.c.id == "resp_1").values(previous_response_id="resp_2"))
    assert [t.response_id for t in store.responses.chain("resp_2", A)] == ["resp_1", "resp_2"]

    for i in range(1, 6):
        make(store, f"resp_c{i}", previous=f"resp_c{i - 1}" if i > 1 else None)
    monkeypatch.setattr(responses_module, "MAX_CHAIN", 3)
    assert [t.response_id for t in store.responses.chain("resp_c5", A)] == ["resp_c3", "resp_c4", "resp_c5"]


def test_input_items_paging(store: Store) -> None:
    make(store, "resp_1", inputs=[msg(f"m{i}", str(i)) for i in range(5)])
    store.responses.finish("resp_1", object=obj("resp_1", "completed"), output_items=[msg("o", "out", "assistant")])

    def ids(order: str, limit: int, after: str | None = None) -> tuple[list[str], bool]:
        page = store.responses.input_items("resp_1", A, limit=limit, order=order, after=after)
        assert page is not None
        return [i["id"] for i in page[0]], page[1]

    assert ids("asc", 2) == (["m0", "m1"], True)
    assert ids("asc", 2, "m1") == (["m2", "m3"], True)
    assert ids("asc", 2, "m3") == (["m4"], False)
    assert ids("asc", 5) == (["m0", "m1", "m2", "m3", "m4"], False)
    assert ids("desc", 2) == (["m4", "m3"], True)
    assert ids("desc", 2, "m3") == (["m2", "m1"], True)
    assert ids("desc", 10, "m1") == (["m0"], False)
    assert ids("asc", 10, "m4") == ([], False)
    assert ids("asc", 10, "o") == ([], False)  # an output's id is not in the input list
    assert ids("asc", 10, "nope") == ([], False)
    assert store.responses.input_items("resp_nope", A, limit=10, order="asc", after=None) is None
    with pytest.raises(ValueError):
        store.responses.input_items("resp_1", A, limit=10, order="sideways", after=None)


def test_find_item_across_responses_and_conversations(store: Store) -> None:
    make(store, "resp_old", inputs=[msg("msg_shared", "old")], created_at=1000)
    make(store, "resp_new", inputs=[msg("msg_shared", "new")], created_at=2000)
    store.responses.finish("resp_new", object=obj("resp_new", "completed"), output_items=[msg("msg_out", "o", "assistant")])
    make(store, "resp_b", owner=B, inputs=[msg("msg_b", "bob's")], created_at=3000)
    store.conversations.create(id="conv_1", owner=A, created_at=1500, metadata={}, items=[msg("msg_conv", "in a conversation")])

    assert store.responses.find_item(A, "msg_shared") == msg("msg_shared", "new")
    assert store.responses.find_item(A, "msg_out") == msg("msg_out", "o", "assistant")
    assert store.responses.find_item(A, "msg_conv") == msg("msg_conv", "in a conversation")
    assert store.responses.find_item(A, "msg_b") is None
    assert store.responses.find_item(B, "msg_conv") is None and store.responses.find_item(B, "msg_shared") is None
    assert store.responses.find_item(B, "msg_b") == msg("msg_b", "bob's")
    assert store.responses.find_item(A, "msg_nope") is None

    store.conversations.add_items("conv_1", A, [msg("msg_shared", "newest, in the conversation")], now=2500)
    assert store.responses.find_item(A, "msg_shared") == msg("msg_shared", "newest, in the conversation")


def test_fail_unfinished(store: Store) -> None:
    make(store, "resp_q", status="queued", background=True)
    make(store, "resp_p", status="in_progress")
    make(store, "resp_c", status="completed")
    make(store, "resp_i", status="incomplete")
    before = store.responses.get("resp_c", A)

    failed = store.responses.fail_unfinished("the server restarted", now=5000.0)
    assert sorted(failed) == ["resp_p", "resp_q"]
    for id in failed:
        got = store.responses.get(id, A)
        assert got is not None and got.status == "failed" and got.updated_at == 5000.0
        assert got.object["status"] == "failed" and got.object["completed_at"] is None
        assert got.object["error"] == {"code": "server_error", "message": "the server restarted"}
    assert store.responses.get("resp_c", A) == before
    assert store.responses.get("resp_i", A).status == "incomplete"  # type: ignore[union-attr]
    assert store.responses.fail_unfinished("again", now=6000.0) == []


def test_purge(store: Store) -> None:
    make(store, "resp_old", created_at=1000)
    store.responses.finish("resp_old", object=obj("resp_old", "completed"), output_items=[msg("o", "x", "assistant")])
    make(store, "resp_new", created_at=3000)
    assert store.responses.purge(older_than=2000) == 1
    assert store.responses.get("resp_old", A) is None and store.responses.get("resp_new", A) is not None
    assert count(store, response_items) == 1  # only resp_new's input is left
    assert store.responses.purge(older_than=2000) == 0


def test_finish_appends_to_the_conversation(store: Store) -> None:
    store.conversations.create(id="conv_1", owner=A, created_at=1000, metadata={}, items=[msg("m0", "earlier")])
    make(store, "resp_1", conversation="conv_1", inputs=[msg("m1", "hi")])
    added = [msg("m1", "hi"), msg("o1", "hello", "assistant")]
    done = obj("resp_1", "completed")
    store.responses.finish("resp_1", object=done, output_items=added[1:], conversation_items=added)
    store.responses.finish("resp_1", object=done, output_items=added[1:], conversation_items=added)  # a retry adds nothing
    assert store.conversations.items("conv_1", A) == [msg("m0", "earlier"), *added]

    make(store, "resp_2", conversation="conv_1")
    assert store.conversations.delete("conv_1", A)
    store.responses.finish("resp_2", object=obj("resp_2", "completed"), output_items=[], conversation_items=[msg("m9", "x")])
    assert store.responses.get("resp_2", A).status == "completed"  # type: ignore[union-attr]
    assert count(store, conversation_items) == 0

    store.conversations.create(id="conv_b", owner=B, created_at=1000, metadata={}, items=[])
    make(store, "resp_3", conversation="conv_b")  # not A's conversation: nothing is appended to it
    store.responses.finish("resp_3", object=obj("resp_3", "completed"), output_items=[], conversation_items=[msg("m8", "x")])
    assert store.conversations.items("conv_b", B) == []


def test_data_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'faceplate.db'}"
    s = Store.open(url)
    make(s, "resp_1")
    s.responses.finish("resp_1", object=obj("resp_1", "completed"), output_items=[msg("o", "x", "assistant")])
    s.conversations.create(id="conv_1", owner=A, created_at=1000, metadata={"k": "v"}, items=[msg("m", "y")])
    s.close()
    s = Store.open(url)
    try:
        got = s.responses.get("resp_1", A)
        assert got is not None and got.status == "completed"
        assert [t.outputs for t in s.responses.chain("resp_1", A)] == [[msg("o", "x", "assistant")]]
        conv = s.conversations.get("conv_1", A)
        assert conv is not None and conv.metadata == {"k": "v"}
        assert s.conversations.items("conv_1", A) == [msg("m", "y")]
    finally:
        s.close()


NEW_TABLES = ("responses", "response_items", "conversations", "conversation_items")


def test_migration_3_on_a_version_2_database(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        assert migrate(engine, MIGRATIONS[:2]) == [1, 2]
        old = Store(engine)
        insert_key(engine, "key_1")
        old.usage.insert([UsageRecord("key_1", "m", "/v1/x", 3, 4, 200, 1.0, time.time())])
        assert not set(NEW_TABLES) & set(inspect(engine).get_table_names())

        assert migrate(engine, MIGRATIONS[:3]) == [3]
        assert applied_versions(engine) == [1, 2, 3]
        assert key_ids(engine) == ["key_1"]
        migrate(engine)  # the current store code reads the current schema
        new = Store(engine)
        assert [(r["key"], r["requests"], r["total_tokens"]) for r in new.usage.report("key")] == [("key_1", 1, 7)]
        make(new, "resp_1")
        assert new.responses.get("resp_1", A) is not None
    finally:
        engine.dispose()


def test_schema_matches_the_migrated_tables(store: Store) -> None:
    inspector = inspect(store.engine)
    for name in NEW_TABLES:
        table = metadata.tables[name]
        live = {c["name"]: c["nullable"] for c in inspector.get_columns(name)}
        assert live == {c.name: c.nullable for c in table.columns}, name
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)}
        assert uniques == {tuple(c.name for c in u.columns) for u in table.constraints if isinstance(u, UniqueConstraint)}
    indexes = {n: {i["name"] for i in inspector.get_indexes(n)} for n in NEW_TABLES}
    assert {"ix_responses_owner_created", "ix_responses_status", "ix_responses_created"} <= indexes["responses"]
    assert "ix_response_items_item_id" in indexes["response_items"]
    assert "ix_conversation_items_conversation_seq" in indexes["conversation_items"]


def test_response_item_positions_are_unique(store: Store) -> None:
    make(store, "resp_1", inputs=[msg("m0", "a")])
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(insert(response_items).values(response_id="resp_1", kind="input", position=0, item_id="m9", item="{}"))


def test_concurrent_finishes_leave_one_set_of_outputs(store: Store) -> None:
    store.conversations.create(id="conv_1", owner=A, created_at=1000, metadata={}, items=[])
    make(store, "resp_1", conversation="conv_1")
    outputs = [msg(f"o{i}", str(i), "assistant") for i in range(20)]
    errors: list[BaseException] = []

    def finish() -> None:
        try:
            store.responses.finish("resp_1", object=obj("resp_1", "completed"), output_items=outputs, conversation_items=outputs)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=finish) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.responses.chain("resp_1", A)[0].outputs == outputs
    assert store.conversations.items("conv_1", A) == outputs
