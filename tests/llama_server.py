"""llama.cpp's own ``llama-server`` on loopback, as a real remote engine for the gateway tests.

The binary is built from the llama.cpp sources inside the llama-cpp-python source package
(scripts/build_llama_server.py, which `make test` runs first and caches); it serves the bundled
chat model. Without the binary the tests skip, except under CI, where that is a failure.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import pytest

from faceplate.config import bundled_chat_model_path
from tests.serverproc import ServerProcess, free_port, launch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from build_llama_server import binary_path  # noqa: E402 - scripts/ is not a package


def llama_server_binary() -> Path:
    path = binary_path(importlib.metadata.version("llama-cpp-python"))
    if not path.exists():
        why = f"llama-server is not built ({path}); `make llama-server` builds it"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


def start_llama_server(log_dir: Path, *, alias: str, n_parallel: int = 2, threads: int = 1) -> ServerProcess:
    """The bundled chat model under llama-server: tool calls (--jinja), load gauges (--metrics), /slots."""
    model = bundled_chat_model_path()
    assert model is not None, "the bundled chat model is not installed"
    port = free_port()
    cmd = [
        str(llama_server_binary()), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
        "-np", str(n_parallel), "-t", str(threads), "-tb", str(threads), "-c", str(2048 * n_parallel),
        "--alias", alias, "--jinja", "--metrics",
    ]  # fmt: skip
    return launch(cmd, port, log_dir / f"llama-server-{port}.log", env=dict(os.environ))
