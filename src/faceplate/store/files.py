"""Uploaded files' metadata: who owns each, its name, purpose, size and expiry.

The bytes are not here: they live in a blob store (``faceplate.store.blobs``) under the same id. A file
whose ``expires_at`` has passed is gone for every reader at once (``get``, ``list`` and
``get_any`` filter on ``now``), before the purge deletes its row and its bytes.

Lists are ordered by ``(created_at, id)``: ``created_at`` is kept with sub-second precision, so
files come back in upload order, and the id breaks ties, so the order is total and an ``after``
cursor never skips or repeats a file.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, delete, insert, or_, select

from faceplate.store.db import page_by_creation, read_transaction, write_transaction
from faceplate.store.schema import files

_IN_CHUNK = 500  # ids per IN (...): far below SQLite's and PostgreSQL's bound-parameter limits


@dataclass(frozen=True)
class StoredFile:
    id: str
    owner: str
    filename: str
    purpose: str
    bytes: int
    created_at: float
    expires_at: float | None  # None: kept until deleted
    status: str = "processed"


def _row(row: Any) -> StoredFile:
    return StoredFile(
        id=row.id,
        owner=row.owner,
        filename=row.filename,
        purpose=row.purpose,
        bytes=int(row.bytes),
        created_at=float(row.created_at),
        expires_at=None if row.expires_at is None else float(row.expires_at),
        status=row.status,
    )


def _alive(now: float | None) -> ColumnElement[bool]:
    at = time.time() if now is None else now
    return or_(files.c.expires_at.is_(None), files.c.expires_at > at)


def insert_file(conn: Connection, f: StoredFile) -> None:
    """A file's metadata row, in the caller's transaction (a batch's results land with its finish)."""
    conn.execute(
        insert(files).values(
            id=f.id,
            owner=f.owner,
            filename=f.filename,
            purpose=f.purpose,
            bytes=f.bytes,
            created_at=f.created_at,
            expires_at=f.expires_at,
            status=f.status,
        )
    )


class FileStore:
    # ``list`` is a method here: annotations in this class say ``builtins.list`` for the type.

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, f: StoredFile) -> None:
        with write_transaction(self._engine) as conn:
            insert_file(conn, f)

    def get(self, id: str, owner: str, *, now: float | None = None) -> StoredFile | None:
        """The owner's file, unless it has expired (``now``: the clock, default the real one)."""
        query = select(files).where(files.c.id == id, files.c.owner == owner, _alive(now))
        with read_transaction(self._engine) as conn:
            row = conn.execute(query).first()
        return _row(row) if row is not None else None

    def get_any(self, id: str, *, now: float | None = None) -> StoredFile | None:
        """Any owner's file, unless expired: for internal readers (a batch worker reading its input)."""
        with read_transaction(self._engine) as conn:
            row = conn.execute(select(files).where(files.c.id == id, _alive(now))).first()
        return _row(row) if row is not None else None

    def list(
        self,
        owner: str,
        *,
        purpose: str | None = None,
        limit: int,
        order: str = "desc",
        after: str | None = None,
        now: float | None = None,
    ) -> tuple[builtins.list[StoredFile], bool]:
        """Up to ``limit`` of the owner's live files in creation order (``asc``/``desc``), strictly after
        the file ``after``; and whether more follow. An ``after`` that is not one of the owner's live
        files (deleted, expired, someone else's) gives an empty page."""
        where: builtins.list[ColumnElement[bool]] = [files.c.owner == owner, _alive(now)]
        if purpose is not None:
            where.append(files.c.purpose == purpose)
        with read_transaction(self._engine) as conn:
            rows, more = page_by_creation(conn, files, where, limit=limit, order=order, after=after)
        return [_row(r) for r in rows], more

    def delete(self, id: str, owner: str) -> bool:
        """Remove the owner's file row (an expired one too: it is going anyway); False if there was none."""
        with write_transaction(self._engine) as conn:
            gone = conn.execute(delete(files).where(files.c.id == id, files.c.owner == owner))
        return gone.rowcount > 0

    def expired(self, now: float, limit: int = 1000) -> builtins.list[str]:
        """Ids of files whose expiry has passed, oldest expiry first (the purge's work list)."""
        query = (
            select(files.c.id)
            .where(files.c.expires_at.is_not(None), files.c.expires_at <= now)
            .order_by(files.c.expires_at)
            .limit(limit)
        )
        with read_transaction(self._engine) as conn:
            return list(conn.scalars(query))

    def remove(self, ids: Sequence[str]) -> int:
        """Delete these rows whoever owns them (the purge, once their bytes are gone); how many went."""
        gone = 0
        with write_transaction(self._engine) as conn:
            for i in range(0, len(ids), _IN_CHUNK):
                gone += conn.execute(delete(files).where(files.c.id.in_(list(ids[i : i + _IN_CHUNK])))).rowcount
        return gone
