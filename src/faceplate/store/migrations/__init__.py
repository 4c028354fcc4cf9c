"""Ordered, named schema migrations, applied once each and recorded in ``schema_migrations``.

Each migration is a module ``vNNNN_<name>.py`` with ``upgrade(conn)`` written in SQLAlchemy
Core, so the same code runs on SQLite and PostgreSQL. A migration is frozen once released:
it declares the tables as they were at that version (never imports ``store.schema``), and
a change is a new module appended to ``MIGRATIONS``.

``migrate`` takes a lock first (PostgreSQL: a transaction-scoped advisory lock; SQLite:
``BEGIN IMMEDIATE``) so several processes starting together apply each migration once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select, text

from faceplate.store.db import write_transaction
from faceplate.store.migrations import (
    v0001_api_keys,
    v0002_usage,
    v0003_responses,
    v0004_files,
    v0005_batches,
    v0006_batch_limits,
)
from faceplate.store.schema import schema_migrations

_PG_LOCK_ID = 0x46504D47  # "FPMG": the advisory lock that serialises migrations


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    upgrade: Callable[[Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "api_keys", v0001_api_keys.upgrade),
    Migration(2, "usage", v0002_usage.upgrade),
    Migration(3, "responses", v0003_responses.upgrade),
    Migration(4, "files", v0004_files.upgrade),
    Migration(5, "batches", v0005_batches.upgrade),
    Migration(6, "batch_limits", v0006_batch_limits.upgrade),
)


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer Faceplate than this one."""


def applied_versions(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, "schema_migrations"):
            return []
        return sorted(conn.scalars(select(schema_migrations.c.version)))


def migrate(engine: Engine, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply every pending migration in order, in one transaction; return the versions applied."""
    done: list[int] = []
    with write_transaction(engine) as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
        schema_migrations.create(conn, checkfirst=True)
        applied = set(conn.scalars(select(schema_migrations.c.version)))
        known = {m.version for m in migrations}
        newer = sorted(applied - known)
        if newer:
            raise SchemaTooNew(
                f"the database has schema version {newer[-1]}, newer than this Faceplate knows ({max(known)}); upgrade Faceplate"
            )
        for m in sorted(migrations, key=lambda m: m.version):
            if m.version in applied:
                continue
            m.upgrade(conn)
            conn.execute(insert(schema_migrations).values(version=m.version, name=m.name, applied_at=time.time()))
            done.append(m.version)
    return done
