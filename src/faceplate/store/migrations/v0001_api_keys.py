"""1: API keys, stored as SHA-256 hashes with a short visible prefix."""

from __future__ import annotations

from sqlalchemy import Column, Connection, Double, Integer, MetaData, String, Table, Text


def upgrade(conn: Connection) -> None:
    meta = MetaData()
    Table(
        "api_keys",
        meta,
        Column("id", String(64), primary_key=True),
        Column("name", String(200), nullable=False),
        Column("key_hash", String(64), nullable=False, unique=True),
        Column("prefix", String(32), nullable=False),
        Column("models", Text, nullable=True),
        Column("rpm", Integer, nullable=True),
        Column("tpm", Integer, nullable=True),
        Column("created_at", Double, nullable=False),
        Column("expires_at", Double, nullable=True),
        Column("revoked_at", Double, nullable=True),
    )
    meta.create_all(conn)
