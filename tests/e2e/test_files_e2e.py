"""The Files API with the official SDK (strict response validation, every JSON body checked against
OpenAI's spec by the transport) against a real `faceplate serve`: upload, auto-paged list, retrieve,
content byte for byte, delete, ownership, every refusal as the SDK's exception; and proof that
uploads and downloads stream: a 64 MiB file moves through the server without its memory growing
by anything like that.

One server for this module (the bundled chat model only, one sequence: quick to start) with two
keys, lowered limits (``FACEPLATE_MAX_FILE_BYTES``, ``FACEPLATE_MAX_BATCH_FILE_BYTES``) and its own
data folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import httpx2
import openai
import pytest
from openai.types import FileObject

from tests.conformance import ValidatingTransport
from tests.e2e.conftest import E2E_KEY
from tests.e2e.keys_helpers import chat_only, close_clients, refusal, sdk
from tests.serverproc import ServerProcess, start_server

__all__ = ["close_clients"]  # the autouse fixture that closes every client `sdk` made

OTHER_KEY = "sk-e2e-files-other-0123456789"
MiB = 1024 * 1024
MAX_FILE = 80 * MiB
MAX_BATCH_FILE = 2 * MiB
BIG = 64 * MiB
RSS_SLACK = 24 * MiB  # what a 64 MiB transfer may add to the server's peak memory: buffers, not the file
JSONL = b"".join(
    json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": {}}).encode() + b"\n"
    for i in range(3)
)
BINARY = bytes(range(256)) * 64 + b"\r\n--\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        [*chat_only(), "--n-parallel", "1", "--api-key", E2E_KEY, "--api-key", OTHER_KEY],
        env={"FACEPLATE_MAX_FILE_BYTES": str(MAX_FILE), "FACEPLATE_MAX_BATCH_FILE_BYTES": str(MAX_BATCH_FILE)},
        log_dir=tmp_path_factory.mktemp("files"),
    )
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return sdk(server, E2E_KEY)


@pytest.fixture
def other(server: ServerProcess) -> openai.OpenAI:
    return sdk(server, OTHER_KEY)


def files_dir(server: ServerProcess) -> Path:
    """Where this server keeps files' bytes: <data_dir>/files (serverproc gives each server a data dir)."""
    return server.log_path.parent / f"data-{server.port}" / "files"


def on_disk(server: ServerProcess) -> list[Path]:
    return sorted(p for p in files_dir(server).rglob("*") if p.is_file())


def streamed(source: Generated) -> IO[bytes]:
    """The SDK takes any io.IOBase at run time (its hints say IO[bytes]); httpx reads it 64 KiB at a time."""
    return cast(IO[bytes], source)


class Generated(io.RawIOBase):
    """``size`` bytes made on the fly, never held whole: an upload the client streams (chunked)."""

    def __init__(self, size: int, seed: int = 7) -> None:
        self.left = size
        self.block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB of varied bytes
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), len(self.block), self.left)
        buffer[:n] = self.block[:n]
        self.digest.update(self.block[:n])
        self.left -= n
        return n


def test_upload_retrieve_content_delete(client: openai.OpenAI, server: ServerProcess) -> None:
    made = client.files.create(file=("requests.jsonl", JSONL), purpose="batch")
    assert isinstance(made, FileObject)
    assert made.id.startswith("file-") and made.object == "file" and made.status == "processed"
    assert (made.filename, made.purpose, made.bytes) == ("requests.jsonl", "batch", len(JSONL))
    assert made.expires_at == made.created_at + 30 * 86400  # batch files expire after 30 days by default
    assert abs(made.created_at - time.time()) < 60

    assert client.files.retrieve(made.id) == made
    assert client.files.content(made.id).read() == JSONL

    binary = client.files.create(file=("blob.bin", io.BytesIO(BINARY)), purpose="user_data")
    assert binary.expires_at is None and binary.bytes == len(BINARY)
    assert client.files.content(binary.id).read() == BINARY

    deleted = client.files.delete(made.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (made.id, "file", True)
    with pytest.raises(openai.NotFoundError) as info:
        client.files.retrieve(made.id)
    assert info.value.body == {
        "message": f"No such File object: {made.id}",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    for call in (client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError) as gone:
            call(made.id)
        assert refusal(gone.value) == (404, "invalid_request_error", None, None, f"No such File object: {made.id}")
    assert made.id not in {p.name for p in on_disk(server)}
    client.files.delete(binary.id)


def test_list_auto_pages_newest_first(client: openai.OpenAI) -> None:
    made = [client.files.create(file=(f"img{i}.png", b"%d" % i), purpose="vision").id for i in range(5)]
    page = client.files.list(limit=2, purpose="vision")
    assert [f.id for f in page.data] == made[:-3:-1] and page.has_more is True
    assert [f.id for f in page] == made[::-1]  # auto-paging follows after=data[-1].id until has_more is false
    assert [f.id for f in client.files.list(purpose="vision", order="asc")] == made
    assert client.files.list(purpose="fine-tune").data == []
    for fid in made:
        client.files.delete(fid)


def test_expires_after(client: openai.OpenAI) -> None:
    f = client.files.create(
        file=("notes.txt", b"remember"), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert f.expires_at == f.created_at + 3600
    client.files.delete(f.id)


def test_files_belong_to_their_key(client: openai.OpenAI, other: openai.OpenAI) -> None:
    mine = client.files.create(file=("secret.jsonl", JSONL), purpose="batch")
    for call in (other.files.retrieve, other.files.content, other.files.delete):
        with pytest.raises(openai.NotFoundError) as info:
            call(mine.id)
        assert refusal(info.value) == (404, "invalid_request_error", None, None, f"No such File object: {mine.id}")
    assert mine.id not in {f.id for f in other.files.list()}
    assert client.files.content(mine.id).read() == JSONL
    client.files.delete(mine.id)


def test_refusals(client: openai.OpenAI, server: ServerProcess) -> None:
    before = on_disk(server)

    def bad(param: str | None, **kw: object) -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError) as info:
            client.files.create(**kw)  # type: ignore[arg-type]
        assert refusal(info.value)[:4] == (400, "invalid_request_error", param, None), info.value.body
        return info.value

    bad("purpose", file=("a.jsonl", JSONL), purpose="training")
    err = bad("file", file=("requests.json", JSONL), purpose="batch")
    assert err.body["message"] == "Invalid file format for Batch API. Must be .jsonl"  # type: ignore[index]
    err = bad("file", file=("big.jsonl", Generated(MAX_BATCH_FILE + 1)), purpose="batch")  # over the batch limit, streamed
    assert refusal(err)[4] == f"File is too large for the Batch API: the maximum size is {MAX_BATCH_FILE} bytes."
    bad("expires_after.seconds", file=("a.txt", b"x"), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 60})
    bad("expires_after.anchor", file=("a.txt", b"x"), purpose="user_data", expires_after={"anchor": "now", "seconds": 3600})

    raw = httpx2.post(  # no file at all: the SDK cannot send that
        f"{server.base_url}/files", headers={"authorization": f"Bearer {E2E_KEY}"}, files={"purpose": (None, "batch")}
    )
    assert raw.status_code == 400 and raw.json()["error"]["param"] == "file"

    for content in (
        streamed(Generated(MAX_FILE + 32 * MiB)),
        b"\0" * (MAX_FILE + 1),
    ):  # streamed (chunked), and with a Content-Length
        with pytest.raises(openai.APIStatusError) as info:
            client.files.create(file=("huge.bin", content), purpose="user_data")
        assert refusal(info.value) == (
            413,
            "invalid_request_error",
            "file",
            "request_too_large",
            f"File is too large: the maximum size is {MAX_FILE} bytes.",
        )
    assert on_disk(server) == before  # nothing kept, no temp file left


def test_evals_is_echoed_though_the_sdk_does_not_know_it(server: ServerProcess) -> None:
    """OpenAI echoes purpose=evals, which the SDK's FileObject leaves out: strict validation refuses it,
    the SDK's default accepts it."""
    lenient = openai.OpenAI(
        base_url=server.base_url, api_key=E2E_KEY, http_client=httpx2.Client(transport=ValidatingTransport()), max_retries=0
    )
    with lenient:
        f = lenient.files.create(file=("eval.jsonl", JSONL), purpose="evals")
        assert f.purpose == "evals" and f.expires_at is None  # type: ignore[comparison-overlap]
        with pytest.raises(openai.APIResponseValidationError):
            sdk(server, E2E_KEY).files.retrieve(f.id)
        lenient.files.delete(f.id)


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[name] = int(value.split()[0]) * 1024
    return out


def _reset_peak(pid: int) -> None:
    """Set VmHWM (peak resident memory) back to the current RSS, so it measures only what follows."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def test_a_64_mib_file_streams_through_without_the_server_holding_it(client: openai.OpenAI, server: ServerProcess) -> None:
    pid = server.proc.pid
    warm = client.files.create(file=("warm.bin", streamed(Generated(4 * MiB))), purpose="user_data")  # threads, imports, pools
    client.files.content(warm.id).read()
    client.files.delete(warm.id)

    _reset_peak(pid)
    base = _status(pid)["VmRSS"]
    source = Generated(BIG)
    started = time.monotonic()
    f = client.files.create(file=("big.bin", streamed(source)), purpose="user_data")
    upload_s = time.monotonic() - started
    upload_peak = _status(pid)["VmHWM"] - base
    assert f.bytes == BIG

    _reset_peak(pid)
    base = _status(pid)["VmRSS"]
    digest = hashlib.sha256()
    with client.files.with_streaming_response.content(f.id) as response:
        for chunk in response.iter_bytes(1024 * 1024):
            digest.update(chunk)
    download_peak = _status(pid)["VmHWM"] - base
    assert digest.hexdigest() == source.digest.hexdigest()

    print(
        f"\n64 MiB upload: server peak RSS +{upload_peak / MiB:.1f} MiB ({upload_s:.2f} s); "
        f"download: +{download_peak / MiB:.1f} MiB"
    )
    assert upload_peak < RSS_SLACK, f"the server's memory grew by {upload_peak / MiB:.1f} MiB during a 64 MiB upload"
    assert download_peak < RSS_SLACK, f"the server's memory grew by {download_peak / MiB:.1f} MiB during a 64 MiB download"
    client.files.delete(f.id)
