"""`faceplate check` (the real CLI, as a subprocess) against a real Faceplate with the bundled models:
every check passes; a closed port is exit 2 with one clean line. The probe reads the same server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp

import faceplate
from faceplate.check.probe import probe
from tests.e2e.conftest import E2E_KEY
from tests.serverproc import ServerProcess, free_port

MODEL = "smollm2-135m-instruct"


def _check(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    # The code under test, whichever checkout the editable install points at.
    src = str(Path(faceplate.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "faceplate", "check", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_faceplate_keeps_the_whole_contract(server: ServerProcess) -> None:
    done = _check(server.base_url, "--key", E2E_KEY, "--json", "--timeout", "120")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    results = {r["name"]: r for r in doc["results"]}
    assert len(results) >= 29 and doc["ok"] is True
    not_passed = {n: r["reason"] for n, r in results.items() if r["status"] != "pass"}
    assert not not_passed, not_passed  # with --key, and the embedding model found in /v1/models, nothing is skipped
    assert results["chat.model"]["reason"] == f"model {MODEL!r}"
    assert "384" in results["embeddings.base64"]["reason"]


def test_table_without_key_skips_auth_with_a_reason(server: ServerProcess) -> None:
    # Without --key the auth rows are skipped (the server may be open); the other rows still need a key here.
    done = _check(server.root, "--only", "auth", "models.list", "--key", E2E_KEY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "3 passed, 0 failed, 0 skipped"
    keyless = _check(server.root + "/v1/", "--only", "auth")
    assert keyless.returncode == 0, keyless.stdout + keyless.stderr
    rows = [line.split(None, 2) for line in keyless.stdout.splitlines() if line.startswith("auth.")]
    assert [(r[0], r[1]) for r in rows] == [("auth.missing_key", "SKIP"), ("auth.invalid_key", "SKIP")]
    assert all("no --key given" in r[2] for r in rows)


def test_closed_port_is_exit_2_without_traceback() -> None:
    port = free_port()
    done = _check(f"http://127.0.0.1:{port}", "--timeout", "5", timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith(f"faceplate check: cannot reach http://127.0.0.1:{port}/v1")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""
    as_json = _check(f"http://127.0.0.1:{port}", "--json", "--timeout", "5", timeout=60)
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["ok"] is False


async def test_probe_of_faceplate(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        chat = await probe(session, server.root, api_key=E2E_KEY, timeout=120)
        embed = await probe(session, server.base_url, api_key=E2E_KEY, model="all-minilm-l6-v2", timeout=120)
    assert chat.models == (MODEL, "all-minilm-l6-v2") and chat.model == MODEL
    assert chat.chat and chat.completions and chat.max_n == 128 and chat.stream_usage and not chat.usage_always
    assert chat.logprobs and chat.tools and chat.tool_choice_forced and chat.json_schema
    assert chat.max_completion_tokens and chat.error_shape_ok
    assert not chat.embeddings and chat.embedding_dimensions is None
    assert embed.embeddings and embed.embedding_dimensions == 384 and not embed.chat
