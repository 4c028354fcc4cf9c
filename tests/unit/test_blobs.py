"""DirectoryBlobs: atomic writes (temp file + rename), limits enforced mid-stream, nothing left behind."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from faceplate.store.blobs import AsyncWriter, BlobTooLarge, DirectoryBlobs, check_id, write_chunks


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def blobs(tmp_path: Path) -> DirectoryBlobs:
    return DirectoryBlobs(tmp_path / "files")


def test_a_committed_blob_reads_back_exactly(blobs: DirectoryBlobs) -> None:
    data = bytes(range(256)) * 1000
    with blobs.writer("file-abc123", limit=len(data)) as w:
        w.write(data[:1000])
        w.write(data[1000:])
        assert w.commit() == len(data)
    with blobs.open("file-abc123") as fh:
        assert fh.read() == data
    assert files_under(blobs.root) == [blobs.root / "23" / "file-abc123"]  # sharded by the id's last two characters


def test_nothing_is_visible_before_commit(blobs: DirectoryBlobs) -> None:
    w = blobs.writer("file-abc123", limit=100)
    w.write(b"half")
    with pytest.raises(FileNotFoundError):
        blobs.open("file-abc123")
    assert [p.parent for p in files_under(blobs.root)] == [blobs.tmp_dir]  # only the private temp file
    assert oct(os.stat(w.temp_path).st_mode & 0o777) == "0o600"
    w.commit()
    assert files_under(blobs.tmp_dir) == []
    with blobs.open("file-abc123") as fh:
        assert fh.read() == b"half"


def test_the_limit_refuses_the_write_that_would_pass_it(blobs: DirectoryBlobs) -> None:
    with blobs.writer("file-abc123", limit=10) as w:
        w.write(b"12345")
        w.write(b"67890")  # exactly the limit is fine
        with pytest.raises(BlobTooLarge) as info:
            w.write(b"x")
        assert info.value.limit == 10 and w.size == 10
    assert files_under(blobs.root) == []  # left without commit: aborted, temp removed


def test_an_exception_inside_the_writer_leaves_nothing(blobs: DirectoryBlobs) -> None:
    with pytest.raises(RuntimeError), blobs.writer("file-abc123", limit=100) as w:
        w.write(b"data")
        raise RuntimeError("boom")
    assert files_under(blobs.root) == []


def test_abort_is_idempotent_and_a_no_op_after_commit(blobs: DirectoryBlobs) -> None:
    w = blobs.writer("file-abc123", limit=100)
    w.write(b"kept")
    w.commit()
    w.abort()
    w.abort()
    with blobs.open("file-abc123") as fh:
        assert fh.read() == b"kept"
    with pytest.raises(ValueError):
        w.write(b"more")


def test_a_second_commit_replaces_the_first(blobs: DirectoryBlobs) -> None:
    for content in (b"first", b"second"):
        with blobs.writer("file-abc123", limit=100) as w:
            w.write(content)
            w.commit()
    with blobs.open("file-abc123") as fh:
        assert fh.read() == b"second"


def test_delete(blobs: DirectoryBlobs) -> None:
    with blobs.writer("file-abc123", limit=100) as w:
        w.write(b"x")
        w.commit()
    reader = blobs.open("file-abc123")
    assert blobs.delete("file-abc123") is True
    assert blobs.delete("file-abc123") is False
    with pytest.raises(FileNotFoundError):
        blobs.open("file-abc123")
    assert reader.read() == b"x"  # an open reader keeps what it opened
    reader.close()


@pytest.mark.parametrize("bad", ["", "ab", "../etc", "file-a/b", "file.abc", "a" * 65, "file-\x00"])
def test_ids_never_escape_the_folder(blobs: DirectoryBlobs, bad: str) -> None:
    with pytest.raises(ValueError):
        check_id(bad)
    with pytest.raises(ValueError):
        blobs.writer(bad, limit=1)
    with pytest.raises(ValueError):
        blobs.open(bad)


def test_sweep_temp_removes_only_old_unfinished_uploads(blobs: DirectoryBlobs) -> None:
    old = blobs.writer("file-old111", limit=10)
    old.write(b"x")
    young = blobs.writer("file-young1", limit=10)
    young.write(b"y")
    past = time.time() - 7200
    os.utime(old.temp_path, (past, past))
    assert blobs.sweep_temp(older_than_s=3600) == 1
    assert not old.temp_path.exists() and young.temp_path.exists()
    young.commit()
    old.abort()  # its temp file is already gone: still fine


async def test_write_chunks_from_sync_and_async_sources(blobs: DirectoryBlobs) -> None:
    def sync_chunks() -> Iterator[bytes]:
        yield from (bytes([i]) * 1000 for i in range(10))

    async def async_chunks() -> AsyncIterator[bytes]:
        for i in range(10):
            yield bytes([i]) * 1000

    assert await write_chunks(blobs, "file-sync01", sync_chunks(), limit=10_000) == 10_000
    assert await write_chunks(blobs, "file-async1", async_chunks(), limit=10_000) == 10_000
    for bid in ("file-sync01", "file-async1"):
        with blobs.open(bid) as fh:
            assert fh.read() == b"".join(bytes([i]) * 1000 for i in range(10))


async def test_write_chunks_stops_reading_at_the_limit_and_leaves_nothing(blobs: DirectoryBlobs) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"z" * 65536

    limit = 3 * 1024 * 1024  # past the write buffer, so some of it reached the disk before the refusal
    with pytest.raises(BlobTooLarge):
        await write_chunks(blobs, "file-big001", endless(), limit=limit)
    assert pulled == limit // 65536 + 1  # the chunk that crossed the limit was the last one read
    assert files_under(blobs.root) == []
    with pytest.raises(FileNotFoundError):
        blobs.open("file-big001")


async def test_write_chunks_failure_of_the_source_leaves_nothing(blobs: DirectoryBlobs) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * (2 * 1024 * 1024)
        raise ConnectionError("client gone")

    with pytest.raises(ConnectionError):
        await write_chunks(blobs, "file-gone01", broken(), limit=10**9)
    assert files_under(blobs.root) == []


async def test_async_writer_buffers_and_checks_the_limit_before_buffering(blobs: DirectoryBlobs) -> None:
    w = await AsyncWriter.open(blobs, "file-buf001", limit=100)
    await w.write(b"a" * 60)
    with pytest.raises(BlobTooLarge):
        await w.write(b"b" * 41)  # refused at once, though nothing has reached the disk yet
    assert w.size == 60
    assert await w.commit() == 60
    with blobs.open("file-buf001") as fh:
        assert fh.read() == b"a" * 60
