"""Files: uploads kept for their owner, listed, read back byte for byte, deleted, expired.

HTTP-free: ``upload`` takes the form events of a multipart body (``protocol.files``) and writes
the file's bytes to the blob store as they arrive, never holding the file in memory; ``create``
stores a file from any stream of chunks (what the batch worker will write its output with). The
row is written only after the bytes are committed, so a listed file always has its content; a
refused upload (bad field, over a limit, a client gone) leaves nothing behind.

Files belong to ``principal.owner``; another key gets the 404 OpenAI gives for a file that does
not exist. A file past its ``expires_at`` is gone at once for every reader; ``start_upkeep``
deletes its row and bytes a little later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from faceplate.access.auth import Principal
from faceplate.errors import FaceplateError, InvalidRequest, NotFound, PayloadTooLarge
from faceplate.protocol.files import (
    FileData,
    FileListQuery,
    FilePart,
    FormEvent,
    FormField,
    PartEnd,
    check_purpose,
    upload_fields,
)
from faceplate.service.services import Services
from faceplate.store import Store, StoredFile
from faceplate.store.blobs import AsyncWriter, BlobStore, BlobTooLarge, write_chunks

log = logging.getLogger("faceplate.files")

BATCH_DEFAULT_EXPIRY_S = 30 * 86400  # purpose=batch files expire after 30 days unless told otherwise
PURGE_EVERY_S = 300.0  # expired files are already invisible; the purge only gives their disk space back
PURGE_BATCH = 1000
TEMP_MAX_AGE_S = 3600.0  # unfinished uploads older than this were left by a killed process
READ_CHUNK = 256 * 1024


def new_file_id() -> str:
    """Opaque, as OpenAI's are: nothing is encoded in it."""
    return "file-" + secrets.token_hex(12)


def _no_such_file(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id}")


def _backends(services: Services) -> tuple[Store, BlobStore]:
    if services.store is None or services.blobs is None:
        raise InvalidRequest("This server keeps no files (it was started without a store).")
    return services.store, services.blobs


def file_object(f: StoredFile) -> dict[str, Any]:
    return {
        "id": f.id,
        "object": "file",
        "bytes": f.bytes,
        "created_at": int(f.created_at),
        "filename": f.filename,
        "purpose": f.purpose,
        "status": f.status,
        "expires_at": None if f.expires_at is None else int(f.expires_at),
        "status_details": None,
    }


def batch_limit(services: Services) -> int:
    s = services.settings
    return min(s.max_batch_file_bytes, s.max_file_bytes)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"File is too large: the maximum size is {limit} bytes.", param="file")


def _check_for_purpose(services: Services, purpose: str, filename: str, size: int | None) -> None:
    """The rules a purpose adds: a batch input is ``.jsonl`` and at most the batch limit."""
    if purpose != "batch":
        return
    if not filename.lower().endswith(".jsonl"):
        raise InvalidRequest("Invalid file format for Batch API. Must be .jsonl", param="file")
    limit = batch_limit(services)
    if size is not None and size > limit:
        raise InvalidRequest(f"File is too large for the Batch API: the maximum size is {limit} bytes.", param="file")


def _expires_at(created: float, purpose: str, expires_after_s: int | None) -> float | None:
    if expires_after_s is None and purpose == "batch":
        expires_after_s = BATCH_DEFAULT_EXPIRY_S
    return None if expires_after_s is None else float(int(created) + expires_after_s)


@dataclass
class _Upload:
    filename: str
    writer: AsyncWriter


async def upload(services: Services, principal: Principal, form: AsyncIterable[FormEvent], *, strict: bool) -> dict[str, Any]:
    """POST /v1/files: the file's bytes go to disk as they arrive.

    Limits are enforced while streaming: past ``max_file_bytes`` (or the batch limit, when
    ``purpose=batch`` came before the file) reading stops with a 413 (400 for the batch
    limit). Fields that come after the file are checked once the body is read."""
    store, blobs = _backends(services)
    file_id = new_file_id()
    fields: dict[str, str] = {}
    current: _Upload | None = None
    uploaded: _Upload | None = None
    try:
        async for event in form:
            if isinstance(event, FormField):
                if event.name in fields:
                    raise InvalidRequest(f"Duplicate parameter: '{event.name[:100]}'.", param=event.name[:100])
                fields[event.name] = event.value
            elif isinstance(event, FilePart):
                current = await _file_part(services, blobs, file_id, event, fields, uploaded, strict=strict)
                if current is not None:
                    uploaded = current
            elif isinstance(event, FileData):
                if current is not None:
                    try:
                        await current.writer.write(event.data)
                    except BlobTooLarge as exc:
                        raise _limit_error(fields, exc.limit, services) from None
            elif isinstance(event, PartEnd):
                current = None
        if "file" in fields:
            raise InvalidRequest("Invalid 'file': expected a file upload, but got a text field.", param="file")
        parsed = upload_fields(fields, strict=strict)
        if uploaded is None:
            raise InvalidRequest("Missing required parameter: 'file'.", param="file")
        _check_for_purpose(services, parsed.purpose, uploaded.filename, uploaded.writer.size)
        size = await uploaded.writer.commit()
        created = time.time()
        stored = StoredFile(
            id=file_id,
            owner=principal.owner,
            filename=uploaded.filename,
            purpose=parsed.purpose,
            bytes=size,
            created_at=created,
            expires_at=_expires_at(created, parsed.purpose, parsed.expires_after_s),
        )
        await _record(store, blobs, stored)
    finally:
        if uploaded is not None:
            uploaded.writer.abort()  # a no-op once committed
    return file_object(stored)


async def _file_part(
    services: Services,
    blobs: BlobStore,
    file_id: str,
    part: FilePart,
    fields: dict[str, str],
    uploaded: _Upload | None,
    *,
    strict: bool,
) -> _Upload | None:
    """A new file part: the upload's writer, or None for a part to skip (an unknown field, lenient)."""
    if part.name != "file":
        if strict:
            raise InvalidRequest(f"Unrecognized request argument supplied: {part.name[:100]}")
        log.info("files: ignoring the unrecognised file part %r", part.name[:100])
        return None
    if uploaded is not None:
        raise InvalidRequest("Invalid 'file': expected one file, but got more than one.", param="file")
    limit = services.settings.max_file_bytes
    purpose = fields.get("purpose")
    if purpose is not None:  # sent before the file (the SDKs do): its rules apply while streaming
        check_purpose(purpose)
        _check_for_purpose(services, purpose, part.filename, None)
        if purpose == "batch":
            limit = batch_limit(services)
    return _Upload(part.filename, await AsyncWriter.open(blobs, file_id, limit))


def _limit_error(fields: dict[str, str], limit: int, services: Services) -> FaceplateError:
    if fields.get("purpose") == "batch" and limit < services.settings.max_file_bytes:
        return InvalidRequest(f"File is too large for the Batch API: the maximum size is {limit} bytes.", param="file")
    return _too_large(limit)


async def _record(store: Store, blobs: BlobStore, stored: StoredFile) -> None:
    """Write the row for committed bytes; if that fails, the bytes go too."""
    try:
        await asyncio.to_thread(store.files.create, stored)
    except BaseException:
        with contextlib.suppress(OSError):
            blobs.delete(stored.id)
        raise


async def create(
    services: Services,
    owner: str,
    *,
    filename: str,
    purpose: str,
    chunks: AsyncIterable[bytes] | Iterable[bytes],
    expires_after_s: int | None = None,
) -> dict[str, Any]:
    """Store a file made by the server itself (a batch's output or error file) for ``owner``.

    ``purpose`` may be any returned purpose (``batch_output``); the size limit is ``max_file_bytes``."""
    store, blobs = _backends(services)
    file_id = new_file_id()
    try:
        size = await write_chunks(blobs, file_id, chunks, services.settings.max_file_bytes)
    except BlobTooLarge as exc:
        raise _too_large(exc.limit) from None
    created = time.time()
    stored = StoredFile(
        id=file_id,
        owner=owner,
        filename=filename,
        purpose=purpose,
        bytes=size,
        created_at=created,
        expires_at=_expires_at(created, purpose, expires_after_s),
    )
    await _record(store, blobs, stored)
    return file_object(stored)


async def list_files(services: Services, principal: Principal, query: FileListQuery) -> dict[str, Any]:
    store, _ = _backends(services)
    page = query.page
    rows, has_more = await asyncio.to_thread(
        store.files.list, principal.owner, purpose=query.purpose, limit=page.limit, order=page.order, after=page.after
    )
    data = [file_object(f) for f in rows]
    first = data[0]["id"] if data else ""  # strings even for an empty page, as the spec says
    last = data[-1]["id"] if data else ""
    return {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more}


async def _get(services: Services, principal: Principal, file_id: str) -> StoredFile:
    store, _ = _backends(services)
    found = await asyncio.to_thread(store.files.get, file_id, principal.owner)
    if found is None:
        raise _no_such_file(file_id)
    return found


async def retrieve(services: Services, principal: Principal, file_id: str) -> dict[str, Any]:
    return file_object(await _get(services, principal, file_id))


async def content(services: Services, principal: Principal, file_id: str) -> tuple[StoredFile, AsyncIterator[bytes]]:
    """The file and its bytes as a stream read from disk a piece at a time (the stream closes the file)."""
    found = await _get(services, principal, file_id)
    _, blobs = _backends(services)
    try:
        fh = await asyncio.to_thread(blobs.open, file_id)
    except FileNotFoundError:
        if await asyncio.to_thread(services.store.files.get, file_id, principal.owner) is None:  # type: ignore[union-attr]
            raise _no_such_file(file_id) from None  # deleted meanwhile
        log.error("file %s is in the store but its content is not in this server's files_dir", file_id)
        raise FaceplateError(f"The content of {file_id} is not available on this server.") from None
    return found, _read(fh)


async def _read(fh: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(fh.read, READ_CHUNK):
            yield chunk
    finally:
        fh.close()


async def delete(services: Services, principal: Principal, file_id: str) -> dict[str, Any]:
    store, blobs = _backends(services)
    if not await asyncio.to_thread(store.files.delete, file_id, principal.owner):
        raise _no_such_file(file_id)
    try:
        await asyncio.to_thread(blobs.delete, file_id)
    except (OSError, ValueError):
        log.exception("file %s: its row is deleted but its content could not be", file_id)
    return {"id": file_id, "object": "file", "deleted": True}


# -- upkeep


async def purge_expired(services: Services, now: float | None = None) -> int:
    """Delete the bytes, then the rows, of files whose expiry has passed; how many went."""
    store, blobs = services.store, services.blobs
    if store is None or blobs is None:
        return 0
    at = time.time() if now is None else now
    gone = 0
    while ids := await asyncio.to_thread(store.files.expired, at, PURGE_BATCH):
        for file_id in ids:
            try:
                await asyncio.to_thread(blobs.delete, file_id)
            except (OSError, ValueError):
                log.exception("could not delete the content of expired file %s", file_id)
        gone += await asyncio.to_thread(store.files.remove, ids)
        if len(ids) < PURGE_BATCH:
            break
    if gone:
        log.info("deleted %d expired file(s)", gone)
    return gone


async def start_upkeep(services: Services) -> asyncio.Task[None] | None:
    """At start and then every ``PURGE_EVERY_S``: sweep unfinished uploads a killed process left
    (older than ``TEMP_MAX_AGE_S``) and purge expired files (one indexed query when none has)."""
    if services.store is None or services.blobs is None:
        return None
    sweep = getattr(services.blobs, "sweep_temp", None)

    async def upkeep() -> None:
        if sweep is not None:  # a long-running server sweeps too, not only one that restarts
            await asyncio.to_thread(sweep, TEMP_MAX_AGE_S)
        await purge_expired(services)

    await upkeep()

    async def purge_forever() -> None:
        while True:
            await asyncio.sleep(PURGE_EVERY_S)
            try:
                await upkeep()
            except Exception:
                log.exception("files upkeep failed; retrying")

    return asyncio.get_running_loop().create_task(purge_forever(), name="files upkeep")
