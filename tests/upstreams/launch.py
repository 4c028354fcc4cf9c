"""Run mockai as a subprocess (e2e tests, benchmarks), through tests/serverproc.launch.

with run_mockai(flavour="vllm", max_inflight=2) as url:   # "http://127.0.0.1:PORT"
    client = OpenAI(base_url=url.base_url, api_key="x")
    url.kill()        # SIGKILL, e.g. mid-stream
    url.restart()     # same port, same flags
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.serverproc import ServerProcess, free_port, launch

ROOT = Path(__file__).resolve().parents[2]


class MockProcess(str):
    """The root URL of a mockai subprocess (``http://127.0.0.1:PORT``), carrying its process."""

    server: ServerProcess
    cmd: list[str]
    log_path: Path
    timeout: float

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def base_url(self) -> str:
        return self + "/v1"

    @property
    def proc(self) -> Any:  # subprocess.Popen[bytes]
        return self.server.proc

    def log(self) -> str:
        return self.server.log()

    def kill(self) -> None:
        """SIGKILL the process (no graceful shutdown: open streams are cut) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        self.server.stop()

    def restart(self) -> None:
        """Start it again on the same port with the same flags (after kill() or stop())."""
        self.stop()
        self.server = launch(self.cmd, self.port, self.log_path, env=dict(os.environ), cwd=ROOT, timeout=self.timeout)


def mockai_command(port: int, flavour: str = "openai", **opts: Any) -> list[str]:
    """``python -m tests.upstreams.mockai --port P --flavour F`` plus ``--key value`` per option
    (``max_inflight=2`` → ``--max-inflight 2``; None leaves a flag out)."""
    cmd = [sys.executable, "-m", "tests.upstreams.mockai", "--port", str(port), "--flavour", flavour]
    for key, value in opts.items():
        if value is not None:
            cmd += ["--" + key.replace("_", "-"), str(value)]
    return cmd


@contextmanager
def run_mockai(
    port: int | None = None,
    flavour: str = "openai",
    *,
    log_dir: Path | None = None,
    timeout: float = 30.0,
    **opts: Any,
) -> Iterator[MockProcess]:
    """Start mockai (``opts``: model, max_inflight, prefill_ms_per_kchar) on ``port`` or a free
    loopback port, wait for ``/health``, yield its URL/handle, and stop it on exit."""
    with tempfile.TemporaryDirectory(prefix="mockai-") as tmp:
        port = port or free_port()
        log_path = Path(log_dir or tmp) / f"mockai-{port}.log"
        cmd = mockai_command(port, flavour, **opts)
        server = launch(cmd, port, log_path, env=dict(os.environ), cwd=ROOT, timeout=timeout)
        handle = MockProcess(f"http://127.0.0.1:{port}")
        handle.server, handle.cmd, handle.log_path, handle.timeout = server, cmd, log_path, timeout
        try:
            yield handle
        finally:
            handle.stop()
