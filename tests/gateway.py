"""Start a real ``faceplate serve`` gateway over given upstreams (a TOML config, as operators write it)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.serverproc import ServerProcess, start_server


def _toml(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | bool | int | float) else str(value)


def gateway_config(upstreams: Sequence[dict[str, Any]], routing: dict[str, Any] | None = None) -> str:
    """``[[upstreams]]`` tables (id, url, kind, ...) and a ``[routing]`` table."""
    text = "".join("[[upstreams]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in up.items()) + "\n" for up in upstreams)
    if routing:
        text += "[routing]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in routing.items())
    return text


def start_gateway(
    upstreams: Sequence[dict[str, Any]],
    *,
    log_dir: Path,
    routing: dict[str, Any] | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> ServerProcess:
    config = log_dir / f"gateway-{len(list(log_dir.iterdir()))}.toml"
    config.write_text(gateway_config(upstreams, routing))
    return start_server(["--config", str(config), *args], log_dir=log_dir, env=env)


def pool_stats(gateway: ServerProcess, model: str, key: str | None = None) -> dict[str, Any]:
    """The pool's counters from /health (placements, and per upstream: circuit, inflight, failures, retries)."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{gateway.root}/health", headers=headers, timeout=10).json()["models"][model]
