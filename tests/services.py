"""Throwaway PostgreSQL and Redis servers for tests marked ``services``.

Session fixtures start each server once, on a free loopback port in a temporary folder,
and remove it afterwards:

* ``postgres_url``: ``initdb`` + ``pg_ctl`` from the Debian ``postgresql`` package
  (``/usr/lib/postgresql/<v>/bin``), run as the ``postgres`` user when we are root
  (``initdb`` refuses root), trust auth on 127.0.0.1 only, fsync off.
* ``redis_url``: ``redis-server`` with no persistence, bound to 127.0.0.1.

Set ``FACEPLATE_TEST_POSTGRES_URL`` / ``FACEPLATE_TEST_REDIS_URL`` to use servers you
already run instead. Missing binaries skip the tests with the reason; ``make test``
installs them as root (``scripts/system-deps.sh``), so in CI they run.
Per-test fixtures give each test a fresh database (``pg_database``) and an empty Redis
database (``redis_clean``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import free_port

POSTGRES_ENV = "FACEPLATE_TEST_POSTGRES_URL"
REDIS_ENV = "FACEPLATE_TEST_REDIS_URL"
INSTALL_HINT = "install them with `apt-get install -y postgresql redis-server` (`make test` does, as root)"


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(cmd)]


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"{what} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server URL (``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``)."""
    if os.environ.get(POSTGRES_ENV):
        yield os.environ[POSTGRES_ENV]
        return
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(f"PostgreSQL binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")
    root = Path(tempfile.mkdtemp(prefix="faceplate-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    root.chmod(0o700)
    data, log = root / "data", root / "postgres.log"
    port = free_port()
    pg_ctl = str(bindir / "pg_ctl")
    try:
        _run(
            _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]),
            "initdb",
        )
        opts = f"-p {port} -h 127.0.0.1 -k {root} -F -c max_connections=200"
        _run(_as_postgres([pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", opts, "start"]), "pg_ctl start")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]), capture_output=True, timeout=60
            )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the server at ``postgres_url``; dropped at the end of the block."""
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(postgres_url)
    name = f"fp_test_{uuid.uuid4().hex[:12]}"
    conninfo = f"host={server.host} port={server.port} user={server.username} dbname={server.database}"
    if server.password:
        conninfo += f" password={server.password}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    with fresh_database(postgres_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis server URL (``redis://127.0.0.1:PORT/0``)."""
    if os.environ.get(REDIS_ENV):
        yield os.environ[REDIS_ENV]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(f"redis-server not found: {INSTALL_HINT}")
    with running_redis(binary, free_port()) as url:
        yield url


@contextlib.contextmanager
def running_redis(binary: str, port: int) -> Iterator[str]:
    """A redis-server on 127.0.0.1:``port`` for the duration of the block."""
    import redis

    root = Path(tempfile.mkdtemp(prefix="faceplate-redis-"))
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(root)]
    with open(root / "redis.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start:\n{(root / 'redis.log').read_text()}") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def redis_clean(redis_url: str) -> str:
    """The session's Redis, emptied before the test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


SERVICE_FIXTURES = {"postgres_url", "pg_database", "redis_url", "redis_clean"}


def mark_service_tests(items: list[pytest.Item]) -> None:
    """Tests that use a service fixture get the ``services`` marker (``-m "not services"`` skips them)."""
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
