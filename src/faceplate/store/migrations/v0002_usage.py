"""2: usage, one row per API request."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Connection, Double, Index, Integer, MetaData, String, Table


def upgrade(conn: Connection) -> None:
    meta = MetaData()
    usage = Table(
        "usage",
        meta,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("key_id", String(64), nullable=True),
        Column("model", String(200), nullable=False),
        Column("endpoint", String(100), nullable=False),
        Column("prompt_tokens", Integer, nullable=False),
        Column("completion_tokens", Integer, nullable=False),
        Column("status", Integer, nullable=False),
        Column("latency_ms", Double, nullable=False),
        Column("created", Double, nullable=False),
        Column("day", String(10), nullable=False),
    )
    Index("ix_usage_created", usage.c.created)
    Index("ix_usage_key_created", usage.c.key_id, usage.c.created)
    meta.create_all(conn)
