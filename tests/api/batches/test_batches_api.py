"""The Batch API in process (fake engines, real SQLite store and blob store, the worker started in
the test): batches to completed on every endpoint, per-line failures, validation failures, cancel,
expiry, ownership, and a dead runner's line taken over and run exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from faceplate.engines.fake import FakeEngine
from faceplate.service.batch_worker import BatchWorker
from faceplate.service.services import Services
from tests import spec
from tests.api.batches.helpers import CHAT, chat_line, create, file_lines, request_line, wait_for
from tests.api.conftest import OTHER_KEY, client_for
from tests.recorders import Recorder


async def test_a_chat_batch_completes_with_every_answer_in_the_output_file(
    api: httpx.AsyncClient, worker: BatchWorker, usage: Recorder, engine: FakeEngine
) -> None:
    r = await api.post(CHAT, json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and engine.priorities == ["interactive"]
    batch = await create(api, [chat_line(f"r{i}", f"question {i}") for i in range(5)], metadata={"job": "nightly"})
    done = await wait_for(api, batch["id"], "completed", "failed")
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    assert done["model"] == "fake-model" and done["metadata"] == {"job": "nightly"}
    assert done["error_file_id"] is None and done["errors"] is None
    for key in ("in_progress_at", "finalizing_at", "completed_at"):
        assert isinstance(done[key], int)
    assert done["expires_at"] == done["created_at"] + 86400
    lines = await file_lines(api, done["output_file_id"])
    assert sorted(x["custom_id"] for x in lines) == [f"r{i}" for i in range(5)]
    prompt = completion = 0
    for x in lines:
        assert x["error"] is None and x["id"].startswith("batch_req_")
        assert x["response"]["status_code"] == 200 and x["response"]["request_id"].startswith("req_")
        spec.validate(x["response"]["body"], "CreateChatCompletionResponse")
        prompt += x["response"]["body"]["usage"]["prompt_tokens"]
        completion += x["response"]["body"]["usage"]["completion_tokens"]
    u = done["usage"]
    assert (u["input_tokens"], u["output_tokens"]) == (prompt, completion) and prompt > 0 and completion > 0
    assert u["total_tokens"] == prompt + completion
    assert u["output_tokens_details"] == {"reasoning_tokens": 0}
    batch_usage = [r for r in usage.records if r.endpoint == "batch /v1/chat/completions"]
    assert len(batch_usage) == 5 and all(r.status == 200 for r in batch_usage)
    assert len([r for r in usage.records if r.endpoint == CHAT]) == 1  # the interactive request only
    assert engine.priorities == ["interactive"] + ["batch"] * 5  # batch lines use the engine's batch queue
    listed = (await api.get("/v1/batches")).json()
    spec.validate_batch_list(listed)
    assert listed["data"][0]["id"] == batch["id"] and listed["has_more"] is False
    r = await api.post(f"/v1/batches/{batch['id']}/cancel")
    assert r.status_code == 400, r.text  # a finished batch cannot be cancelled


async def test_embeddings_completions_and_responses_batches(api: httpx.AsyncClient, worker: BatchWorker) -> None:
    bodies = {
        "/v1/embeddings": lambda i: {"model": "fake-embedding", "input": f"text {i}"},
        "/v1/completions": lambda i: {"model": "fake-model", "prompt": f"say {i}"},
        "/v1/responses": lambda i: {"model": "fake-model", "input": f"hello {i}"},
    }
    emb, comp, resp = [
        await create(api, [request_line(f"{url[4]}{i}", url, body(i)) for i in range(3)], endpoint=url)
        for url, body in bodies.items()
    ]
    for batch, schema in ((emb, "CreateEmbeddingResponse"), (comp, "CreateCompletionResponse"), (resp, "Response")):
        done = await wait_for(api, batch["id"], "completed", "failed")
        assert done["status"] == "completed", done
        assert done["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
        lines = await file_lines(api, done["output_file_id"])
        assert len(lines) == 3
        for x in lines:
            spec.validate(x["response"]["body"], schema)
        assert done["usage"]["input_tokens"] > 0


async def test_a_bad_body_fails_only_its_line(api: httpx.AsyncClient, worker: BatchWorker) -> None:
    lines = [chat_line("good"), chat_line("bad", temperature="hot"), chat_line("streamed", stream=True), chat_line("good2")]
    done = await wait_for(api, (await create(api, lines))["id"], "completed", "failed")
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
    assert sorted(x["custom_id"] for x in await file_lines(api, done["output_file_id"])) == ["good", "good2"]
    errors = {x["custom_id"]: x for x in await file_lines(api, done["error_file_id"])}
    assert set(errors) == {"bad", "streamed"}
    for x in errors.values():
        assert x["error"] is None and x["response"]["status_code"] == 400
        spec.validate_error(x["response"]["body"])
    assert errors["bad"]["response"]["body"]["error"]["param"] == "temperature"
    assert errors["streamed"]["response"]["body"]["error"]["param"] == "stream"


async def test_a_bad_input_file_fails_the_batch(api: httpx.AsyncClient, worker: BatchWorker) -> None:
    done = await wait_for(api, (await create(api, [chat_line("a"), chat_line("a")]))["id"], "completed", "failed")
    assert done["status"] == "failed" and isinstance(done["failed_at"], int)
    first = done["errors"]["data"][0]
    assert (first["code"], first["line"], first["param"]) == ("duplicate_custom_id", 2, "custom_id")
    assert done["output_file_id"] is None and done["error_file_id"] is None
    assert done["request_counts"] == {"total": 0, "completed": 0, "failed": 0}


async def test_create_refusals(api: httpx.AsyncClient, other: None = None) -> None:
    r = await api.post("/v1/batches", json={"input_file_id": "file-nope", "endpoint": CHAT, "completion_window": "24h"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input_file_id"
    up = await api.post("/v1/files", data={"purpose": "user_data"}, files={"file": ("x.txt", b"hello", "text/plain")})
    r = await api.post("/v1/batches", json={"input_file_id": up.json()["id"], "endpoint": CHAT, "completion_window": "24h"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input_file_id"
    r = await api.post("/v1/batches", json={"input_file_id": "f", "endpoint": "/v1/moderations", "completion_window": "24h"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "endpoint"
    assert (await api.get("/v1/batches?limit=0")).status_code == 400
    assert (await api.get("/v1/batches/batch_nope")).status_code == 404


async def test_cancel_mid_run(api: httpx.AsyncClient, worker: BatchWorker, engine: FakeEngine) -> None:
    engine.delay_s = 0.05
    batch = await create(api, [chat_line(f"r{i}") for i in range(8)])
    await wait_for(api, batch["id"], "in_progress")
    r = await api.post(f"/v1/batches/{batch['id']}/cancel")
    assert r.status_code == 200, r.text
    spec.validate_batch(r.json())
    assert r.json()["status"] == "cancelling" and isinstance(r.json()["cancelling_at"], int)
    done = await wait_for(api, batch["id"], "cancelled")
    counts = done["request_counts"]
    assert counts["total"] == 8 and counts["completed"] + counts["failed"] == 8
    outputs = await file_lines(api, done["output_file_id"])
    errors = await file_lines(api, done["error_file_id"])
    unrun = [x for x in errors if x["response"] is None]
    assert unrun and all(x["error"]["code"] == "batch_cancelled" for x in unrun)
    assert sorted(x["custom_id"] for x in outputs + errors) == sorted(f"r{i}" for i in range(8))
    assert counts["completed"] == len(outputs)


async def test_a_batch_past_its_window_expires(make: Callable[..., Services], engine: FakeEngine) -> None:
    services = make(batch_window_s=1.0, batch_concurrency=1)
    engine.delay_s = 0.1  # about half a second a line: only one or two run in the window
    async with client_for(services) as api:
        worker = BatchWorker(services)
        worker.start()
        try:
            batch = await create(api, [chat_line(f"r{i}") for i in range(6)])
            done = await wait_for(api, batch["id"], "expired", "completed")
        finally:
            await worker.stop()
            await services.runs.close()
    assert done["status"] == "expired" and isinstance(done["expired_at"], int)
    counts = done["request_counts"]
    assert counts["total"] == 6 and counts["completed"] + counts["failed"] == 6 and counts["completed"] < 6
    async with client_for(services) as api:
        errors = await file_lines(api, done["error_file_id"])
        outputs = await file_lines(api, done["output_file_id"])
    assert {x["error"]["code"] for x in errors if x["response"] is None} == {"batch_expired"}
    assert sorted(x["custom_id"] for x in outputs + errors) == sorted(f"r{i}" for i in range(6))


async def test_batches_belong_to_their_key(svc: Services, api: httpx.AsyncClient, worker: BatchWorker) -> None:
    batch = await create(api, [chat_line("a")])
    async with client_for(svc, OTHER_KEY) as other:
        assert (await other.get(f"/v1/batches/{batch['id']}")).status_code == 404
        assert (await other.post(f"/v1/batches/{batch['id']}/cancel")).status_code == 404
        assert (await other.get("/v1/batches")).json()["data"] == []
        r = await other.post(
            "/v1/batches", json={"input_file_id": batch["input_file_id"], "endpoint": CHAT, "completion_window": "24h"}
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "input_file_id"
        done = await wait_for(api, batch["id"], "completed")
        assert (await other.get(f"/v1/files/{done['output_file_id']}")).status_code == 404


async def test_a_dead_runners_line_is_taken_over_and_run_once(svc: Services, api: httpx.AsyncClient) -> None:
    store = svc.store
    assert store is not None
    batch = await create(api, [chat_line(f"r{i}") for i in range(4)])
    now = time.time()
    # a runner that died: it validated the batch, then took line 1 and never finished it
    row = store.batches.claim_stage("dead", now, 60)
    assert row is not None and row.id == batch["id"]
    requests = [(i + 1, f"r{i}", chat_line(f"r{i}")) for i in range(4)]
    assert store.batches.start(row.id, "dead", requests, "fake-model", now)
    taken = store.batches.claim_requests("dead", now - 120, 1, 1)  # its lease ran out long ago
    assert [c.custom_id for c in taken] == ["r0"]
    worker = BatchWorker(svc)
    worker.start()
    try:
        done = await wait_for(api, batch["id"], "completed", "failed")
    finally:
        await worker.stop()
    assert done["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
    ids = [x["custom_id"] for x in await file_lines(api, done["output_file_id"]) + await file_lines(api, done["error_file_id"])]
    assert sorted(ids) == ["r0", "r1", "r2", "r3"]
    late = store.batches.complete(
        "dead", row.id, 1, ok=True, result={}, input_tokens=1, cached_tokens=0, output_tokens=1, now=time.time()
    )
    assert late is False  # the dead runner's late result is dropped


async def test_list_pages_newest_first(api: httpx.AsyncClient) -> None:
    ids = [(await create(api, [chat_line("a")]))["id"] for _ in range(3)]  # no worker: they stay validating
    first = (await api.get("/v1/batches?limit=2")).json()
    spec.validate_batch_list(first)
    assert [b["id"] for b in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    assert (first["first_id"], first["last_id"]) == (ids[2], ids[1])
    rest = (await api.get(f"/v1/batches?limit=2&after={first['last_id']}")).json()
    assert [b["id"] for b in rest["data"]] == [ids[0]] and rest["has_more"] is False
    r = await api.post(f"/v1/batches/{ids[0]}/cancel")  # a validating batch cancels too
    assert r.status_code == 200 and r.json()["status"] == "cancelling"


async def test_leases_are_renewed_so_long_lines_run_once(
    make: Callable[..., Services], engine: FakeEngine, usage: Recorder
) -> None:
    services = make(batch_lease_s=0.4)
    engine.delay_s = 0.05  # per byte token: about a second a line, over twice the lease
    async with client_for(services) as api:
        workers = [BatchWorker(services), BatchWorker(services)]  # two runners: either would take over a lapsed lease
        for w in workers:
            w.start()
        try:
            batch = await create(api, [chat_line(f"r{i}") for i in range(5)])
            done = await wait_for(api, batch["id"], "completed", "failed")
            outputs = await file_lines(api, done["output_file_id"])
        finally:
            for w in workers:
                await w.stop()
            await services.runs.close()
    assert done["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    assert sorted(x["custom_id"] for x in outputs) == [f"r{i}" for i in range(5)]
    runs = [r.status for r in usage.records if r.endpoint == "batch /v1/chat/completions"]
    assert runs == [200] * 5  # no line was taken over, so none ran twice
