"""A batch survives its server being killed with SIGKILL, and no line runs twice.

A server on a fixed data dir (SQLite) with a short batch lease (``FACEPLATE_BATCH_LEASE_S``) is
killed (no shutdown hook runs) and a new server is started on the same data dir:

- mid-run, at a moment when some lines are done and others are running: the new one runs what was
  left (the pending lines at once, the dead runner's running lines once their lease runs out), and
  the batch completes: every custom_id exactly once in the output file, none in an error file, the
  counts and the usage those of the output bodies; and the new server's engine was handed exactly
  the lines that were not done at the kill, each once;
- while it validates a 50,000-line input: the new one validates it again once the stage lease runs
  out, and the batch goes in_progress with each line stored once;
- while it wraps a cancelled batch up, after the error file's bytes are on disk but before the batch
  is marked cancelled (and its files recorded, in the same transaction): the new one wraps it up
  again under the same file ids, and the owner has exactly the files the batch names, on disk and
  in its file list: nothing stray.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from faceplate.service.batch_results import result_file_id
from tests.e2e.batch_helpers import (
    assert_usage,
    by_custom_id,
    chat_lines,
    chat_server,
    counts,
    create_batch,
    engine_counters,
    kill_mid_batch,
    kill_when,
    read_lines,
    stage_state,
    successes,
    wait_for,
    wait_until,
)
from tests.e2e.keys_helpers import close_clients, sdk
from tests.serverproc import ServerProcess, start_server

__all__ = ["close_clients"]  # the autouse fixture that closes every client `sdk` made

KEY = "sk-e2e-batch-restart-0123456789"
LEASE_S = 3
N = 24


class Restarts:
    """Servers one after another on one data dir (SQLite); every one is stopped at the end."""

    def __init__(self, tmp: Path) -> None:
        data = tmp / "data"
        self.data = data
        self.tmp = tmp
        self.env = {"FACEPLATE_DATA_DIR": str(data), "FACEPLATE_BATCH_LEASE_S": str(LEASE_S)}
        self.store_url = f"sqlite:///{data / 'faceplate.db'}"
        self.started: list[ServerProcess] = []

    def start(self) -> ServerProcess:
        srv = start_server([*chat_server(), "--api-key", KEY], env=self.env, log_dir=self.tmp)
        self.started.append(srv)
        return srv


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Restarts]:
    r = Restarts(tmp_path)
    yield r
    for srv in r.started:
        srv.stop()


def test_a_batch_completes_after_its_server_is_killed_mid_run(servers: Restarts) -> None:
    first = servers.start()
    client = sdk(first, KEY)
    batch = create_batch(client, chat_lines(N, max_tokens=4))
    at_kill = kill_mid_batch(first, servers.store_url, batch.id)
    done_before = at_kill["done"]
    assert sum(at_kill.values()) == N and 0 < done_before < N, at_kill

    second = servers.start()  # a fresh process: its engine counters start at 0
    client = sdk(second, KEY)
    assert client.batches.retrieve(batch.id).status == "in_progress"
    done = wait_for(client, batch.id)
    assert done.status == "completed", (done, second.log()[-3000:])
    assert counts(done) == (N, N, 0) and done.error_file_id is None
    bodies = successes(read_lines(client, done.output_file_id), "CreateChatCompletionResponse")
    assert sorted(bodies) == sorted(f"r{i}" for i in range(N))
    assert_usage(done, bodies.values())
    # the new process ran each line not done at the kill once (the dead runner's included), no other
    ran = engine_counters(second, KEY)
    assert (ran["submitted"], ran["completed"]) == (N - done_before, N - done_before), (at_kill, ran)


def test_a_batch_killed_while_validating_is_validated_again(servers: Restarts) -> None:
    big = 50_000
    first = servers.start()
    client = sdk(first, KEY)
    batch = create_batch(client, chat_lines(big, max_tokens=1))

    def validating() -> tuple[bool, tuple[str, bool, int]]:
        state = stage_state(servers.store_url, batch.id)
        return state[:2] == ("validating", True), state  # a runner holds the stage: it is reading the file

    assert kill_when(first, validating) == ("validating", True, 0)

    second = servers.start()
    client = sdk(second, KEY)
    started = wait_until(client, batch.id, lambda b: b.status == "in_progress", timeout=60)
    assert counts(started)[0] == big and stage_state(servers.store_url, batch.id)[2] == big
    client.batches.cancel(batch.id)  # 50,000 lines need not run
    done = wait_for(client, batch.id)
    total, completed, failed = counts(done)
    assert done.status == "cancelled" and total == big and completed + failed == big, done
    everything = read_lines(client, done.output_file_id) + read_lines(client, done.error_file_id)
    assert len(by_custom_id(everything)) == big


class Missed(Exception):
    """The wrap-up ended before the kill could land in its window."""


def test_a_wrap_up_killed_after_writing_its_files_leaves_no_stray_file(servers: Restarts) -> None:
    n = 5_000  # a 1 MB error file: a wrap-up long enough to poll through, short enough to repeat
    first = servers.start()
    client = sdk(first, KEY)
    files_dir = servers.data / "files"
    engine = sqlalchemy.create_engine(servers.store_url)
    try:
        for _attempt in range(5):
            batch = create_batch(client, chat_lines(n, max_tokens=1))
            wait_until(client, batch.id, lambda b: b.status == "in_progress", timeout=60)
            client.batches.cancel(batch.id)

            error_blob = files_dir / (error_id := result_file_id(batch.id, "error"))[-2:] / error_id

            def written_not_finished(batch_id: str = batch.id, blob: Path = error_blob) -> tuple[bool, str]:
                with engine.connect() as conn:
                    status = conn.scalar(sqlalchemy.text("SELECT status FROM batches WHERE id = :id"), {"id": batch_id})
                if status == "cancelled":
                    raise Missed
                return status == "cancelling" and blob.exists(), str(status)

            try:
                kill_when(first, written_not_finished, poll=0, timeout=60)
                break
            except Missed:
                continue
        else:
            pytest.skip("every wrap-up ended before the kill could land between its file write and its finish")
    finally:
        engine.dispose()

    second = servers.start()
    client = sdk(second, KEY)
    done = wait_for(client, batch.id)
    total, completed, failed = counts(done)
    assert done.status == "cancelled" and total == n and completed + failed == n, done
    named_by_batch = {done.output_file_id, done.error_file_id} - {None}
    mine = {f.id for f in client.files.list(purpose="batch_output") if f.filename.startswith(f"batch_{batch.id}_")}
    assert mine == named_by_batch, f"files named for the batch: {mine}; the batch names {named_by_batch}"
    # Committed blobs only: a temporary file (tmp/*.part) the kill cut short is swept once an hour
    # old (DirectoryBlobs.sweep_temp, files upkeep), since a young one may be another process's write.
    on_disk = {p.name for p in files_dir.glob("*/file-*") if p.parent.name != "tmp"}
    listed = {f.id for f in client.files.list()}
    assert on_disk == listed, f"blobs no file row names: {on_disk - listed}"
