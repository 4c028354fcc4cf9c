"""Start a real ``faceplate serve`` process on a free loopback port, and stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    args: Sequence[str] = (), *, env: dict[str, str] | None = None, log_dir: Path, timeout: float = 180.0
) -> ServerProcess:
    port = free_port()
    full_env = {**os.environ, "FACEPLATE_DATA_DIR": str(log_dir / f"data-{port}"), **(env or {})}
    cmd = [sys.executable, "-m", "faceplate", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    return launch(cmd, port, log_dir / f"faceplate-{port}.log", env=full_env, timeout=timeout)


def launch(
    cmd: Sequence[str], port: int, log_path: Path, *, env: dict[str, str], cwd: Path | None = None, timeout: float = 180.0
) -> ServerProcess:
    """Run ``cmd`` (a server on ``port``), logging to ``log_path``; return once /health answers 200."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    server = ServerProcess(proc, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"faceplate exited with {proc.returncode}:\n{server.log()[-4000:]}")
        try:
            if httpx.get(f"{server.root}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"faceplate did not become healthy in {timeout}s:\n{server.log()[-4000:]}")
