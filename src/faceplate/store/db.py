"""The store's database: one SQLAlchemy engine, SQLite by default, PostgreSQL by URL.

SQLite is opened in WAL mode with a busy timeout, and Faceplate emits its own ``BEGIN``
(the sqlite3 module's legacy transaction handling would skip it before DDL and reads):
write transactions use ``BEGIN IMMEDIATE``, so two processes writing the same file wait
for each other (up to ``BUSY_TIMEOUT_MS``) instead of failing with "database is locked".
PostgreSQL goes through psycopg 3; a bare ``postgresql://`` URL is taken to mean that.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Row, Table, and_, create_engine, event, or_, select
from sqlalchemy.engine import make_url

BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg 3 (the driver Faceplate ships with)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        pool_size=8,
        max_overflow=8,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _enable_wal(cur)
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("faceplate_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _enable_wal(cur: sqlite3.Cursor) -> None:
    """WAL mode is stored in the file. Switching a new file to it while another connection is
    inside a transaction fails at once with "database is locked" (SQLite does not call the
    busy handler there), so retry until the busy timeout."""
    if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def open_engine(url: str) -> Engine:
    url = normalize_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock up front (BEGIN IMMEDIATE)."""
    with engine.connect() as conn:
        conn = conn.execution_options(faceplate_write=True)
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


def page_by_creation(
    conn: Connection, table: Table, where: list[ColumnElement[bool]], *, limit: int, order: str, after: str | None
) -> tuple[list[Row[Any]], bool]:
    """Up to ``limit`` rows in ``(created_at, id)`` order, strictly after the row ``after``; and has_more.

    The order is total, so a cursor never skips or repeats a row; an ``after`` that ``where`` does not
    select (another owner's, deleted) gives an empty page."""
    if order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
    if limit < 0:
        raise ValueError("limit must not be negative")
    at_c, id_c = table.c.created_at, table.c.id
    where = list(where)
    if after is not None:
        anchor = conn.execute(select(at_c, id_c).where(id_c == after, *where)).first()
        if anchor is None:
            return [], False
        at, aid = anchor
        if order == "asc":
            where.append(or_(at_c > at, and_(at_c == at, id_c > aid)))
        else:
            where.append(or_(at_c < at, and_(at_c == at, id_c < aid)))
    keys = [at_c.asc(), id_c.asc()] if order == "asc" else [at_c.desc(), id_c.desc()]
    rows = conn.execute(select(table).where(*where).order_by(*keys).limit(limit + 1)).all()
    return list(rows[:limit]), len(rows) > limit
