"""6: batch limits: a key's enqueued-token limit for the Batch API, and each batch's enqueued tokens."""

from __future__ import annotations

from sqlalchemy import Connection, text


def upgrade(conn: Connection) -> None:
    # Plain ADD COLUMN: the same statement on SQLite and PostgreSQL, and no table rewrite on either.
    conn.execute(text("ALTER TABLE api_keys ADD COLUMN batch_token_limit BIGINT"))
    conn.execute(text("ALTER TABLE batches ADD COLUMN enqueued_tokens BIGINT NOT NULL DEFAULT 0"))
