"""What bench/soak.py asks of the server it soaks: its /health and /metrics counters, the RSS and
/health monitor, the checks after the load (idle, still serving) and the summary of its JSON log."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import openai  # noqa: E402
from common import proc_status  # noqa: E402
from openai import OpenAI  # noqa: E402
from soak_mix import AUTH, CHAT, DIMENSIONS, EMB, KEY  # noqa: E402
from tests.serverproc import ServerProcess  # noqa: E402


def engine_counters(server: ServerProcess) -> dict[str, Any]:
    models = httpx.get(f"{server.root}/health", headers=AUTH, timeout=10).json()["models"]
    chat, emb = models[CHAT], models[EMB]
    return {
        "running": chat["running_sequences"],
        "queued": chat["queued_requests"],
        "emb_active": emb["active_requests"],
        "emb_queued": emb["queued_inputs"],
        "cancelled": chat.get("cancelled"),
    }


def scrape_metrics(server: ServerProcess) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.root}/metrics", headers=AUTH, timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("faceplate:num_requests_running", "faceplate:num_requests_waiting", "faceplate:num_inputs_waiting"):
                out[f"{s.name}{{model={s.labels.get('model')}}}"] = s.value
    return out


class Monitor:
    """RSS every ``every`` s, /health every third sample, from before the load until after the idle check."""

    def __init__(self, server: ServerProcess, t0: float, every: float = 2.0) -> None:
        self.server, self.t0, self.every = server, t0, every
        self.rss: list[tuple[float, int]] = []  # (s since load start, KiB)
        self.health: list[tuple[float, dict[str, Any]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="soak-monitor", daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            now = time.monotonic() - self.t0
            rss = proc_status(self.server.proc.pid).get("VmRSS")
            if rss:
                self.rss.append((now, rss))
            if i % 3 == 0:
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    self.health.append((now, engine_counters(self.server)))
            i += 1
            self.stop.wait(self.every)


def wait_idle(server: ServerProcess, timeout: float) -> tuple[bool, float, dict[str, Any], dict[str, float]]:
    """Until /health and /metrics both show nothing running or waiting (or ``timeout``)."""
    started = time.monotonic()
    while True:
        health, metrics = engine_counters(server), scrape_metrics(server)
        idle = (
            (health["running"] == 0 and health["queued"] == 0 and health["emb_active"] == 0 and health["emb_queued"] == 0)
            and bool(metrics)
            and all(v == 0 for v in metrics.values())
        )
        waited = time.monotonic() - started
        if idle or waited > timeout:
            return idle, waited, health, metrics
        time.sleep(0.5)


def still_serves(server: ServerProcess) -> str:
    """'' if a fresh chat call and a fresh embedding call succeed, else what went wrong."""
    try:
        with OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60) as c:
            r = c.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4)
            e = c.embeddings.create(model=EMB, input="still here")
        if not r.choices or len(e.data[0].embedding) != DIMENSIONS:
            return "malformed answer after the soak"
        return ""
    except openai.OpenAIError as exc:
        return f"{type(exc).__name__}: {exc}"


def server_log_summary(path: Path) -> dict[str, Any]:
    """Access-log statuses per route, and every error-level line, from the server's JSON log."""
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    errors: list[dict[str, Any]] = []
    warnings: Counter[str] = Counter()
    other = 0
    for raw in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            other += 1 if raw.strip() else 0
            continue
        if not isinstance(line, dict):
            continue
        if line.get("logger") == "faceplate.access":
            statuses[line.get("route", "?")][int(line.get("status", 0))] += 1
        elif line.get("level") in ("error", "critical"):
            errors.append({k: line.get(k) for k in ("time", "logger", "message", "exception")})
        elif line.get("level") == "warning":
            warnings[f"{line.get('logger')}: {str(line.get('message'))[:120]}"] += 1
    return {
        "statuses": {route: {str(s): n for s, n in sorted(c.items())} for route, c in sorted(statuses.items())},
        "errors": errors,
        "warnings": dict(warnings.most_common(20)),
        "non_json_lines": other,
    }
