"""Responses state in process (fake engine, real SQLite store): chains, conversations, background
runs (poll, cancel, resume), ownership, deletion, paging, and recovery after a restart."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import pytest

from faceplate.app import create_app
from faceplate.engines.fake import FakeEngine
from faceplate.engines.registry import Registry
from faceplate.service.services import Services
from faceplate.service.stored_responses import start_upkeep
from faceplate.store.schema import responses as responses_table
from tests import spec
from tests.api.conftest import client_for
from tests.api.test_hostile_api import Recorder, call_and_hang_up
from tests.api.test_responses_api import Spy, check_stream, sse


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine("fake-model", n_ctx=4096)


async def _create(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/responses", json={"model": "fake-model", **body})
    assert r.status_code == 200, r.text
    spec.validate(r.json(), "Response")
    return r.json()


async def test_a_chain_carries_every_turn_but_not_the_old_instructions(rapi: httpx.AsyncClient, engine: FakeEngine) -> None:
    spy = Spy(engine)
    engine.script = ["first answer"]
    one = await _create(rapi, instructions="old rules", input="one")
    engine.script = ["second answer"]
    two = await _create(rapi, previous_response_id=one["id"], input="two")
    await _create(rapi, previous_response_id=two["id"], instructions="new rules", input="three")
    msgs = spy.requests[-1].messages
    assert [(m.role, m.content) for m in msgs] == [
        ("system", "new rules"),
        ("user", "one"),
        ("assistant", "first answer"),
        ("user", "two"),
        ("assistant", "second answer"),
        ("user", "three"),
    ]


async def test_chains_and_responses_belong_to_their_key(rapi: httpx.AsyncClient, other: httpx.AsyncClient) -> None:
    mine = await _create(rapi, input="secret")
    for path in (f"/v1/responses/{mine['id']}", f"/v1/responses/{mine['id']}/input_items"):
        r = await other.get(path)
        assert r.status_code == 404, path
        spec.validate(r.json(), "ErrorResponse")
    assert (await other.delete(f"/v1/responses/{mine['id']}")).status_code == 404
    r = await other.post("/v1/responses", json={"model": "fake-model", "input": "x", "previous_response_id": mine["id"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "previous_response_not_found"
    assert (await rapi.get(f"/v1/responses/{mine['id']}")).status_code == 200


async def test_delete_then_404_and_a_chain_through_it_says_so(rapi: httpx.AsyncClient) -> None:
    one = await _create(rapi, input="one")
    two = await _create(rapi, input="two", previous_response_id=one["id"])
    r = await rapi.delete(f"/v1/responses/{one['id']}")
    assert r.status_code == 200 and r.json() == {"id": one["id"], "object": "response", "deleted": True}
    assert (await rapi.get(f"/v1/responses/{one['id']}")).status_code == 404
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "3", "previous_response_id": two["id"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "previous_response_not_found"
    assert one["id"] in r.json()["error"]["message"]


async def test_input_items_page_newest_first_by_default(rapi: httpx.AsyncClient) -> None:
    items = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    made = await _create(rapi, input=items, max_output_tokens=16)
    url = f"/v1/responses/{made['id']}/input_items"
    page = (await rapi.get(url, params={"limit": 2})).json()
    spec.validate(page, "ResponseItemList")
    assert [i["content"][0]["text"] for i in page["data"]] == ["m4", "m3"] and page["has_more"]
    rest = (await rapi.get(url, params={"limit": 10, "after": page["last_id"]})).json()
    assert [i["content"][0]["text"] for i in rest["data"]] == ["m2", "m1", "m0"] and not rest["has_more"]
    asc = (await rapi.get(url, params={"order": "asc"})).json()
    assert [i["content"][0]["text"] for i in asc["data"]] == [f"m{i}" for i in range(5)]
    bad = await rapi.get(url, params={"limit": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


async def test_a_conversation_prepends_its_items_and_appends_the_turn(rapi: httpx.AsyncClient, engine: FakeEngine) -> None:
    spy = Spy(engine)
    r = await rapi.post("/v1/conversations", json={"items": [{"role": "user", "content": "hello"}], "metadata": {"a": "b"}})
    assert r.status_code == 200, r.text
    conv = r.json()
    spec.validate(conv, "ConversationResource")
    engine.script = ["hi there"]
    resp = await _create(rapi, conversation=conv["id"], input="how are you?")
    assert resp["conversation"] == {"id": conv["id"]}
    assert [m.content for m in spy.requests[-1].messages] == ["hello", "how are you?"]
    listed = (await rapi.get(f"/v1/conversations/{conv['id']}/items", params={"order": "asc"})).json()
    spec.validate(listed, "ConversationItemList")
    assert [(i["role"], i["content"][0]["text"]) for i in listed["data"]] == [
        ("user", "hello"),
        ("user", "how are you?"),
        ("assistant", "hi there"),
    ]
    assert listed["data"][-1]["id"] == resp["output"][0]["id"]
    newest = (await rapi.get(f"/v1/conversations/{conv['id']}/items", params={"limit": 1})).json()
    assert newest["data"][0]["role"] == "assistant" and newest["has_more"]
    # the items listed are valid input: sending them back works (what the Agents SDK session does)
    again = await _create(rapi, input=listed["data"] + [{"role": "user", "content": "and now?"}], store=False)
    assert again["status"] == "completed"


async def test_conversation_crud_and_items(rapi: httpx.AsyncClient, other: httpx.AsyncClient) -> None:
    conv = (await rapi.post("/v1/conversations", json={})).json()
    cid = conv["id"]
    empty = (await rapi.get(f"/v1/conversations/{cid}/items")).json()
    spec.validate(empty, "ConversationItemList")  # first_id/last_id are strings even for an empty page
    assert empty["data"] == [] and not empty["has_more"]
    r = await rapi.post(f"/v1/conversations/{cid}", json={"metadata": {"topic": "x"}})
    assert r.status_code == 200 and r.json()["metadata"] == {"topic": "x"}
    added = await rapi.post(f"/v1/conversations/{cid}/items", json={"items": [{"role": "user", "content": "q"}]})
    assert added.status_code == 200, added.text
    spec.validate(added.json(), "ConversationItemList")
    item_id = added.json()["data"][0]["id"]
    got = await rapi.get(f"/v1/conversations/{cid}/items/{item_id}")
    assert got.status_code == 200 and got.json()["content"][0]["text"] == "q"
    spec.validate(got.json(), "ConversationItem")
    assert (await other.get(f"/v1/conversations/{cid}")).status_code == 404
    assert (await other.get(f"/v1/conversations/{cid}/items")).status_code == 404
    r = await rapi.delete(f"/v1/conversations/{cid}/items/{item_id}")
    assert r.status_code == 200 and r.json()["id"] == cid and r.json()["object"] == "conversation"
    assert (await rapi.get(f"/v1/conversations/{cid}/items/{item_id}")).status_code == 404
    r = await rapi.delete(f"/v1/conversations/{cid}")
    assert r.json() == {"id": cid, "object": "conversation.deleted", "deleted": True}
    assert (await rapi.get(f"/v1/conversations/{cid}")).status_code == 404
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "x", "conversation": cid})
    assert r.status_code == 404 and r.json()["error"]["param"] == "conversation"


async def _until(api: httpx.AsyncClient, rid: str, statuses: set[str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        obj = (await api.get(f"/v1/responses/{rid}")).json()
        if obj["status"] in statuses or time.monotonic() > deadline:
            return obj
        await asyncio.sleep(0.02)


async def test_background_returns_at_once_and_is_pollable(rapi: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.delay_s = 0.005
    made = await _create(rapi, input="hi", background=True)
    assert made["status"] == "queued" and made["background"] is True and made["output"] == []
    done = await _until(rapi, made["id"], {"completed"})
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"]
    r = await rapi.post(f"/v1/responses/{made['id']}/cancel")  # cancelling a finished one returns it
    assert r.status_code == 200 and r.json()["status"] == "completed"


async def test_cancel_stops_a_background_response_and_is_idempotent(rapi: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.delay_s = 0.05
    engine.words = 1000
    made = await _create(rapi, input="hi", background=True)
    await _until(rapi, made["id"], {"in_progress"})
    r = await rapi.post(f"/v1/responses/{made['id']}/cancel")
    assert r.status_code == 200, r.text
    spec.validate(r.json(), "Response")
    assert r.json()["status"] == "cancelled"
    assert engine.cancelled == 1 and engine.running == 0  # the slot is free
    again = await rapi.post(f"/v1/responses/{made['id']}/cancel")
    assert again.json()["status"] == "cancelled"
    assert (await rapi.get(f"/v1/responses/{made['id']}")).json()["status"] == "cancelled"


async def test_a_background_response_cancelled_during_its_first_store_write_frees_its_engine_request(
    rapi: httpx.AsyncClient, stored: Services, engine: FakeEngine
) -> None:
    """The cancel can land while the run still awaits its in_progress write to the store, before it
    read a single event: its engine request was queued, and closing the unstarted event generator
    ran none of its cleanup, so the request stayed queued (a real engine would have generated it to
    the end for nobody) and its usage was never settled; and the write, still running in its thread,
    could land after the cancelled object was stored, leaving the row in_progress."""
    engine.delay_s = 0.05
    engine.words = 1000
    writing, release = threading.Event(), threading.Event()
    update = stored.store.responses.update  # type: ignore[union-attr]

    def slow_update(*args: Any, **kw: Any) -> Any:
        writing.set()
        release.wait(10)
        return update(*args, **kw)

    stored.store.responses.update = slow_update  # type: ignore[union-attr, method-assign]
    made = await _create(rapi, input="hi", background=True)
    assert await asyncio.to_thread(writing.wait, 10)
    cancel = asyncio.ensure_future(rapi.post(f"/v1/responses/{made['id']}/cancel"))
    await asyncio.sleep(0.2)  # the cancel has reached the run, which is still writing
    release.set()
    r = await asyncio.wait_for(cancel, 5)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    for _ in range(100):
        if engine.stats()["queued_requests"] == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.stats() == {"running_sequences": 0, "queued_requests": 0, "cancelled": 1}
    await asyncio.sleep(0.1)  # the write let go above has landed by now, whenever it ran
    assert (await rapi.get(f"/v1/responses/{made['id']}")).json()["status"] == "cancelled"
    assert (await rapi.post(f"/v1/responses/{made['id']}/cancel")).json()["status"] == "cancelled"


async def test_only_background_responses_can_be_cancelled_or_restreamed(rapi: httpx.AsyncClient) -> None:
    made = await _create(rapi, input="hi")
    for r in (
        await rapi.post(f"/v1/responses/{made['id']}/cancel"),
        await rapi.get(f"/v1/responses/{made['id']}", params={"stream": "true"}),
    ):
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")


async def test_a_background_stream_resumes_after_a_drop(rapi: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.delay_s = 0.01
    body = {"model": "fake-model", "input": "hi", "background": True, "stream": True}
    seen: list[dict[str, Any]] = []
    async with rapi.stream("POST", "/v1/responses", json=body) as r:
        buffer = ""
        async for chunk in r.aiter_text():
            buffer += chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                if block.strip() and not block.startswith(":"):
                    seen += sse(block + "\n\n")
            if len(seen) >= 6:
                break  # the client drops; a background run goes on
    seen = seen[:6]  # (the in-process transport may have delivered more: the client read only these)
    rid = seen[0]["response"]["id"]
    after = seen[-1]["sequence_number"]
    r = await rapi.get(f"/v1/responses/{rid}", params={"stream": "true", "starting_after": after})
    rest = sse(r.text)
    assert rest[0]["sequence_number"] == after + 1
    final = check_stream(seen + rest)
    assert final["status"] == "completed"
    replay = sse((await rapi.get(f"/v1/responses/{rid}", params={"stream": "true"})).text)
    assert replay == seen + rest  # a replay after the end keeps the original numbers


async def test_responses_of_a_stopped_process_are_failed_a_live_ones_are_not(stored: Services, rapi: httpx.AsyncClient) -> None:
    obj = await _create(rapi, input="hi")
    assert stored.store is not None
    for rid, beat in (("resp_left_running", time.time() - 3600), ("resp_other_replica", time.time())):
        running = {**obj, "id": rid, "status": "in_progress", "output": [], "usage": None}
        stored.store.responses.create(
            id=rid,
            owner="static:" + _static_id(),
            object=running,
            background=True,
            previous_response_id=None,
            conversation_id=None,
            input_items=[],
            runner="another-process",
        )
        with stored.store.engine.begin() as conn:
            conn.execute(responses_table.update().where(responses_table.c.id == rid).values(heartbeat_at=beat))
    upkeep = await start_upkeep(stored)
    assert upkeep is not None
    upkeep.cancel()
    got = (await rapi.get("/v1/responses/resp_left_running")).json()
    spec.validate(got, "Response")
    assert got["status"] == "failed" and got["error"]["code"] == "server_error"
    assert (await rapi.get("/v1/responses/resp_other_replica")).json()["status"] == "in_progress"  # its runner is alive
    assert (await rapi.get(f"/v1/responses/{obj['id']}")).json()["status"] == "completed"


async def test_responses_past_the_retention_period_are_deleted(stored: Services, rapi: httpx.AsyncClient) -> None:
    old = await _create(rapi, input="old")
    new = await _create(rapi, input="new")
    assert stored.store is not None
    with stored.store.engine.begin() as conn:
        month_ago = time.time() - 31 * 86400
        conn.execute(responses_table.update().where(responses_table.c.id == old["id"]).values(created_at=month_ago))
    upkeep = await start_upkeep(stored)  # retention_days defaults to 30
    assert upkeep is not None
    upkeep.cancel()
    assert (await rapi.get(f"/v1/responses/{old['id']}")).status_code == 404
    assert (await rapi.get(f"/v1/responses/{new['id']}")).status_code == 200
    stored.settings = stored.settings.model_copy(update={"responses_retention_days": 0})
    with stored.store.engine.begin() as conn:
        conn.execute(responses_table.update().where(responses_table.c.id == new["id"]).values(created_at=month_ago))
    upkeep = await start_upkeep(stored)  # heartbeats and sweeps still run; nothing is purged
    assert upkeep is not None
    upkeep.cancel()
    assert (await rapi.get(f"/v1/responses/{new['id']}")).status_code == 200


async def test_a_cancel_reaches_the_replica_that_runs_the_response(stored: Services, engine: FakeEngine) -> None:
    engine.delay_s = 0.05
    engine.words = 1000
    registry = Registry([FakeEngine("fake-model")])
    replica = Services(settings=stored.settings, registry=registry, auth=stored.auth, store=stored.store)
    upkeep = await start_upkeep(stored)  # the runner's heartbeat carries the cancel
    try:
        async with client_for(stored) as runner, client_for(replica) as other:
            made = await _create(runner, input="hi", background=True)
            await _until(runner, made["id"], {"in_progress"})
            r = await other.post(f"/v1/responses/{made['id']}/cancel")
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "cancelled"
            assert engine.cancelled == 1 and engine.running == 0
    finally:
        assert upkeep is not None
        upkeep.cancel()
        await stored.runs.close()


def _static_id() -> str:
    import hashlib

    from tests.api.conftest import API_KEY

    return hashlib.sha256(API_KEY.encode()).hexdigest()[:16]


async def test_metadata_over_the_limit_is_refused(rapi: httpx.AsyncClient) -> None:
    meta = {f"k{i}": "v" for i in range(17)}
    r = await rapi.post("/v1/responses", json={"model": "fake-model", "input": "x", "metadata": meta})
    assert r.status_code == 400 and r.json()["error"]["param"] == "metadata"
    r = await rapi.post("/v1/conversations", content=json.dumps({"metadata": meta}))
    assert r.status_code == 400


@pytest.mark.parametrize("stream", [True, False])
async def test_a_client_gone_before_the_first_byte_cancels_the_response(
    stored: Services, engine: FakeEngine, stream: bool
) -> None:
    usage = Recorder()
    stored.usage = usage
    engine.delay_s = 0.05
    body = {"model": "fake-model", "input": "hi", "stream": stream}
    await asyncio.wait_for(call_and_hang_up(create_app(stored), "/v1/responses", body), 5)
    for _ in range(200):  # the cancellation lands at the engine's next step, the row right after
        if engine.stats()["running_sequences"] == 0 and usage.records:
            break
        await asyncio.sleep(0.01)
    assert engine.stats()["running_sequences"] == 0 and engine.cancelled == 1
    assert [r.status for r in usage.records] == [499]
    assert stored.store is not None
    with stored.store.engine.connect() as conn:
        statuses = [row.status for row in conn.execute(responses_table.select())]
    assert statuses == ["cancelled"]
    await stored.runs.close()
