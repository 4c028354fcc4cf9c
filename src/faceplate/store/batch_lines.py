"""A batch's request lines, under leases: claim, renew, release, complete (see ``store.batches``).

Each ``batch_requests`` row goes ``pending -> running -> done``. ``complete`` writes the line's
result and adds it to the batch's counts in one transaction, and only while the row is still
``running`` under this runner and the batch still ``in_progress``: a runner whose line was taken
over (its lease ran out), or whose batch is being cancelled or expired, gets False and drops its
result. So each line is counted, and lands in an output file, exactly once, across crashes and
restarts. Claims on PostgreSQL take rows with ``FOR UPDATE SKIP LOCKED``; on SQLite the write
transaction (``BEGIN IMMEDIATE``) already serialises them.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, bindparam, func, select, text, update

from faceplate.store.batch_rows import DONE, IN_PROGRESS, PENDING, RUNNING, ClaimedRequest
from faceplate.store.conversations import to_json
from faceplate.store.db import write_transaction
from faceplate.store.schema import batch_requests, batches

_PG_OWNER_LOCK = 0x46504243  # "FPBC": the advisory-lock class that serialises one owner's claims under owner_cap


def _held(runner: str, batch_id: str, line: int) -> tuple[ColumnElement[bool], ...]:
    """The line is running under this runner (its lease may have run out, as long as nobody took it over)."""
    return (
        batch_requests.c.batch_id == batch_id,
        batch_requests.c.line == line,
        batch_requests.c.status == RUNNING,
        batch_requests.c.lease_owner == runner,
    )


class BatchLines:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def _pg(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    def claim_requests(
        self, runner: str, now: float, lease_s: float, limit: int, *, owner_cap: int | None = None
    ) -> builtins.list[ClaimedRequest]:
        """Take up to ``limit`` lines to run: ``pending`` ones, or ``running`` ones whose lease ran out
        (their runner died), from batches ``in_progress`` and not past ``expires_at``; oldest batch
        first, then by line. They become ``running`` under this runner until ``now + lease_s``.

        ``owner_cap``: at most that many of one owner's lines running at once (unexpired leases, this
        claim's included), so one owner's big batch cannot hold every slot while others wait."""
        if limit <= 0:
            return []
        live = (
            select(batches.c.id, batches.c.owner, batches.c.endpoint, batches.c.principal)
            .where(batches.c.status == IN_PROGRESS, batches.c.expires_at > now)
            .order_by(batches.c.created_at, batches.c.id)
        )
        until = now + lease_s
        claimed: builtins.list[ClaimedRequest] = []
        with write_transaction(self._engine) as conn:
            room: dict[str, int] = {}  # owner -> how many more of theirs may run (owner_cap only)
            for batch in conn.execute(live).all():
                want = limit - len(claimed)
                if want <= 0:
                    break
                if owner_cap is not None:
                    if batch.owner not in room:
                        room[batch.owner] = self._owner_room(conn, batch.owner, owner_cap, now)
                    want = min(want, room[batch.owner])
                    if want <= 0:
                        continue
                rows = self._claimable(conn, batch.id, now, want)
                if not rows:
                    continue
                principal = json.loads(batch.principal)
                for line, custom_id, request in rows:
                    claimed.append(
                        ClaimedRequest(
                            batch_id=batch.id,
                            line=line,
                            custom_id=custom_id,
                            request=json.loads(request),
                            endpoint=batch.endpoint,
                            owner=batch.owner,
                            principal=principal,
                        )
                    )
                if owner_cap is not None:
                    room[batch.owner] -= len(rows)
            if claimed:
                conn.execute(
                    update(batch_requests)
                    .where(batch_requests.c.batch_id == bindparam("k_batch"), batch_requests.c.line == bindparam("k_line"))
                    .values(status=RUNNING, lease_owner=runner, lease_until=until, updated_at=now),
                    [{"k_batch": c.batch_id, "k_line": c.line} for c in claimed],
                )
        return claimed

    def _claimable(self, conn: Connection, batch_id: str, now: float, want: int) -> builtins.list[tuple[int, str, str]]:
        """Up to ``want`` of the batch's claimable lines, in line order, locked (PostgreSQL; rows another
        claim holds are skipped). Two index range scans (batch_id, status, line), not one OR: lines that
        are done never get read, however many there are."""
        cols = (batch_requests.c.line, batch_requests.c.custom_id, batch_requests.c.request)
        mine = batch_requests.c.batch_id == batch_id
        found: builtins.list[tuple[int, str, str]] = []
        for where in (
            (mine, batch_requests.c.status == RUNNING, batch_requests.c.lease_until <= now),  # a dead runner's
            (mine, batch_requests.c.status == PENDING),
        ):
            query = (
                select(*cols)
                .where(*where)
                .order_by(batch_requests.c.line)
                .limit(want)
                .with_for_update(skip_locked=True, of=batch_requests)
            )
            found.extend((int(r.line), r.custom_id, r.request) for r in conn.execute(query))
        found.sort(key=lambda r: r[0])
        return found[:want]  # the rest stay locked until commit, untouched: harmless

    def _owner_room(self, conn: Connection, owner: str, cap: int, now: float) -> int:
        """How many more of the owner's lines may start now under ``cap``. On PostgreSQL concurrent
        claims serialise per owner (a transaction-scoped advisory lock), so the count cannot race; an
        owner another claim is serving right now is skipped, as SKIP LOCKED skips rows."""
        if self._pg:
            got = conn.scalar(
                text("SELECT pg_try_advisory_xact_lock(CAST(:cls AS integer), hashtext(:owner))"),
                {"cls": _PG_OWNER_LOCK, "owner": owner},
            )
            if not got:
                return 0
        running = conn.scalar(
            select(func.count())
            .select_from(batch_requests.join(batches, batches.c.id == batch_requests.c.batch_id))
            .where(
                batches.c.owner == owner,
                batches.c.status == IN_PROGRESS,
                batch_requests.c.status == RUNNING,
                batch_requests.c.lease_until > now,
            )
        )
        return max(0, cap - int(running or 0))

    def renew(self, runner: str, keys: Sequence[tuple[str, int]], until: float) -> builtins.list[tuple[str, int]]:
        """Extend the leases this runner holds on ``keys`` (``(batch_id, line)``) to ``until``. Returns
        the keys to stop: those whose batch is no longer ``in_progress`` (cancelling, finalizing,
        expired...) and those this runner no longer holds (taken over, or done); ``complete`` would
        refuse their results anyway."""
        if not keys:
            return []
        by_batch: dict[str, builtins.list[int]] = {}
        for batch_id, line in keys:
            by_batch.setdefault(batch_id, []).append(line)
        stop: builtins.list[tuple[str, int]] = []
        with write_transaction(self._engine) as conn:
            statuses = dict(
                conn.execute(select(batches.c.id, batches.c.status).where(batches.c.id.in_(builtins.list(by_batch)))).all()
            )
            for batch_id, lines in by_batch.items():
                if statuses.get(batch_id) != IN_PROGRESS:
                    stop.extend((batch_id, line) for line in lines)
                    continue
                held = (
                    batch_requests.c.batch_id == batch_id,
                    batch_requests.c.line.in_(lines),
                    batch_requests.c.status == RUNNING,
                    batch_requests.c.lease_owner == runner,
                )
                conn.execute(update(batch_requests).where(*held).values(lease_until=until))
                kept = set(conn.scalars(select(batch_requests.c.line).where(*held)))
                stop.extend((batch_id, line) for line in lines if line not in kept)
        return stop

    def release(self, runner: str, batch_id: str, line: int, now: float) -> bool:
        """Give a running line back (``pending``, no lease) without a result: the engine was busy or
        shutting down, so another pass (or runner) runs it. False unless this runner held it."""
        with write_transaction(self._engine) as conn:
            done = conn.execute(
                update(batch_requests)
                .where(*_held(runner, batch_id, line))
                .values(status=PENDING, lease_owner=None, lease_until=None, updated_at=now)
            )
        return done.rowcount > 0

    def complete(
        self,
        runner: str,
        batch_id: str,
        line: int,
        *,
        ok: bool,
        result: dict[str, Any],
        input_tokens: int,
        cached_tokens: int,
        output_tokens: int,
        now: float,
    ) -> bool:
        """Record a line's result (``ok``: it goes to the output file, else the error file) and, in the
        same transaction, count it in the batch (completed or failed, and the tokens).

        Only while the line is ``running`` under this runner (its lease may have run out, as long as
        nobody took it over) and the batch is ``in_progress``. False otherwise, with nothing written:
        the line was taken over or is already done, or the batch is being cancelled, expired or
        finalized. The caller then drops its result: every line is counted exactly once."""
        with write_transaction(self._engine) as conn:
            # lock the batch row first: a cancel or mark_finalizing is then wholly before or after us
            status = conn.scalar(select(batches.c.status).where(batches.c.id == batch_id).with_for_update())
            if status != IN_PROGRESS:
                return False
            done = conn.execute(
                update(batch_requests)
                .where(*_held(runner, batch_id, line))
                .values(status=DONE, ok=ok, result=to_json(result), lease_until=None, updated_at=now)
            )
            if done.rowcount == 0:
                return False
            counted = batches.c.completed if ok else batches.c.failed
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(
                    {
                        counted.name: counted + 1,
                        "input_tokens": batches.c.input_tokens + input_tokens,
                        "cached_tokens": batches.c.cached_tokens + cached_tokens,
                        "output_tokens": batches.c.output_tokens + output_tokens,
                    }
                )
            )
        return True
