"""Files' bytes, behind one small interface: write once under an id, open, delete.

``BlobStore`` is what the files service needs; ``DirectoryBlobs`` keeps each blob as a file in
a folder (``files_dir``)::

    <root>/tmp/<id>.<random>.part     an upload in progress (private, mode 0600)
    <root>/<last two chars of id>/<id> a committed blob

A writer fills a temporary file in ``<root>/tmp`` and commits by ``fsync`` + ``os.replace`` into
place, on the same file system, so a blob is either absent or complete: a reader never sees half
an upload, and a failed or refused upload (over its limit, a bad field, a client gone) removes its
temporary file. Temporary files a killed process left behind are swept once an hour old, at start and by the
files upkeep (``sweep_temp``).

The calls are blocking file I/O: async callers run them in a thread (``AsyncWriter`` and
``write_chunks`` do).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{3,64}")
WRITE_BUFFER = 1024 * 1024  # bytes gathered before one write in a thread (async writers)


class BlobTooLarge(Exception):
    """A write would take the blob past its limit; nothing past the limit was written."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the blob would exceed its limit of {limit} bytes")
        self.limit = limit


class BlobWriter(Protocol):
    """One blob being written: ``write`` pieces, then ``commit`` (atomic) or ``abort``.

    As a context manager it aborts on leaving, unless committed: an exception never leaves
    a partial blob or a temporary file behind."""

    size: int

    def write(self, data: bytes) -> None:
        """Append; BlobTooLarge (and nothing written) if the blob would exceed its limit."""
        ...

    def commit(self) -> int:
        """Make the blob visible under its id, complete; returns its size."""
        ...

    def abort(self) -> None:
        """Drop what was written (idempotent; a no-op after commit)."""
        ...

    def __enter__(self) -> BlobWriter: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None: ...


class BlobStore(Protocol):
    def writer(self, blob_id: str, limit: int) -> BlobWriter:
        """A new blob under ``blob_id`` of at most ``limit`` bytes (a committed one replaces any before it)."""
        ...

    def open(self, blob_id: str) -> BinaryIO:
        """The committed blob for reading; FileNotFoundError if there is none."""
        ...

    def delete(self, blob_id: str) -> bool:
        """Remove the blob; False if there was none. An open reader keeps reading what it opened."""
        ...


def check_id(blob_id: str) -> str:
    """Ids become file names: only ``[A-Za-z0-9_-]``, 3 to 64 characters (no dots, no separators)."""
    if not _SAFE_ID.fullmatch(blob_id):
        raise ValueError(f"not a valid blob id: {blob_id!r}")
    return blob_id


class _FileWriter:
    def __init__(self, final: Path, tmp_dir: Path, limit: int) -> None:
        self._final = final
        self._limit = limit
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=final.name + ".", suffix=".part")
        self._tmp = Path(name)
        self._fh: BinaryIO | None = os.fdopen(fd, "wb")
        self._committed = False
        self.size = 0

    @property
    def temp_path(self) -> Path:
        return self._tmp

    def write(self, data: bytes) -> None:
        if self._fh is None:
            raise ValueError("this blob writer is closed")
        if self.size + len(data) > self._limit:
            raise BlobTooLarge(self._limit)
        self._fh.write(data)
        self.size += len(data)

    def commit(self) -> int:
        if self._fh is None:
            raise ValueError("this blob writer is closed")
        fh, self._fh = self._fh, None
        try:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            self._final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, self._final)
        except BaseException:
            fh.close()
            self._unlink()
            raise
        self._committed = True
        return self.size

    def abort(self) -> None:
        if self._committed:
            return
        if self._fh is not None:
            fh, self._fh = self._fh, None
            with contextlib.suppress(OSError):
                fh.close()
        self._unlink()

    def _unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> _FileWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.abort()


class DirectoryBlobs:
    """Blobs as files under ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        check_id(blob_id)
        return self.root / blob_id[-2:] / blob_id

    def writer(self, blob_id: str, limit: int) -> _FileWriter:
        return _FileWriter(self.path(blob_id), self.tmp_dir, limit)

    def open(self, blob_id: str) -> BinaryIO:
        return open(self.path(blob_id), "rb")  # noqa: SIM115 - the caller owns and closes it

    def delete(self, blob_id: str) -> bool:
        try:
            self.path(blob_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def sweep_temp(self, older_than_s: float = 3600.0) -> int:
        """Remove unfinished uploads older than this (left by a killed process); how many went.

        Only old ones: another process sharing this folder may be writing a young one right now."""
        cutoff = time.time() - older_than_s
        gone = 0
        for entry in os.scandir(self.tmp_dir):
            with contextlib.suppress(FileNotFoundError):
                if entry.name.endswith(".part") and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    gone += 1
        return gone


class AsyncWriter:
    """A blob writer for async code: gathers writes up to ``WRITE_BUFFER`` bytes and hands each
    batch to a thread, so the event loop never waits on the disk. The limit is checked on every
    write, before buffering: a blob past it is refused at once, not a buffer later."""

    def __init__(self, writer: BlobWriter, limit: int) -> None:
        self._writer = writer
        self._limit = limit
        self._pending: list[bytes] = []
        self._buffered = 0
        self.size = 0

    @classmethod
    async def open(cls, blobs: BlobStore, blob_id: str, limit: int) -> AsyncWriter:
        return cls(await asyncio.to_thread(blobs.writer, blob_id, limit), limit)

    async def write(self, data: bytes) -> None:
        if self.size + len(data) > self._limit:
            raise BlobTooLarge(self._limit)
        self.size += len(data)
        self._pending.append(data)
        self._buffered += len(data)
        if self._buffered >= WRITE_BUFFER:
            await self._flush()

    async def _flush(self) -> None:
        if self._pending:
            data, self._pending, self._buffered = b"".join(self._pending), [], 0
            await asyncio.to_thread(self._writer.write, data)

    async def commit(self) -> int:
        await self._flush()
        return await asyncio.to_thread(self._writer.commit)

    def abort(self) -> None:
        """Synchronous (a close and an unlink), so it runs even in a cancelled task's cleanup."""
        self._pending = []
        self._writer.abort()


async def write_chunks(blobs: BlobStore, blob_id: str, chunks: AsyncIterable[bytes] | Iterable[bytes], limit: int) -> int:
    """Write ``chunks`` as one blob, committed atomically; returns its size.

    Past ``limit`` it stops reading and raises BlobTooLarge; on any failure nothing is left behind."""
    writer = await AsyncWriter.open(blobs, blob_id, limit)
    try:
        async for chunk in _aiter(chunks):
            await writer.write(chunk)
        return await writer.commit()
    finally:
        writer.abort()  # a no-op once committed


async def _aiter(chunks: AsyncIterable[bytes] | Iterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk
