"""3: stored responses (with their input and output items) and conversations (with theirs)."""

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
    responses = Table(
        "responses",
        meta,
        Column("id", String(64), primary_key=True),
        Column("owner", String(128), nullable=False),
        Column("status", String(32), nullable=False),
        Column("background", Boolean, nullable=False),
        Column("created_at", Double, nullable=False),
        Column("updated_at", Double, nullable=False),
        Column("previous_response_id", String(64), nullable=True),
        Column("conversation_id", String(64), nullable=True),
        Column("object", Text, nullable=False),
        Column("events", Text, nullable=True),
        Column("runner", String(64), nullable=True),
        Column("heartbeat_at", Double, nullable=True),
        Column("cancel_requested", Boolean, nullable=False, default=False),
    )
    Index("ix_responses_owner_created", responses.c.owner, responses.c.created_at)
    Index("ix_responses_status", responses.c.status)
    Index("ix_responses_created", responses.c.created_at)

    response_items = Table(
        "response_items",
        meta,
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("response_id", String(64), nullable=False),
        Column("kind", String(8), nullable=False),
        Column("position", Integer, nullable=False),
        Column("item_id", String(64), nullable=False),
        Column("item", Text, nullable=False),
        UniqueConstraint("response_id", "kind", "position", name="uq_response_items_position"),
    )
    Index("ix_response_items_item_id", response_items.c.item_id)

    Table(
        "conversations",
        meta,
        Column("id", String(64), primary_key=True),
        Column("owner", String(128), nullable=False),
        Column("created_at", Double, nullable=False),
        Column("metadata", Text, nullable=False),
    )

    conversation_items = Table(
        "conversation_items",
        meta,
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("conversation_id", String(64), nullable=False),
        Column("item_id", String(64), nullable=False),
        Column("item", Text, nullable=False),
        Column("created_at", Double, nullable=False),
        UniqueConstraint("conversation_id", "item_id", name="uq_conversation_items_item"),
    )
    Index("ix_conversation_items_conversation_seq", conversation_items.c.conversation_id, conversation_items.c.seq)
    Index("ix_conversation_items_item_id", conversation_items.c.item_id)  # find_item looks up by id alone
    meta.create_all(conn)
