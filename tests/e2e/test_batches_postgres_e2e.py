"""Two Faceplate processes sharing one PostgreSQL store and one files folder work one batch together,
and no line runs twice; a cancel through one stops the lines both were running; when one of them is
killed mid-batch, the other finishes its lines.

Both servers (each with its own data dir, ``--database-url`` one fresh database, ``FACEPLATE_FILES_DIR``
one folder) are up before the batch is created, with a small ``FACEPLATE_BATCH_CONCURRENCY`` so
neither can take every line at once. Each engine's scheduler counters (GET /health with a key)
show how many requests it was handed: across the two, exactly one per line.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.batch_helpers import (
    assert_usage,
    chat_lines,
    chat_server,
    counts,
    create_batch,
    engine_counters,
    kill_mid_batch,
    read_lines,
    some_done,
    successes,
    unrun,
    upload,
    wait_for,
    wait_until,
)
from tests.e2e.keys_helpers import close_clients, sdk
from tests.serverproc import ServerProcess, start_server

__all__ = ["close_clients"]  # the autouse fixture that closes every client `sdk` made

KEY = "sk-e2e-batch-replicas-0123456789"
LEASE_S = 3
N = 40


@pytest.fixture(scope="module")
def pair(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    files = tmp_path_factory.mktemp("shared-files")
    env = {"FACEPLATE_FILES_DIR": str(files), "FACEPLATE_BATCH_CONCURRENCY": "2", "FACEPLATE_BATCH_LEASE_S": str(LEASE_S)}
    args = [*chat_server(), "--api-key", KEY, "--database-url", database_url]

    def start(name: str) -> ServerProcess:
        return start_server(args, env=env, log_dir=tmp_path_factory.mktemp(f"replica-{name}"))

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(start, name) for name in ("a", "b")]
    servers = [f.result() for f in futures if f.exception() is None]
    try:
        for f in futures:
            f.result()  # raises the first failure to start, once every started one is kept for stopping
        yield servers
    finally:
        for srv in servers:
            srv.stop()


def submitted(srv: ServerProcess) -> int:
    return int(engine_counters(srv, KEY)["submitted"])


def test_two_servers_share_one_batch_and_run_each_line_once(pair: list[ServerProcess]) -> None:
    a, b = pair
    before = [submitted(a), submitted(b)]
    ca, cb = sdk(a, KEY), sdk(b, KEY)
    uploaded = upload(ca, chat_lines(N, max_tokens=4))  # the bytes land in the shared files folder
    batch = cb.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    done = wait_for(ca, batch.id)
    assert done.status == "completed", done
    assert counts(done) == (N, N, 0) and done.error_file_id is None
    assert cb.batches.retrieve(batch.id) == done
    lines = read_lines(ca, done.output_file_id)
    bodies = successes(lines, "CreateChatCompletionResponse")
    assert sorted(bodies) == sorted(f"r{i}" for i in range(N))
    assert done.output_file_id is not None
    assert cb.files.content(done.output_file_id).content == ca.files.content(done.output_file_id).content
    assert_usage(done, bodies.values())
    ran = [submitted(a) - before[0], submitted(b) - before[1]]
    assert sum(ran) == N and min(ran) > 0, f"lines run by server a, b: {ran}"


def test_a_cancel_through_one_server_stops_the_others_lines(pair: list[ServerProcess]) -> None:
    a, b = pair
    before = [submitted(a), submitted(b)]
    ca, cb = sdk(a, KEY), sdk(b, KEY)
    batch = create_batch(ca, chat_lines(N, max_tokens=4, prefix="c"))
    wait_until(ca, batch.id, lambda x: some_done(x) and min(submitted(a) - before[0], submitted(b) - before[1]) > 0)
    assert cb.batches.cancel(batch.id).status == "cancelling"
    done = wait_for(ca, batch.id)
    assert done.status == "cancelled", done
    total, completed, failed = counts(done)
    assert total == N and completed + failed == N and 0 < completed < N, done
    bodies = successes(read_lines(cb, done.output_file_id), "CreateChatCompletionResponse")
    cancelled = unrun(read_lines(ca, done.error_file_id), "batch_cancelled")
    assert len(bodies) == completed and set(bodies) | cancelled == {f"c{i}" for i in range(N)}
    assert_usage(done, bodies.values())
    # neither server starts another line of it, and what they were running has stopped
    settled = [engine_counters(srv, KEY) for srv in pair]
    time.sleep(1.5)
    for srv, then in zip(pair, settled, strict=True):
        now = engine_counters(srv, KEY)
        assert now["submitted"] == then["submitted"] and now["running_sequences"] == 0, (then, now)


def test_a_killed_servers_lines_are_finished_by_the_other(pair: list[ServerProcess], database_url: str) -> None:
    a, b = pair
    before = [submitted(a), submitted(b)]
    ca, cb = sdk(a, KEY), sdk(b, KEY)
    batch = create_batch(ca, chat_lines(N, max_tokens=4, prefix="k"))
    at_kill = kill_mid_batch(a, database_url, batch.id, runners=2)  # a and b both mid-line
    not_done = N - at_kill["done"]
    assert sum(at_kill.values()) == N and 0 < not_done < N, at_kill

    done = wait_for(cb, batch.id)
    assert done.status == "completed", (done, b.log()[-3000:])
    assert counts(done) == (N, N, 0) and done.error_file_id is None
    bodies = successes(read_lines(cb, done.output_file_id), "CreateChatCompletionResponse")
    assert sorted(bodies) == sorted(f"k{i}" for i in range(N))
    assert_usage(done, bodies.values())  # each line counted once, whoever ran it
    # b ran every line not done at the kill (the dead server's running ones included, once their lease ran out)
    assert submitted(b) - before[1] >= not_done
