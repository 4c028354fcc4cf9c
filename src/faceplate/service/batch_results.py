"""Wrapping a batch up: its results streamed into an output and an error file, then finished.

The result files' ids are derived from the batch's id (a hash: opaque, as file ids must be), and
their metadata rows are written in the same transaction as the batch's terminal status
(``BatchStore.finish(files=...)``). So a wrap-up killed at any point leaves nothing behind: bytes
written but not recorded are overwritten by the next wrap-up under the same ids, and the records
appear together with the finished batch or not at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Literal

from faceplate.service.batch_output import UnrunCode, dumps_line, unrun_line
from faceplate.service.services import Services
from faceplate.store import StoredFile
from faceplate.store.batches import BatchRow

log = logging.getLogger("faceplate.batches")

_UNRUN_MESSAGES: dict[UnrunCode, str] = {
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
    "batch_expired": "This request could not be executed before the completion window expired.",
}


def result_file_id(batch_id: str, kind: Literal["output", "error"]) -> str:
    """The id of a batch's output or error file: the same at every wrap-up of that batch."""
    return "file-" + hashlib.blake2b(f"{batch_id}:{kind}".encode(), digest_size=12).hexdigest()


def _write(services: Services, row: BatchRow, unrun_code: UnrunCode) -> tuple[dict[str, int], int]:
    """Stream the results into the files (each committed only if it has a line): sizes by kind, unrun count."""
    store, blobs = services.store, services.blobs
    assert store is not None and blobs is not None
    limit = services.settings.max_file_bytes
    message = _UNRUN_MESSAGES[unrun_code]
    out = blobs.writer(result_file_id(row.id, "output"), limit)
    err = blobs.writer(result_file_id(row.id, "error"), limit)
    n_out = n_err = unrun = 0
    sizes: dict[str, int] = {}
    try:
        for _line, custom_id, ok, result, _status in store.batches.results(row.id):
            if ok is None or result is None:
                unrun += 1
                n_err += 1
                err.write(dumps_line(unrun_line(custom_id, unrun_code, message)))
            elif ok:
                n_out += 1
                out.write(dumps_line(result))
            else:
                n_err += 1
                err.write(dumps_line(result))
        if n_out:
            sizes["output"] = out.commit()
        if n_err:
            sizes["error"] = err.commit()
    finally:
        out.abort()
        err.abort()
    return sizes, unrun


async def wrap_up(services: Services, runner: str, row: BatchRow, status: str | None, unrun_code: UnrunCode) -> bool:
    """Write the batch's files and finish it (``status`` None: completed if every line ran, else
    expired). False if the runner lost the stage lease or the counts moved: nothing is recorded."""
    store = services.store
    assert store is not None
    sizes, unrun = await asyncio.to_thread(_write, services, row, unrun_code)
    final = status or ("expired" if unrun else "completed")
    created = time.time()
    expires = None if row.output_expires_after is None else float(int(created) + row.output_expires_after)
    files = [
        StoredFile(
            id=result_file_id(row.id, kind),  # type: ignore[arg-type]
            owner=row.owner,
            filename=f"batch_{row.id}_{kind}.jsonl",
            purpose="batch_output",
            bytes=size,
            created_at=created,
            expires_at=expires,
        )
        for kind, size in sizes.items()
    ]
    done = await asyncio.to_thread(
        store.batches.finish,
        row.id,
        runner,
        status=final,  # type: ignore[arg-type]
        output_file_id=result_file_id(row.id, "output") if "output" in sizes else None,
        error_file_id=result_file_id(row.id, "error") if "error" in sizes else None,
        unrun=unrun,
        now=time.time(),
        files=files,
    )
    if not done:
        log.warning("batch %s: could not finish as %s (lease lost or counts moved)", row.id, final)
    return done
