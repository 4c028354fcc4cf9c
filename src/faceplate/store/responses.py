"""Stored responses: the Response object as last written, its input and output items, and the
stream events of background responses.

A row is written when a response is created (status queued or in_progress) and rewritten
when it finishes. ``finish`` updates the row before touching items, which locks it
(PostgreSQL: the row lock; SQLite: the write lock is already held), so a finish that races a
delete or a second finish sees a settled row: a deleted response gets no orphan items, and a
repeated finish replaces the outputs instead of adding them twice. Continuations walk the
``previous_response_id`` links with one recursive query, then read the items with another.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, literal_column, select, update

from faceplate.store.conversations import append_items, item_id_of, lock_conversation, page_items, to_json
from faceplate.store.db import read_transaction, write_transaction
from faceplate.store.schema import conversation_items, conversations, response_items, responses

MAX_CHAIN = 10_000  # links followed at most: a runaway chain is cut, never walked forever
UNFINISHED = ("queued", "in_progress")
_IN_CHUNK = 500  # ids per IN (...): far below SQLite's and PostgreSQL's bound-parameter limits


class BrokenChain(Exception):
    """A previous_response_id link points at a response that is gone (deleted or purged)."""

    def __init__(self, missing_id: str) -> None:
        super().__init__(f"previous response {missing_id!r} is no longer stored")
        self.missing_id = missing_id


@dataclass(frozen=True)
class StoredResponse:
    id: str
    owner: str
    status: str
    background: bool
    created_at: float
    updated_at: float
    previous_response_id: str | None
    conversation_id: str | None
    object: dict[str, Any]
    events: list[dict[str, Any]] | None


@dataclass(frozen=True)
class Turn:
    """One stored response as context for a continuation."""

    response_id: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


def _item_rows(response_id: str, kind: str, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"response_id": response_id, "kind": kind, "position": i, "item_id": item_id_of(item), "item": to_json(item)}
        for i, item in enumerate(items)
    ]


class ResponseStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self,
        *,
        id: str,
        owner: str,
        object: dict[str, Any],
        background: bool,
        previous_response_id: str | None,
        conversation_id: str | None,
        input_items: list[dict[str, Any]],
        runner: str | None = None,
    ) -> None:
        """``runner``: the process that will generate it (it heartbeats while it does)."""
        created = float(object["created_at"])
        rows = _item_rows(id, "input", input_items)  # validated before the transaction starts
        with write_transaction(self._engine) as conn:
            conn.execute(
                insert(responses).values(
                    id=id,
                    owner=owner,
                    status=object["status"],
                    background=background,
                    created_at=created,
                    updated_at=created,
                    previous_response_id=previous_response_id,
                    conversation_id=conversation_id,
                    object=to_json(object),
                    events=None,
                    runner=runner,
                    heartbeat_at=time.time(),
                    cancel_requested=False,
                )
            )
            if rows:
                conn.execute(insert(response_items), rows)

    def get(self, id: str, owner: str) -> StoredResponse | None:
        with read_transaction(self._engine) as conn:
            row = conn.execute(select(responses).where(responses.c.id == id, responses.c.owner == owner)).first()
        if row is None:
            return None
        return StoredResponse(
            id=row.id,
            owner=row.owner,
            status=row.status,
            background=bool(row.background),
            created_at=row.created_at,
            updated_at=row.updated_at,
            previous_response_id=row.previous_response_id,
            conversation_id=row.conversation_id,
            object=json.loads(row.object),
            events=json.loads(row.events) if row.events is not None else None,
        )

    def update(self, id: str, object: dict[str, Any]) -> None:
        """Rewrite the status and object only (e.g. queued -> in_progress); a deleted row stays deleted."""
        with write_transaction(self._engine) as conn:
            conn.execute(
                update(responses)
                .where(responses.c.id == id)
                .values(status=object["status"], object=to_json(object), updated_at=time.time())
            )

    def finish(
        self,
        id: str,
        *,
        object: dict[str, Any],
        output_items: list[dict[str, Any]],
        events: list[dict[str, Any]] | None = None,
        conversation_items: Sequence[dict[str, Any]] = (),
    ) -> None:
        """The final object, outputs, events and the conversation append, together. A response
        deleted meanwhile is left deleted; calling this twice leaves one set of outputs."""
        rows = _item_rows(id, "output", output_items)
        now = time.time()
        with write_transaction(self._engine) as conn:
            # the UPDATE comes first: it locks the row, so a racing finish waits and then replaces
            # these outputs, and a row deleted first matches nothing (no orphan items)
            # only an unfinished row: a terminal status never changes (not even a late finish after a failover)
            written = conn.execute(
                update(responses)
                .where(responses.c.id == id, responses.c.status.in_(UNFINISHED))
                .values(
                    status=object["status"],
                    object=to_json(object),
                    events=to_json(events) if events is not None else None,
                    updated_at=now,
                )
            )
            if written.rowcount == 0:
                return
            row = conn.execute(select(responses.c.owner, responses.c.conversation_id).where(responses.c.id == id)).one()
            outputs = (response_items.c.response_id == id, response_items.c.kind == "output")
            conn.execute(delete(response_items).where(*outputs))
            if rows:
                conn.execute(insert(response_items), rows)
            # a conversation deleted while the response ran gets nothing; a retried finish adds nothing twice
            conv = row.conversation_id
            if conv is not None and conversation_items and lock_conversation(conn, conv, row.owner):
                append_items(conn, conv, conversation_items, now, skip_existing=True)

    def delete(self, id: str, owner: str) -> bool:
        with write_transaction(self._engine) as conn:
            gone = conn.execute(delete(responses).where(responses.c.id == id, responses.c.owner == owner))
            if gone.rowcount == 0:
                return False
            conn.execute(delete(response_items).where(response_items.c.response_id == id))
        return True

    def input_items(
        self, id: str, owner: str, *, limit: int, order: str, after: str | None
    ) -> tuple[list[dict[str, Any]], bool] | None:
        with read_transaction(self._engine) as conn:
            found = conn.execute(select(responses.c.id).where(responses.c.id == id, responses.c.owner == owner)).first()
            if found is None:
                return None
            where = [response_items.c.response_id == id, response_items.c.kind == "input"]
            return page_items(conn, response_items, where, response_items.c.position, limit=limit, order=order, after=after)

    def chain(self, id: str, owner: str) -> list[Turn]:
        """``id`` and its ancestors, oldest first, each with its items. [] when ``id`` is not the
        owner's; BrokenChain when an ancestor is gone (or belongs to someone else)."""
        # the links in one recursive query; depth bounds it even if the links form a cycle
        base = (
            select(responses.c.id, responses.c.previous_response_id, literal_column("1").label("depth"))
            .where(responses.c.id == id, responses.c.owner == owner)
            .cte("links", recursive=True)
        )
        parent = responses.alias("parent")
        step = (
            select(parent.c.id, parent.c.previous_response_id, (base.c.depth + literal_column("1")).label("depth"))
            .join(base, parent.c.id == base.c.previous_response_id)
            .where(parent.c.owner == owner, base.c.depth < MAX_CHAIN)
        )
        links = base.union_all(step)
        with read_transaction(self._engine) as conn:
            previous = {r.id: r.previous_response_id for r in conn.execute(select(links.c.id, links.c.previous_response_id))}
            if id not in previous:
                return []
            newest_first: list[str] = []
            seen: set[str] = set()
            current: str | None = id
            while current is not None and current not in seen and len(newest_first) < MAX_CHAIN:
                if current not in previous:
                    raise BrokenChain(current)
                newest_first.append(current)
                seen.add(current)
                current = previous[current]
            ids = newest_first[::-1]
            inputs: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
            outputs: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
            for start in range(0, len(ids), _IN_CHUNK):
                query = (
                    select(response_items.c.response_id, response_items.c.kind, response_items.c.item)
                    .where(response_items.c.response_id.in_(ids[start : start + _IN_CHUNK]))
                    .order_by(response_items.c.position)
                )
                for r in conn.execute(query):
                    (inputs if r.kind == "input" else outputs)[r.response_id].append(json.loads(r.item))
        return [Turn(response_id=i, inputs=inputs[i], outputs=outputs[i]) for i in ids]

    def find_item(self, owner: str, item_id: str) -> dict[str, Any] | None:
        """An item by id among the owner's responses and conversations; the newest when several match."""
        from_responses = (
            select(response_items.c.item, responses.c.created_at.label("at"))
            .join(responses, responses.c.id == response_items.c.response_id)
            .where(responses.c.owner == owner, response_items.c.item_id == item_id)
            .order_by(responses.c.created_at.desc(), response_items.c.seq.desc())
            .limit(1)
        )
        from_conversations = (
            select(conversation_items.c.item, conversation_items.c.created_at.label("at"))
            .join(conversations, conversations.c.id == conversation_items.c.conversation_id)
            .where(conversations.c.owner == owner, conversation_items.c.item_id == item_id)
            .order_by(conversation_items.c.created_at.desc(), conversation_items.c.seq.desc())
            .limit(1)
        )
        with read_transaction(self._engine) as conn:
            found = [r for q in (from_responses, from_conversations) if (r := conn.execute(q).first()) is not None]
        if not found:
            return None
        return json.loads(max(found, key=lambda r: r.at).item)

    def heartbeat(self, runner: str, ids: Sequence[str], now: float) -> list[str]:
        """The runner says it is still generating ``ids``; returns those a cancel was requested for elsewhere."""
        if not ids:
            return []
        mine = (responses.c.id.in_(list(ids)), responses.c.runner == runner, responses.c.status.in_(UNFINISHED))
        with write_transaction(self._engine) as conn:
            conn.execute(update(responses).where(*mine).values(heartbeat_at=now))
            return list(conn.scalars(select(responses.c.id).where(*mine, responses.c.cancel_requested.is_(True))))

    def request_cancel(self, id: str, owner: str) -> bool:
        """Ask the runner of an unfinished response (maybe another process) to cancel it."""
        with write_transaction(self._engine) as conn:
            done = conn.execute(
                update(responses)
                .where(responses.c.id == id, responses.c.owner == owner, responses.c.status.in_(UNFINISHED))
                .values(cancel_requested=True)
            )
        return done.rowcount > 0

    def fail_unfinished(self, message: str, now: float, *, stale_before: float | None = None) -> list[str]:
        """Mark failed the unfinished responses whose runner went quiet (no heartbeat since ``stale_before``;
        all of them when None): a crashed process never finishes them, and they must not stay in_progress."""
        quiet = responses.c.status.in_(UNFINISHED)
        if stale_before is not None:
            quiet = quiet & (responses.c.heartbeat_at.is_(None) | (responses.c.heartbeat_at < stale_before))
        failed: list[str] = []
        with write_transaction(self._engine) as conn:
            rows = conn.execute(select(responses.c.id, responses.c.object).where(quiet)).all()
            for row in rows:
                obj = json.loads(row.object)
                obj["status"] = "failed"
                obj["error"] = {"code": "server_error", "message": message}
                conn.execute(
                    update(responses)
                    .where(responses.c.id == row.id, responses.c.status.in_(UNFINISHED))
                    .values(status="failed", object=to_json(obj), updated_at=now)
                )
                failed.append(row.id)
        return failed

    def purge(self, older_than: float) -> int:
        """Delete the responses created before ``older_than``, with their items; how many went."""
        old = select(responses.c.id).where(responses.c.created_at < older_than)
        with write_transaction(self._engine) as conn:
            conn.execute(delete(response_items).where(response_items.c.response_id.in_(old)))
            gone = conn.execute(delete(responses).where(responses.c.created_at < older_than))
        return gone.rowcount
