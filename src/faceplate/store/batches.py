"""Batches: the Batch object's lifecycle and counts, and one row per input line, durably.

A batch moves ``validating -> in_progress -> finalizing -> completed``, or ``validating -> failed``,
``in_progress -> (finalizing ->) expired``, ``validating|in_progress -> cancelling -> cancelled``.
Every transition is one conditional UPDATE naming the statuses it may leave, so a terminal
status (failed, completed, expired, cancelled) never changes, whoever writes late.

Two kinds of work, each under a lease (a runner id and an expiry) so a dead runner's work is
taken over when its lease runs out:

- **Stage work** on the batch row (``claim_stage``): validate it (``start`` or ``fail``), or wrap
  it up (``mark_finalizing``, ``results``, ``finish``) once its lines are all done, it was
  cancelled, or it expired. ``start``, ``fail``, ``mark_finalizing`` and ``finish`` do nothing
  unless the runner still holds that lease.
- **Lines** (``claim_requests``, ``renew``, ``complete``): each ``batch_requests`` row goes
  ``pending -> running -> done``. ``complete`` writes the line's result and adds it to the
  batch's counts in one transaction, and only while the row is still ``running`` under this
  runner and the batch still ``in_progress``: a runner whose line was taken over (its lease
  ran out), or whose batch is being cancelled or expired, gets False and drops its result. So
  each line is counted, and lands in an output file, exactly once, across crashes and restarts.

Wrapping up is race-free because the stage runner first moves the batch out of ``in_progress``
(``mark_finalizing``; a cancel already did, to ``cancelling``), which stops ``complete``
from counting, and only then reads ``results``. ``finish`` checks the counts add up
(``completed + failed + unrun == total``) and refuses otherwise.

Claims on PostgreSQL take rows with ``FOR UPDATE SKIP LOCKED`` (concurrent runners skip each
other's rows instead of waiting or taking them twice); on SQLite the write transaction
(``BEGIN IMMEDIATE``) already serialises them. ``complete`` locks the batch row first, so it
and a transition that leaves ``in_progress`` are ordered one way or the other.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, and_, delete, exists, func, insert, or_, select, text, update

from faceplate.store.batch_lines import BatchLines
from faceplate.store.batch_rows import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    DONE,
    EXPIRED,
    FAILED,
    FINALIZING,
    IN_PROGRESS,
    PENDING,
    RUNNING,
    TERMINAL,
    VALIDATING,
    BatchRow,
    ClaimedRequest,
    TokenLimitExceeded,
    batch_row,
)
from faceplate.store.conversations import to_json
from faceplate.store.db import page_by_creation, read_transaction, write_transaction
from faceplate.store.files import StoredFile, insert_file
from faceplate.store.schema import batch_requests, batches

__all__ = [
    "CANCELLED",
    "CANCELLING",
    "COMPLETED",
    "DONE",
    "EXPIRED",
    "FAILED",
    "FINALIZING",
    "IN_PROGRESS",
    "PENDING",
    "RUNNING",
    "TERMINAL",
    "VALIDATING",
    "BatchRow",
    "BatchStore",
    "ClaimedRequest",
    "TokenLimitExceeded",
]

INSERT_CHUNK = 1000  # request rows per executemany in ``start``
_YIELD = 1000  # rows fetched at a time by ``results``
_PG_QUEUE_LOCK = 0x46504251  # "FPBQ": the advisory-lock class that serialises one owner's starts under a token limit
_QUEUED = (IN_PROGRESS, FINALIZING)  # batches whose tokens count as enqueued

_FINISH_FROM: dict[str, tuple[str, ...]] = {
    COMPLETED: (IN_PROGRESS, FINALIZING),
    EXPIRED: (IN_PROGRESS, FINALIZING),
    CANCELLED: (CANCELLING,),
}
_FINISHED_AT = {COMPLETED: "completed_at", EXPIRED: "expired_at", CANCELLED: "cancelled_at"}


def _lease_free(now: float) -> ColumnElement[bool]:
    return or_(batches.c.lease_until.is_(None), batches.c.lease_until <= now)


def _holds_stage(id: str, runner: str) -> tuple[ColumnElement[bool], ...]:
    """The runner still holds the batch's stage lease: nobody took it over. (An expired lease that
    nobody took is still the runner's: the work it did is as good as ever.)"""
    return (batches.c.id == id, batches.c.lease_owner == runner)


class BatchStore(BatchLines):
    """Batches and their lines (the line operations are ``BatchLines``')."""

    # --- the batch row -------------------------------------------------------------------

    def create(
        self,
        *,
        id: str,
        owner: str,
        principal: dict[str, Any],
        endpoint: str,
        input_file_id: str,
        completion_window: str,
        created_at: float,
        expires_at: float,
        metadata: dict[str, Any],
        output_expires_after: int | None,
    ) -> BatchRow:
        """A new batch, ``validating``: a runner's ``claim_stage`` picks it up."""
        with write_transaction(self._engine) as conn:
            conn.execute(
                insert(batches).values(
                    id=id,
                    owner=owner,
                    principal=to_json(principal),
                    endpoint=endpoint,
                    input_file_id=input_file_id,
                    completion_window=completion_window,
                    status=VALIDATING,
                    created_at=created_at,
                    expires_at=expires_at,
                    metadata=to_json(metadata),
                    output_expires_after=output_expires_after,
                    total=0,
                    completed=0,
                    failed=0,
                    input_tokens=0,
                    cached_tokens=0,
                    output_tokens=0,
                )
            )
            return batch_row(conn.execute(select(batches).where(batches.c.id == id)).one())

    def get(self, id: str, owner: str) -> BatchRow | None:
        with read_transaction(self._engine) as conn:
            row = conn.execute(select(batches).where(batches.c.id == id, batches.c.owner == owner)).first()
        return batch_row(row) if row is not None else None

    def get_any(self, id: str) -> BatchRow | None:
        """Any owner's batch: for runners, never for answering a client."""
        with read_transaction(self._engine) as conn:
            row = conn.execute(select(batches).where(batches.c.id == id)).first()
        return batch_row(row) if row is not None else None

    def list(self, owner: str, *, limit: int, after: str | None = None) -> tuple[builtins.list[BatchRow], bool]:
        """Up to ``limit`` of the owner's batches, newest first, strictly after the batch ``after``;
        and whether more follow. An ``after`` that is not one of the owner's batches gives ([], False).
        Ordered by ``(created_at, id)``, so the order is total and a cursor never skips or repeats."""
        with read_transaction(self._engine) as conn:
            rows, more = page_by_creation(conn, batches, [batches.c.owner == owner], limit=limit, order="desc", after=after)
        return [batch_row(r) for r in rows], more

    def request_cancel(self, id: str, owner: str, now: float) -> BatchRow | None:
        """validating or in_progress -> cancelling; any other status is left as it is (the caller
        answers a finished batch with 400). None when the owner has no such batch."""
        mine = (batches.c.id == id, batches.c.owner == owner)
        with write_transaction(self._engine) as conn:
            conn.execute(
                update(batches)
                .where(*mine, batches.c.status.in_((VALIDATING, IN_PROGRESS)))
                .values(status=CANCELLING, cancelling_at=now)
            )
            row = conn.execute(select(batches).where(*mine)).first()
        return batch_row(row) if row is not None else None

    # --- stage work: validate, then wrap up ---------------------------------------------------

    def claim_stage(self, runner: str, now: float, lease_s: float) -> BatchRow | None:
        """Take one batch that needs stage work and whose stage lease is free or expired, oldest first:

        - ``validating``: read and validate the input, then ``start`` or ``fail``;
        - ``in_progress`` with no pending or running line left: finalize (``mark_finalizing`` ...);
        - ``in_progress`` past ``expires_at``: expire it (``mark_finalizing`` ... ``finish(expired)``);
        - ``cancelling``: ``finish(cancelled)``;
        - ``finalizing``: a wrap-up a dead runner left (expired if lines are unrun, else completed).

        The lease is the runner's until ``now + lease_s``; a runner that cannot go on calls
        ``release_stage``."""
        unfinished_lines = exists().where(
            batch_requests.c.batch_id == batches.c.id, batch_requests.c.status.in_((PENDING, RUNNING))
        )
        needs_work = or_(
            batches.c.status.in_((VALIDATING, CANCELLING, FINALIZING)),
            and_(batches.c.status == IN_PROGRESS, or_(batches.c.expires_at <= now, ~unfinished_lines)),
        )
        query = (
            select(batches.c.id)
            .where(needs_work, _lease_free(now))
            .order_by(batches.c.created_at, batches.c.id)
            .limit(1)
            .with_for_update(skip_locked=True, of=batches)
        )
        with write_transaction(self._engine) as conn:
            id = conn.scalar(query)
            if id is None:
                return None
            conn.execute(update(batches).where(batches.c.id == id).values(lease_owner=runner, lease_until=now + lease_s))
            return batch_row(conn.execute(select(batches).where(batches.c.id == id)).one())

    def renew_stage(self, id: str, runner: str, until: float) -> bool:
        """Extend the runner's stage lease (a long validation or finalize); False if it lost it."""
        with write_transaction(self._engine) as conn:
            done = conn.execute(update(batches).where(*_holds_stage(id, runner)).values(lease_until=until))
        return done.rowcount > 0

    def release_stage(self, id: str, runner: str) -> bool:
        """Give the stage lease back (e.g. ``start`` said False because a cancel came meanwhile),
        so another claim can take the batch at once instead of when the lease runs out."""
        with write_transaction(self._engine) as conn:
            done = conn.execute(update(batches).where(*_holds_stage(id, runner)).values(lease_owner=None, lease_until=None))
        return done.rowcount > 0

    def start(
        self,
        id: str,
        runner: str,
        lines: Iterable[tuple[int, str, dict[str, Any]]],
        model: str | None,
        now: float,
        *,
        enqueued_tokens: int = 0,
        token_limit: int | None = None,
    ) -> bool:
        """validating -> in_progress with every request line (``(line, custom_id, request)``, line
        1-based, read as they are inserted) stored ``pending``; the stage lease is released. One
        transaction: all or nothing. False, with nothing written, unless the batch is validating and
        the runner holds its lease.

        ``enqueued_tokens``: the batch's prompt tokens (estimated), counted against ``token_limit``
        with those of the owner's other in_progress and finalizing batches: over it, nothing is
        written and ``TokenLimitExceeded`` says by how much (the caller fails the batch). Concurrent
        starts of one owner serialise (an advisory lock on PostgreSQL), so two cannot both squeeze in."""
        with write_transaction(self._engine) as conn:
            # the UPDATE first: it locks the row, so a cancel waits for us or we see it
            taken = conn.execute(
                update(batches)
                .where(*_holds_stage(id, runner), batches.c.status == VALIDATING)
                .values(
                    status=IN_PROGRESS,
                    in_progress_at=now,
                    model=model,
                    lease_owner=None,
                    lease_until=None,
                    enqueued_tokens=enqueued_tokens,
                )
            )
            if taken.rowcount == 0:
                return False
            if token_limit is not None:
                self._check_token_limit(conn, id, enqueued_tokens, token_limit)
            total = 0
            chunk: builtins.list[dict[str, Any]] = []
            for line, custom_id, request in lines:
                chunk.append(
                    {
                        "batch_id": id,
                        "line": line,
                        "custom_id": custom_id,
                        "request": to_json(request),
                        "status": PENDING,
                        "lease_owner": None,
                        "lease_until": None,
                        "ok": None,
                        "result": None,
                        "updated_at": now,
                    }
                )
                if len(chunk) >= INSERT_CHUNK:
                    conn.execute(insert(batch_requests), chunk)
                    total += len(chunk)
                    chunk = []
            if chunk:
                conn.execute(insert(batch_requests), chunk)
                total += len(chunk)
            conn.execute(update(batches).where(batches.c.id == id).values(total=total))
        return True

    def _check_token_limit(self, conn: Connection, id: str, adding: int, limit: int) -> None:
        owner = conn.scalar(select(batches.c.owner).where(batches.c.id == id))
        if self._pg:
            conn.execute(
                text("SELECT pg_advisory_xact_lock(CAST(:cls AS integer), hashtext(:owner))"),
                {"cls": _PG_QUEUE_LOCK, "owner": owner},
            )
        enqueued = conn.scalar(
            select(func.coalesce(func.sum(batches.c.enqueued_tokens), 0)).where(
                batches.c.owner == owner, batches.c.status.in_(_QUEUED), batches.c.id != id
            )
        )
        if int(enqueued) + adding > limit:
            raise TokenLimitExceeded(int(enqueued), adding, limit)  # rolls the transaction back

    def fail(self, id: str, runner: str, errors: Sequence[dict[str, Any]], now: float) -> bool:
        """validating -> failed with the validation ``errors`` (``{code, message, param, line}``)."""
        with write_transaction(self._engine) as conn:
            done = conn.execute(
                update(batches)
                .where(*_holds_stage(id, runner), batches.c.status == VALIDATING)
                .values(status=FAILED, failed_at=now, errors=to_json(list(errors)), lease_owner=None, lease_until=None)
            )
        return done.rowcount > 0

    def mark_finalizing(self, id: str, runner: str, now: float) -> bool:
        """in_progress -> finalizing (the runner keeps the stage lease). From here ``complete`` counts
        nothing more, so ``results`` read after it are final."""
        with write_transaction(self._engine) as conn:
            done = conn.execute(
                update(batches)
                .where(*_holds_stage(id, runner), batches.c.status == IN_PROGRESS)
                .values(status=FINALIZING, finalizing_at=now)
            )
        return done.rowcount > 0

    def results(self, id: str) -> Iterator[tuple[int, str, bool | None, dict[str, Any] | None, str]]:
        """Every line of the batch in line order as ``(line, custom_id, ok, result, status)``, streamed
        (a server-side cursor on PostgreSQL) so a 50,000-line batch is never all in memory. ``ok`` and
        ``result`` are None for a line that never finished (status pending or running): an unrun line.
        Consume it to the end or close it: the read transaction stays open until then."""
        query = (
            select(
                batch_requests.c.line,
                batch_requests.c.custom_id,
                batch_requests.c.ok,
                batch_requests.c.result,
                batch_requests.c.status,
            )
            .where(batch_requests.c.batch_id == id)
            .order_by(batch_requests.c.line)
        )
        with read_transaction(self._engine) as conn:
            rows = conn.execution_options(yield_per=_YIELD).execute(query)
            try:
                for row in rows:
                    ok = None if row.ok is None else bool(row.ok)
                    result = json.loads(row.result) if row.result is not None else None
                    yield int(row.line), row.custom_id, ok, result, row.status
            finally:
                rows.close()  # a caller that stops early: the server-side cursor is closed, not leaked

    def finish(
        self,
        id: str,
        runner: str,
        *,
        status: Literal["completed", "cancelled", "expired"],
        output_file_id: str | None,
        error_file_id: str | None,
        unrun: int,
        now: float,
        files: Sequence[StoredFile] = (),
    ) -> bool:
        """The terminal status with its timestamp (``finalizing_at`` too, if not set yet), the output
        files, and ``unrun`` (lines that never ran) added to ``failed``, so ``completed + failed ==
        total``; the stage lease is released. ``cancelled`` only from ``cancelling``; ``completed`` and
        ``expired`` from ``in_progress`` or ``finalizing``.

        False, with nothing written, unless the runner holds the stage lease, the status allows it,
        and the counts add up: ``completed + failed + unrun == total``. (That last fails only if a
        line was completed after the caller read ``results`` while the batch was still in_progress:
        call ``mark_finalizing`` first and it cannot happen.)"""
        if status not in _FINISH_FROM:
            raise ValueError(f"finish to completed, cancelled or expired, not {status!r}")
        if unrun < 0:
            raise ValueError("unrun must not be negative")
        with write_transaction(self._engine) as conn:
            done = conn.execute(
                update(batches)
                .where(
                    *_holds_stage(id, runner),
                    batches.c.status.in_(_FINISH_FROM[status]),
                    batches.c.completed + batches.c.failed + unrun == batches.c.total,
                )
                .values(
                    {
                        "status": status,
                        _FINISHED_AT[status]: now,
                        "finalizing_at": func.coalesce(batches.c.finalizing_at, now),
                        "output_file_id": output_file_id,
                        "error_file_id": error_file_id,
                        "failed": batches.c.failed + unrun,
                        "lease_owner": None,
                        "lease_until": None,
                    }
                )
            )
            if done.rowcount > 0:  # the output and error files hold every line now
                for f in files:
                    insert_file(conn, f)
                conn.execute(delete(batch_requests).where(batch_requests.c.batch_id == id))
        return done.rowcount > 0
