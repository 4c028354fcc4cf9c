"""A batch survives its server being killed with SIGKILL mid-run, and no line runs twice.

A server on a fixed data dir (SQLite) with a short batch lease (``FACEPLATE_BATCH_LEASE_S``) runs a
chat batch; it is killed (no shutdown hook runs) at a moment when some lines are done and others are
running, and a new server is started on the same data dir. The new one runs what was left (the
pending lines at once, the dead runner's running lines once their lease runs out), and the batch
completes: every custom_id exactly once in the output file, none in an error file, the counts and
the usage those of the output bodies; and the new server's engine was handed exactly the lines that
were not done at the kill, each once.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.batch_helpers import (
    assert_usage,
    chat_lines,
    chat_server,
    counts,
    create_batch,
    engine_counters,
    kill_mid_batch,
    read_lines,
    successes,
    wait_for,
)
from tests.e2e.keys_helpers import close_clients, sdk
from tests.serverproc import ServerProcess, start_server

__all__ = ["close_clients"]  # the autouse fixture that closes every client `sdk` made

KEY = "sk-e2e-batch-restart-0123456789"
LEASE_S = 3
N = 24


def test_a_batch_completes_after_its_server_is_killed_mid_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"FACEPLATE_DATA_DIR": str(data), "FACEPLATE_BATCH_LEASE_S": str(LEASE_S)}
    store_url = f"sqlite:///{data / 'faceplate.db'}"
    started: list[ServerProcess] = []

    def start() -> ServerProcess:
        srv = start_server([*chat_server(), "--api-key", KEY], env=env, log_dir=tmp_path)
        started.append(srv)
        return srv

    try:
        first = start()
        client = sdk(first, KEY)
        batch = create_batch(client, chat_lines(N, max_tokens=4))
        at_kill = kill_mid_batch(first, store_url, batch.id)
        done_before = at_kill["done"]
        assert sum(at_kill.values()) == N and 0 < done_before < N, at_kill

        second = start()  # a fresh process: its engine counters start at 0
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
    finally:
        for srv in started:
            srv.stop()
