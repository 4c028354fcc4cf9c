"""nginx on loopback in front of Faceplate replicas, with the project's own deploy/nginx.conf."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, free_port, launch

DEPLOY_CONF = Path(__file__).resolve().parents[1] / "deploy" / "nginx.conf"


def site_config(upstream_ports: list[int], port: int) -> str:
    """deploy/nginx.conf with its replicas and listen address on loopback ports."""
    text = DEPLOY_CONF.read_text()
    servers = re.findall(r"^\s*server [\w.-]+:\d+ .*;$", text, flags=re.M)
    assert len(servers) == 2, "deploy/nginx.conf no longer lists two replica servers"
    options = servers[0].strip().split(" ", 2)[2]  # max_fails=... fail_timeout=...;
    lines = "\n".join(f"    server 127.0.0.1:{p} {options}" for p in upstream_ports)
    text = text.replace(servers[0], lines).replace(servers[1] + "\n", "")
    return text.replace("listen 80;", f"listen 127.0.0.1:{port};")


def start_nginx(upstream_ports: list[int], work: Path, timeout: float = 20.0) -> ServerProcess:
    """nginx in the foreground, everything it writes under ``work``; stopped like a replica."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        pytest.skip("nginx is not installed (scripts/system-deps.sh installs it)")
    port = free_port()
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / d).mkdir(parents=True, exist_ok=True)
    (work / "site.conf").write_text(site_config(upstream_ports, port))
    (work / "nginx.conf").write_text(
        f"""daemon off;
user root;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {work}/access.log;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    include {work}/site.conf;
}}
"""
    )
    argv = [binary, "-p", str(work), "-e", str(work / "error.log"), "-c", str(work / "nginx.conf")]
    # Ready when /health answers 200 through it, i.e. once it listens and reaches a replica.
    return launch(argv, port, work / "nginx.out", env=dict(os.environ), timeout=timeout)
