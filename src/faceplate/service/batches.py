"""The Batch API's objects: create, retrieve, list and cancel batches (HTTP-free).

A batch is stored ``validating`` by ``create``; the batch worker (``service.batch_worker``)
validates its input file, runs its lines and writes its output and error files. Batches belong
to ``principal.owner``; another key gets a 404. The owner's principal is stored with the batch
so the worker runs every line as that key (its model list), without its interactive rate limits.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from faceplate.access.auth import Principal
from faceplate.errors import InvalidRequest, NotFound
from faceplate.protocol.batches import CreateBatchRequest
from faceplate.service.files import batch_limit
from faceplate.service.services import Services
from faceplate.store import Store
from faceplate.store.batches import TERMINAL, BatchRow

MAX_LIST_LIMIT = 100
DEFAULT_LIST_LIMIT = 20


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(16)


def _store(services: Services) -> Store:
    if services.store is None or services.blobs is None:
        raise InvalidRequest("This server runs no batches (it was started without a store).")
    return services.store


def principal_record(principal: Principal) -> dict[str, Any]:
    """What a batch keeps of its owner's principal (never a secret, never the rate limits)."""
    return {
        "key_id": principal.key_id,
        "name": principal.name,
        "models": None if principal.models is None else sorted(principal.models),
        "static_id": principal.static_id,
    }


def principal_from(record: dict[str, Any]) -> Principal:
    """The owner's principal for running batch lines: the same owner and models, no rpm/tpm, so
    batch lines never use up the key's interactive limits."""
    models = record.get("models")
    return Principal(
        key_id=record.get("key_id"),
        name=record.get("name") or "batch",
        models=None if models is None else frozenset(models),
        rpm=None,
        tpm=None,
        static_id=record.get("static_id"),
    )


def _t(value: float | None) -> int | None:
    return None if value is None else int(value)


def batch_object(row: BatchRow) -> dict[str, Any]:
    """The Batch object, exactly the spec's shape."""
    return {
        "id": row.id,
        "object": "batch",
        "endpoint": row.endpoint,
        "model": row.model,
        "errors": {"object": "list", "data": list(row.errors)} if row.errors else None,
        "input_file_id": row.input_file_id,
        "completion_window": row.completion_window,
        "status": row.status,
        "output_file_id": row.output_file_id,
        "error_file_id": row.error_file_id,
        "created_at": int(row.created_at),
        "in_progress_at": _t(row.in_progress_at),
        "expires_at": _t(row.expires_at),
        "finalizing_at": _t(row.finalizing_at),
        "completed_at": _t(row.completed_at),
        "failed_at": _t(row.failed_at),
        "expired_at": _t(row.expired_at),
        "cancelling_at": _t(row.cancelling_at),
        "cancelled_at": _t(row.cancelled_at),
        "request_counts": {"total": row.total, "completed": row.completed, "failed": row.failed},
        "usage": {
            "input_tokens": row.input_tokens,
            "input_tokens_details": {"cached_tokens": row.cached_tokens},
            "output_tokens": row.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": row.input_tokens + row.output_tokens,
        },
        "metadata": row.metadata,
    }


def _no_such_batch(batch_id: str) -> NotFound:
    return NotFound(f"No batch found with id '{batch_id}'.")


async def create(services: Services, principal: Principal, body: CreateBatchRequest) -> dict[str, Any]:
    store = _store(services)
    file_id = body.input_file_id
    found = await asyncio.to_thread(store.files.get, file_id, principal.owner)
    if found is None:
        raise InvalidRequest(f"Could not find file with ID {file_id!r}.", param="input_file_id")
    if found.purpose != "batch":
        raise InvalidRequest(
            f"The file {file_id!r} has purpose {found.purpose!r}; a batch's input file must have purpose 'batch'.",
            param="input_file_id",
        )
    limit = batch_limit(services)
    if found.bytes > limit:
        raise InvalidRequest(
            f"The input file is too large for the Batch API: the maximum size is {limit} bytes.", param="input_file_id"
        )
    created = time.time()
    row = await asyncio.to_thread(
        store.batches.create,
        id=new_batch_id(),
        owner=principal.owner,
        principal=principal_record(principal),
        endpoint=body.endpoint,
        input_file_id=file_id,
        completion_window=body.completion_window,
        created_at=created,
        expires_at=created + services.settings.batch_window_s,
        metadata=dict(body.metadata or {}),
        output_expires_after=body.output_expires_after.seconds if body.output_expires_after else None,
    )
    return batch_object(row)


async def retrieve(services: Services, principal: Principal, batch_id: str) -> dict[str, Any]:
    store = _store(services)
    row = await asyncio.to_thread(store.batches.get, batch_id, principal.owner)
    if row is None:
        raise _no_such_batch(batch_id)
    return batch_object(row)


def list_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIST_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"Invalid 'limit': expected an integer, but got {raw[:40]!r} instead.", param="limit") from None
    if not 1 <= value <= MAX_LIST_LIMIT:
        raise InvalidRequest(
            f"Invalid 'limit': expected a value between 1 and {MAX_LIST_LIMIT}, but got {value} instead.", param="limit"
        )
    return value


async def list_batches(services: Services, principal: Principal, *, limit: int, after: str | None) -> dict[str, Any]:
    store = _store(services)
    rows, has_more = await asyncio.to_thread(store.batches.list, principal.owner, limit=limit, after=after)
    data = [batch_object(r) for r in rows]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


async def cancel(services: Services, principal: Principal, batch_id: str) -> dict[str, Any]:
    store = _store(services)
    row = await asyncio.to_thread(store.batches.request_cancel, batch_id, principal.owner, time.time())
    if row is None:
        raise _no_such_batch(batch_id)
    if row.status in TERMINAL or row.status == "finalizing":
        raise InvalidRequest(f"Cannot cancel a batch with status '{row.status}'.")
    return batch_object(row)
