"""5: batches (lifecycle, counts, the stage lease) and their request lines (one row per input line)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)


def upgrade(conn: Connection) -> None:
    meta = MetaData()
    batches = Table(
        "batches",
        meta,
        Column("id", String(64), primary_key=True),
        Column("owner", String(128), nullable=False),
        Column("principal", Text, nullable=False),
        Column("endpoint", String(64), nullable=False),
        Column("input_file_id", String(64), nullable=False),
        Column("completion_window", String(8), nullable=False),
        Column("status", String(16), nullable=False),
        Column("created_at", Double, nullable=False),
        Column("expires_at", Double, nullable=False),
        Column("in_progress_at", Double, nullable=True),
        Column("finalizing_at", Double, nullable=True),
        Column("completed_at", Double, nullable=True),
        Column("failed_at", Double, nullable=True),
        Column("expired_at", Double, nullable=True),
        Column("cancelling_at", Double, nullable=True),
        Column("cancelled_at", Double, nullable=True),
        Column("model", String(200), nullable=True),
        Column("metadata", Text, nullable=False),
        Column("errors", Text, nullable=True),
        Column("output_file_id", String(64), nullable=True),
        Column("error_file_id", String(64), nullable=True),
        Column("total", Integer, nullable=False, default=0),
        Column("completed", Integer, nullable=False, default=0),
        Column("failed", Integer, nullable=False, default=0),
        Column("input_tokens", BigInteger, nullable=False, default=0),
        Column("cached_tokens", BigInteger, nullable=False, default=0),
        Column("output_tokens", BigInteger, nullable=False, default=0),
        Column("output_expires_after", Integer, nullable=True),
        Column("lease_owner", String(64), nullable=True),
        Column("lease_until", Double, nullable=True),
    )
    Index("ix_batches_owner_created", batches.c.owner, batches.c.created_at)
    Index("ix_batches_status", batches.c.status)

    requests = Table(
        "batch_requests",
        meta,
        Column("batch_id", String(64), primary_key=True),
        Column("line", Integer, primary_key=True, autoincrement=False),
        Column("custom_id", String(512), nullable=False),
        Column("request", Text, nullable=False),
        Column("status", String(16), nullable=False),
        Column("lease_owner", String(64), nullable=True),
        Column("lease_until", Double, nullable=True),
        Column("ok", Boolean, nullable=True),
        Column("result", Text, nullable=True),
        Column("updated_at", Double, nullable=False),
        UniqueConstraint("batch_id", "custom_id", name="uq_batch_requests_custom_id"),
    )
    Index("ix_batch_requests_status_lease", requests.c.status, requests.c.lease_until)
    # line last: a batch's pending lines come out of the index already in line order (the claim's order)
    Index("ix_batch_requests_batch_status", requests.c.batch_id, requests.c.status, requests.c.line)
    meta.create_all(conn)
