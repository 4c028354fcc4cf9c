"""Usage rows: written in batches by the usage sink, summed by key, model or day for reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Engine, case, func, insert, literal, select

from faceplate.access.usage import UsageRecord
from faceplate.store.db import read_transaction, write_transaction
from faceplate.store.schema import api_keys, usage

GroupBy = Literal["key", "model", "day"]
GROUPS: tuple[GroupBy, ...] = ("key", "model", "day")


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


class UsageStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def insert(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        rows = [
            {
                "key_id": r.key_id,
                "model": r.model[:200],
                "endpoint": r.endpoint[:100],
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "status": r.status,
                "latency_ms": r.latency_ms,
                "created": r.created,
                "day": day_of(r.created),
            }
            for r in records
        ]
        with write_transaction(self._engine) as conn:
            conn.execute(insert(usage), rows)

    def report(self, by: GroupBy = "key", *, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Totals per key, model or UTC day, for requests made in [since, until)."""
        if by not in GROUPS:
            raise ValueError(f"cannot group usage by {by!r}; use one of {', '.join(GROUPS)}")
        group = {"key": usage.c.key_id, "model": usage.c.model, "day": usage.c.day}[by]
        errors = func.sum(case((usage.c.status >= 400, 1), else_=0))
        cols = [
            group.label("group"),
            func.count().label("requests"),
            errors.label("errors"),
            func.coalesce(func.sum(usage.c.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(usage.c.completion_tokens), 0).label("completion_tokens"),
        ]
        query = select(*cols).group_by(group)
        if since is not None:
            query = query.where(usage.c.created >= since)
        if until is not None:
            query = query.where(usage.c.created < until)
        sub = query.subquery()
        if by == "key":
            final = (
                select(sub, api_keys.c.name, api_keys.c.prefix)
                .select_from(sub.outerjoin(api_keys, api_keys.c.id == sub.c.group))
                .order_by(sub.c.group.asc().nulls_first())
            )
        else:
            final = select(sub, literal(None).label("name"), literal(None).label("prefix")).order_by(sub.c.group)
        with read_transaction(self._engine) as conn:
            rows = conn.execute(final).all()
        out: list[dict[str, Any]] = []
        for r in rows:
            item: dict[str, Any] = {by: r.group}
            if by == "key":
                item["name"] = r.name if r.group is not None else "(static key or anonymous)"
                item["redacted_value"] = r.prefix + "..." if r.prefix else None
            item.update(
                requests=int(r.requests),
                errors=int(r.errors or 0),
                prompt_tokens=int(r.prompt_tokens),
                completion_tokens=int(r.completion_tokens),
                total_tokens=int(r.prompt_tokens) + int(r.completion_tokens),
            )
            out.append(item)
        return out
