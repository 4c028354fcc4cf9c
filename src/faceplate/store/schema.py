"""The tables as the code reads and writes them today (the migrations build them).

Times are Unix seconds (float) in UTC, so SQLite and PostgreSQL compare them the same way;
``usage.day`` (``YYYY-MM-DD``, UTC) is written with each row so reports group by day
without dialect-specific date functions. Responses, conversations and their items are
kept as compact JSON text (the OpenAI wire shapes); only ids, owners and status are columns.
Files keep only their metadata here; their bytes live in a blob store (``store.blobs``).
Batches keep their lifecycle and counts here, and one row per input line (``batch_requests``)
with its lease while it runs and its output line once done.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Double, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("applied_at", Double, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(32), nullable=False),
    Column("models", Text, nullable=True),  # JSON array of model ids; NULL: every model
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=True),
    Column("revoked_at", Double, nullable=True),
    # most prompt tokens (estimated) enqueued in unfinished batches; NULL: the server's setting
    Column("batch_token_limit", BigInteger, nullable=True),
)

usage = Table(
    "usage",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("key_id", String(64), nullable=True),  # NULL: a static key or anonymous
    Column("model", String(200), nullable=False),
    Column("endpoint", String(100), nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Double, nullable=False),
    Column("created", Double, nullable=False),
    Column("day", String(10), nullable=False),
)

responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),  # the API key's identity; other owners never see the row
    Column("status", String(32), nullable=False),  # object["status"], a column so startup finds the unfinished
    Column("background", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("previous_response_id", String(64), nullable=True),
    Column("conversation_id", String(64), nullable=True),
    Column("object", Text, nullable=False),  # the Response JSON as last written
    Column("events", Text, nullable=True),  # JSON array of stream events (background streams)
    # the process generating it and when it last said so: a replica fails only responses whose runner went quiet
    Column("runner", String(64), nullable=True),
    Column("heartbeat_at", Double, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),  # a cancel that reached another replica
)

response_items = Table(
    "response_items",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("response_id", String(64), nullable=False),
    Column("kind", String(8), nullable=False),  # 'input' | 'output'
    Column("position", Integer, nullable=False),
    Column("item_id", String(64), nullable=False),
    Column("item", Text, nullable=False),
    UniqueConstraint("response_id", "kind", "position", name="uq_response_items_position"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("metadata", Text, nullable=False),  # JSON object of strings
)

conversation_items = Table(
    "conversation_items",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),  # the order
    Column("conversation_id", String(64), nullable=False),
    Column("item_id", String(64), nullable=False),
    Column("item", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("conversation_id", "item_id", name="uq_conversation_items_item"),
)

files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("filename", Text, nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=True),  # NULL: kept until deleted
    Column("status", String(16), nullable=False),
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("principal", Text, nullable=False),  # JSON from the service: who the lines run as
    Column("endpoint", String(64), nullable=False),
    Column("input_file_id", String(64), nullable=False),
    Column("completion_window", String(8), nullable=False),
    # validating, failed, in_progress, finalizing, completed, expired, cancelling, cancelled
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
    Column("metadata", Text, nullable=False),  # JSON object of strings
    Column("errors", Text, nullable=True),  # JSON list of {code, message, param, line}: why validation failed
    Column("output_file_id", String(64), nullable=True),
    Column("error_file_id", String(64), nullable=True),
    Column("total", Integer, nullable=False, default=0),
    Column("completed", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("cached_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("output_expires_after", Integer, nullable=True),  # seconds the output files live; NULL: the default
    # a claim on the batch's stage work (validating, finalizing, cancelling, expiring): who and until when
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Double, nullable=True),
    # the input's prompt tokens (estimated at validation), counted against its key's batch token limit
    Column("enqueued_tokens", BigInteger, nullable=False, default=0, server_default="0"),
)

batch_requests = Table(
    "batch_requests",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("line", Integer, primary_key=True, autoincrement=False),  # 1-based, as in the input file
    Column("custom_id", String(512), nullable=False),
    Column("request", Text, nullable=False),  # the line's JSON: method, url, body
    Column("status", String(16), nullable=False),  # pending, running, done
    Column("lease_owner", String(64), nullable=True),  # the runner running it, and until when it may
    Column("lease_until", Double, nullable=True),
    Column("ok", Boolean, nullable=True),  # done: True to the output file, False to the error file
    Column("result", Text, nullable=True),  # done: the output line's JSON
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("batch_id", "custom_id", name="uq_batch_requests_custom_id"),
)
