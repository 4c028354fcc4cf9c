"""The Node clients people use (openai, the Vercel AI SDK), end to end: `node --test tests/node/` on a real server.

The Node packages are pinned in tests/node/package.json and installed by `make install` when npm exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, start_server

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
KEY = "sk-node-e2e-0123456789"
NODE = shutil.which("node")


@pytest.fixture(scope="module")
def node_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        [
            "--api-key",
            KEY,
            "--alias",
            "gpt-4o-mini=smollm2-135m-instruct",
            "--alias",
            "text-embedding-3-small=all-minilm-l6-v2",
        ],
        log_dir=tmp_path_factory.mktemp("node"),
    )
    yield srv
    srv.stop()


@pytest.mark.skipif(NODE is None, reason="node is not on PATH: the Node client tests need Node.js 20+")
@pytest.mark.skipif(
    not (NODE_DIR / "node_modules").is_dir(),
    reason="tests/node/node_modules is missing: run make install (it runs npm ci --prefix tests/node when npm exists)",
)
def test_node_clients(node_server: ServerProcess) -> None:
    assert NODE is not None
    # The test files by name: Node 20 searches a directory argument, Node 22 reads it as a glob.
    files = sorted(str(p) for p in NODE_DIR.glob("*.test.mjs"))
    assert files, f"no *.test.mjs in {NODE_DIR}"
    env = {**os.environ, "FACEPLATE_BASE_URL": node_server.base_url, "FACEPLATE_API_KEY": KEY, "NO_COLOR": "1"}
    try:
        res = subprocess.run(
            [NODE, "--test", "--test-reporter=spec", *files],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"node --test tests/node/ ran past 180 s:\n{out}\n--- server log ---\n{node_server.log()[-4000:]}")
    assert res.returncode == 0, (
        f"node --test tests/node/ exited {res.returncode}:\n{res.stdout}\n{res.stderr}\n"
        f"--- server log ---\n{node_server.log()[-4000:]}"
    )
