"""The Batch API's stored shapes: statuses, the batch row, a claimed request line, and ``start``'s refusal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

VALIDATING, FAILED, IN_PROGRESS, FINALIZING = "validating", "failed", "in_progress", "finalizing"
COMPLETED, EXPIRED, CANCELLING, CANCELLED = "completed", "expired", "cancelling", "cancelled"
TERMINAL = (FAILED, COMPLETED, EXPIRED, CANCELLED)
PENDING, RUNNING, DONE = "pending", "running", "done"  # a request line's status


@dataclass(frozen=True)
class BatchRow:
    """A batch as stored: every column, the JSON ones decoded. Times are Unix seconds (float)."""

    id: str
    owner: str
    principal: dict[str, Any]
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: float
    expires_at: float
    in_progress_at: float | None
    finalizing_at: float | None
    completed_at: float | None
    failed_at: float | None
    expired_at: float | None
    cancelling_at: float | None
    cancelled_at: float | None
    model: str | None
    metadata: dict[str, Any]
    errors: list[dict[str, Any]] | None
    output_file_id: str | None
    error_file_id: str | None
    total: int
    completed: int
    failed: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    output_expires_after: int | None
    lease_owner: str | None
    lease_until: float | None
    enqueued_tokens: int = 0


class TokenLimitExceeded(Exception):
    """``start`` refused: the owner's unfinished batches plus this one would pass its batch token limit."""

    def __init__(self, enqueued: int, adding: int, limit: int) -> None:
        super().__init__(f"{enqueued} tokens enqueued + {adding} > {limit}")
        self.enqueued, self.adding, self.limit = enqueued, adding, limit


@dataclass(frozen=True)
class ClaimedRequest:
    """One input line a runner now holds, with what it needs to run it."""

    batch_id: str
    line: int
    custom_id: str
    request: dict[str, Any]
    endpoint: str
    owner: str
    principal: dict[str, Any]


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def batch_row(row: Any) -> BatchRow:
    """A ``batches`` row as a BatchRow."""
    return BatchRow(
        id=row.id,
        owner=row.owner,
        principal=json.loads(row.principal),
        endpoint=row.endpoint,
        input_file_id=row.input_file_id,
        completion_window=row.completion_window,
        status=row.status,
        created_at=float(row.created_at),
        expires_at=float(row.expires_at),
        in_progress_at=_opt_float(row.in_progress_at),
        finalizing_at=_opt_float(row.finalizing_at),
        completed_at=_opt_float(row.completed_at),
        failed_at=_opt_float(row.failed_at),
        expired_at=_opt_float(row.expired_at),
        cancelling_at=_opt_float(row.cancelling_at),
        cancelled_at=_opt_float(row.cancelled_at),
        model=row.model,
        metadata=json.loads(row.metadata),
        errors=json.loads(row.errors) if row.errors is not None else None,
        output_file_id=row.output_file_id,
        error_file_id=row.error_file_id,
        total=int(row.total),
        completed=int(row.completed),
        failed=int(row.failed),
        input_tokens=int(row.input_tokens),
        cached_tokens=int(row.cached_tokens),
        output_tokens=int(row.output_tokens),
        output_expires_after=row.output_expires_after,
        lease_owner=row.lease_owner,
        lease_until=_opt_float(row.lease_until),
        enqueued_tokens=int(row.enqueued_tokens),
    )
