"""Conversations: an owner's ordered list of items, with string metadata.

Items are the OpenAI wire shapes, stored as compact JSON; the store reads nothing in them but
``item["id"]``, which is unique within a conversation. Writers that append items lock the
conversation's row first (PostgreSQL: ``FOR UPDATE``; SQLite: the write lock already held), so the
duplicate check before an insert cannot race another append, and a conversation deleted meanwhile
is seen as gone. The paging helpers here serve the response store's input items too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, Engine, Table, delete, insert, select, update

from faceplate.store.db import read_transaction, write_transaction
from faceplate.store.schema import conversation_items, conversations

ITEM_ID_MAX = 64  # the item_id column's width: PostgreSQL enforces it, SQLite would not


class DuplicateItem(Exception):
    """An item with this id is already in the conversation."""

    def __init__(self, item_id: str) -> None:
        super().__init__(f"an item with id {item_id!r} is already in this conversation")
        self.item_id = item_id


@dataclass(frozen=True)
class Conversation:
    id: str
    owner: str
    created_at: float
    metadata: dict[str, str]


def to_json(value: Any) -> str:
    # ASCII escapes keep a NUL out of the text (PostgreSQL's text type refuses it)
    return json.dumps(value, separators=(",", ":"))


def item_id_of(item: dict[str, Any]) -> str:
    """The one field the store reads: the service gives every stored item an id."""
    item_id = item.get("id")
    if not isinstance(item_id, str) or not item_id or len(item_id) > ITEM_ID_MAX:
        raise ValueError(f"a stored item needs a string id of 1..{ITEM_ID_MAX} characters, got {item_id!r}")
    return item_id


def page_items(
    conn: Connection,
    table: Table,
    where: Sequence[ColumnElement[bool]],
    key: Column[Any],
    *,
    limit: int,
    order: str,
    after: str | None,
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` items in ``key`` order (asc or desc), strictly after the item ``after``; and has_more."""
    if order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
    if limit < 0:
        raise ValueError("limit must not be negative")
    query = select(table.c.item).where(*where)
    if after is not None:
        anchor = conn.execute(select(key).where(*where, table.c.item_id == after).order_by(key).limit(1)).scalar()
        if anchor is None:
            return [], False  # an id not in this list: nothing comes after it
        query = query.where(key > anchor if order == "asc" else key < anchor)
    query = query.order_by(key.asc() if order == "asc" else key.desc()).limit(limit + 1)  # one extra: has_more
    rows = conn.scalars(query).all()
    return [json.loads(r) for r in rows[:limit]], len(rows) > limit


def lock_conversation(conn: Connection, id: str, owner: str) -> bool:
    """Whether the owner's conversation exists; on PostgreSQL its row stays locked until commit."""
    found = conn.execute(
        select(conversations.c.id).where(conversations.c.id == id, conversations.c.owner == owner).with_for_update()
    ).first()
    return found is not None


def append_items(conn: Connection, id: str, items: Sequence[dict[str, Any]], now: float, *, skip_existing: bool) -> None:
    """Append in order under the conversation's lock; a repeated id raises DuplicateItem or, with
    ``skip_existing`` (a retried finish), is left out."""
    ids = [item_id_of(item) for item in items]
    if not ids:
        return
    existing = set(
        conn.scalars(
            select(conversation_items.c.item_id).where(
                conversation_items.c.conversation_id == id, conversation_items.c.item_id.in_(list(dict.fromkeys(ids)))
            )
        )
    )
    rows = []
    for item_id, item in zip(ids, items, strict=True):
        if item_id in existing:
            if skip_existing:
                continue
            raise DuplicateItem(item_id)
        existing.add(item_id)  # a repeat within the same batch is a duplicate too
        rows.append({"conversation_id": id, "item_id": item_id, "item": to_json(item), "created_at": now})
    if rows:
        conn.execute(insert(conversation_items), rows)


def _conversation(row: Any) -> Conversation:
    return Conversation(id=row.id, owner=row.owner, created_at=row.created_at, metadata=json.loads(row.metadata))


class ConversationStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self, *, id: str, owner: str, created_at: float, metadata: dict[str, str], items: list[dict[str, Any]]
    ) -> Conversation:
        with write_transaction(self._engine) as conn:
            conn.execute(insert(conversations).values(id=id, owner=owner, created_at=created_at, metadata=to_json(metadata)))
            append_items(conn, id, items, created_at, skip_existing=False)
        return Conversation(id=id, owner=owner, created_at=created_at, metadata=dict(metadata))

    def get(self, id: str, owner: str) -> Conversation | None:
        with read_transaction(self._engine) as conn:
            row = conn.execute(select(conversations).where(conversations.c.id == id, conversations.c.owner == owner)).first()
        return _conversation(row) if row is not None else None

    def update(self, id: str, owner: str, metadata: dict[str, str]) -> Conversation | None:
        """Replace the metadata (as OpenAI's update does: it is not merged)."""
        mine = (conversations.c.id == id, conversations.c.owner == owner)
        with write_transaction(self._engine) as conn:  # no RETURNING: older SQLite builds lack it
            if conn.execute(update(conversations).where(*mine).values(metadata=to_json(metadata))).rowcount == 0:
                return None
            row = conn.execute(select(conversations).where(*mine)).one()
        return _conversation(row)

    def delete(self, id: str, owner: str) -> bool:
        with write_transaction(self._engine) as conn:
            gone = conn.execute(delete(conversations).where(conversations.c.id == id, conversations.c.owner == owner))
            if gone.rowcount == 0:
                return False
            conn.execute(delete(conversation_items).where(conversation_items.c.conversation_id == id))
        return True

    def add_items(self, id: str, owner: str, items: list[dict[str, Any]], now: float) -> bool:
        """False when the owner has no such conversation; DuplicateItem (nothing added) on a repeated id."""
        with write_transaction(self._engine) as conn:
            if not lock_conversation(conn, id, owner):
                return False
            append_items(conn, id, items, now, skip_existing=False)
        return True

    def items(self, id: str, owner: str) -> list[dict[str, Any]] | None:
        """Every item in order: the context for a response in this conversation."""
        with read_transaction(self._engine) as conn:
            if not self._exists(conn, id, owner):
                return None
            rows = conn.scalars(
                select(conversation_items.c.item)
                .where(conversation_items.c.conversation_id == id)
                .order_by(conversation_items.c.seq)
            ).all()
        return [json.loads(r) for r in rows]

    def list_items(
        self, id: str, owner: str, *, limit: int, order: str, after: str | None
    ) -> tuple[list[dict[str, Any]], bool] | None:
        with read_transaction(self._engine) as conn:
            if not self._exists(conn, id, owner):
                return None
            where = [conversation_items.c.conversation_id == id]
            return page_items(conn, conversation_items, where, conversation_items.c.seq, limit=limit, order=order, after=after)

    def get_item(self, id: str, owner: str, item_id: str) -> dict[str, Any] | None:
        query = (
            select(conversation_items.c.item)
            .join(conversations, conversations.c.id == conversation_items.c.conversation_id)
            .where(conversations.c.id == id, conversations.c.owner == owner, conversation_items.c.item_id == item_id)
        )
        with read_transaction(self._engine) as conn:
            text = conn.scalar(query)
        return json.loads(text) if text is not None else None

    def delete_item(self, id: str, owner: str, item_id: str) -> bool:
        with write_transaction(self._engine) as conn:
            if not lock_conversation(conn, id, owner):
                return False
            gone = conn.execute(
                delete(conversation_items).where(
                    conversation_items.c.conversation_id == id, conversation_items.c.item_id == item_id
                )
            )
        return gone.rowcount > 0

    @staticmethod
    def _exists(conn: Connection, id: str, owner: str) -> bool:
        query = select(conversations.c.id).where(conversations.c.id == id, conversations.c.owner == owner)
        return conn.execute(query).first() is not None
