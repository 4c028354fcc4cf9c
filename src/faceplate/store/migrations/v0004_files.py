"""4: uploaded files' metadata (their bytes live in the blob store, not the database)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Connection, Double, Index, MetaData, String, Table, Text


def upgrade(conn: Connection) -> None:
    meta = MetaData()
    files = Table(
        "files",
        meta,
        Column("id", String(64), primary_key=True),
        Column("owner", String(128), nullable=False),
        Column("filename", Text, nullable=False),
        Column("purpose", String(32), nullable=False),
        Column("bytes", BigInteger, nullable=False),
        Column("created_at", Double, nullable=False),
        Column("expires_at", Double, nullable=True),
        Column("status", String(16), nullable=False),
    )
    Index("ix_files_owner_created", files.c.owner, files.c.created_at)
    Index("ix_files_expires", files.c.expires_at)
    meta.create_all(conn)
