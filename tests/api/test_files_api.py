"""The Files API in process (real SQLite store, files on disk): upload, list and paging, retrieve,
content byte for byte, delete, ownership, expiry and its purge, and every refusal, each body
checked against OpenAI's spec. Refused uploads must leave nothing on disk."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from faceplate.app import create_app
from faceplate.service import files as file_service
from faceplate.service.services import Services
from faceplate.store.blobs import DirectoryBlobs
from faceplate.store.schema import files as files_table
from tests import spec
from tests.api.conftest import client_for

JSONL = b'{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{}}\n'
BINARY = bytes(range(256)) * 4 + b"\r\n--boundary\r\n\r\n--" + bytes(range(255, -1, -1))  # every byte, and boundary look-alikes
DAY = 86400


def blobs_of(services: Services) -> DirectoryBlobs:
    assert isinstance(services.blobs, DirectoryBlobs)
    return services.blobs


def on_disk(services: Services) -> list[Path]:
    """Every file under files_dir: committed blobs and unfinished uploads alike."""
    return sorted(p for p in blobs_of(services).root.rglob("*") if p.is_file())


def temp_files(services: Services) -> list[Path]:
    return sorted(blobs_of(services).tmp_dir.iterdir())


async def upload(
    api: httpx.AsyncClient,
    content: bytes = JSONL,
    *,
    filename: str = "input.jsonl",
    purpose: str | None = "batch",
    fields: dict[str, str] | None = None,
) -> httpx.Response:
    data = dict(fields or {})
    if purpose is not None:
        data["purpose"] = purpose
    return await api.post("/v1/files", data=data, files={"file": (filename, content, "application/octet-stream")})


async def uploaded(api: httpx.AsyncClient, content: bytes = JSONL, **kw: Any) -> dict[str, Any]:
    r = await upload(api, content, **kw)
    assert r.status_code == 200, r.text
    spec.validate_file(r.json())
    return dict(r.json())


def multipart(*parts: tuple[str, str | None, bytes], boundary: str = "fp-test-boundary") -> tuple[bytes, dict[str, str]]:
    """A hand-built multipart body: (name, filename or None, value) in the order given."""
    out = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"content-type": f"multipart/form-data; boundary={boundary}"}


async def post_raw(api: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await api.post("/v1/files", content=body, headers=headers)


def refused(r: httpx.Response, status: int, param: str | None, text: str = "") -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    spec.validate_error(body)
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param, body
    assert text in body["error"]["message"], body
    return dict(body["error"])


def limited(services: Services, **settings: int) -> httpx.AsyncClient:
    services.settings = services.settings.model_copy(update=settings)
    return client_for(services)


# -- upload, retrieve, content


async def test_upload_returns_the_file_object(rapi: httpx.AsyncClient, stored: Services) -> None:
    f = await uploaded(rapi, filename="requests.jsonl")
    assert f["id"].startswith("file-") and len(f["id"]) == 5 + 24
    assert {k: f[k] for k in ("object", "bytes", "filename", "purpose", "status", "status_details")} == {
        "object": "file",
        "bytes": len(JSONL),
        "filename": "requests.jsonl",
        "purpose": "batch",
        "status": "processed",
        "status_details": None,
    }
    assert isinstance(f["created_at"], int)
    assert f["expires_at"] == f["created_at"] + 30 * DAY  # batch files expire after 30 days by default
    r = await rapi.get(f"/v1/files/{f['id']}")
    assert r.status_code == 200 and r.json() == f
    spec.validate_file(r.json())
    assert temp_files(stored) == [] and len(on_disk(stored)) == 1


@pytest.mark.parametrize("purpose", ["assistants", "fine-tune", "vision", "user_data", "evals"])
async def test_other_purposes_never_expire_by_default(rapi: httpx.AsyncClient, purpose: str) -> None:
    f = await uploaded(rapi, b"anything", filename="notes.txt", purpose=purpose)
    assert f["purpose"] == purpose  # evals too: echoed as OpenAI does (docs/files.md)
    assert f["expires_at"] is None


async def test_expires_after_sets_expires_at(rapi: httpx.AsyncClient) -> None:
    fields = {"expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"}
    f = await uploaded(rapi, b"x", filename="a.txt", purpose="user_data", fields=fields)
    assert f["expires_at"] == f["created_at"] + 3600
    fields["expires_after[seconds]"] = "2592000"
    f = await uploaded(rapi, fields=fields)  # overrides the batch default too
    assert f["expires_at"] == f["created_at"] + 2592000


async def test_content_is_the_exact_bytes(rapi: httpx.AsyncClient) -> None:
    for content, name in ((JSONL, "a.jsonl"), (BINARY, "blob.bin"), (b"", "empty.txt")):
        f = await uploaded(rapi, content, filename=name, purpose="user_data")
        assert f["bytes"] == len(content)
        r = await rapi.get(f"/v1/files/{f['id']}/content")
        assert r.status_code == 200
        assert r.content == content
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["content-length"] == str(len(content))


async def test_a_multi_megabyte_file_under_a_lowered_limit(stored: Services) -> None:
    content = os.urandom(5 * 1024 * 1024 + 7)
    async with limited(stored, max_file_bytes=6 * 1024 * 1024) as api:
        f = await uploaded(api, content, filename="big.bin", purpose="user_data")
        assert f["bytes"] == len(content)
        r = await api.get(f"/v1/files/{f['id']}/content")
        assert r.content == content
    assert temp_files(stored) == []


async def test_fields_after_the_file_are_read_too(rapi: httpx.AsyncClient) -> None:
    body, headers = multipart(("file", "late.jsonl", JSONL), ("purpose", None, b"batch"))  # curl -F order
    r = await post_raw(rapi, body, headers)
    assert r.status_code == 200, r.text
    assert r.json()["purpose"] == "batch" and r.json()["filename"] == "late.jsonl"


async def test_unknown_fields_are_ignored_leniently_and_refused_strictly(rapi: httpx.AsyncClient, stored: Services) -> None:
    body, headers = multipart(("purpose", None, b"batch"), ("colour", None, b"blue"), ("file", "a.jsonl", JSONL))
    assert (await post_raw(rapi, body, headers)).status_code == 200
    r = await post_raw(rapi, body, {**headers, "x-faceplate-compat": "strict"})
    refused(r, 400, None, "Unrecognized request argument supplied: colour")
    body, headers = multipart(("purpose", None, b"batch"), ("file", "a.jsonl", JSONL), ("attachment", "b.txt", b"zz"))
    assert (await post_raw(rapi, body, headers)).status_code == 200  # a second file part under another name: skipped
    refused(await post_raw(rapi, body, {**headers, "x-faceplate-compat": "strict"}), 400, None, "attachment")
    assert temp_files(stored) == []


# -- list


async def test_list_is_newest_first_with_paging(rapi: httpx.AsyncClient) -> None:
    made = [(await uploaded(rapi, f"{i}\n".encode(), filename=f"f{i}.jsonl"))["id"] for i in range(5)]
    r = await rapi.get("/v1/files")
    spec.validate_file_list(r.json())
    body = r.json()
    assert [f["id"] for f in body["data"]] == made[::-1]
    assert (body["object"], body["first_id"], body["last_id"], body["has_more"]) == ("list", made[-1], made[0], False)

    seen: list[str] = []
    after = None
    while True:
        r = await rapi.get("/v1/files", params={"limit": 2, **({"after": after} if after else {})})
        page = r.json()
        spec.validate_file_list(page)
        seen += [f["id"] for f in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == made[::-1]

    r = await rapi.get("/v1/files", params={"order": "asc", "after": made[1]})
    assert [f["id"] for f in r.json()["data"]] == made[2:]


async def test_list_filters_by_purpose(rapi: httpx.AsyncClient) -> None:
    batch = (await uploaded(rapi))["id"]
    notes = (await uploaded(rapi, b"n", filename="n.txt", purpose="user_data"))["id"]
    r = await rapi.get("/v1/files", params={"purpose": "batch"})
    assert [f["id"] for f in r.json()["data"]] == [batch]
    r = await rapi.get("/v1/files", params={"purpose": "user_data"})
    assert [f["id"] for f in r.json()["data"]] == [notes]
    r = await rapi.get("/v1/files", params={"purpose": "vision"})
    assert r.json() == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}
    spec.validate_file_list(r.json())


@pytest.mark.parametrize(
    ("query", "param"),
    [({"limit": "0"}, "limit"), ({"limit": "10001"}, "limit"), ({"limit": "ten"}, "limit"), ({"order": "up"}, "order")],
)
async def test_list_refuses_bad_paging(rapi: httpx.AsyncClient, query: dict[str, str], param: str) -> None:
    refused(await rapi.get("/v1/files", params=query), 400, param)


async def test_list_accepts_the_largest_limit(rapi: httpx.AsyncClient) -> None:
    await uploaded(rapi)
    r = await rapi.get("/v1/files", params={"limit": "10000"})
    assert r.status_code == 200 and len(r.json()["data"]) == 1


# -- delete, ownership


async def test_delete_removes_the_file_and_its_bytes(rapi: httpx.AsyncClient, stored: Services) -> None:
    f = await uploaded(rapi)
    keep = await uploaded(rapi)
    r = await rapi.delete(f"/v1/files/{f['id']}")
    assert r.status_code == 200 and r.json() == {"id": f["id"], "object": "file", "deleted": True}
    spec.validate_file_deleted(r.json())
    for method, path in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
        r = await rapi.request(method, f"/v1/files/{f['id']}{path}")
        refused(r, 404, None, f"No such File object: {f['id']}")
    assert [x["id"] for x in (await rapi.get("/v1/files")).json()["data"]] == [keep["id"]]
    assert [p.name for p in on_disk(stored)] == [keep["id"]]


async def test_files_belong_to_their_key(rapi: httpx.AsyncClient, other: httpx.AsyncClient) -> None:
    mine = await uploaded(rapi, BINARY, filename="secret.bin", purpose="user_data")
    for method, path in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
        r = await other.request(method, f"/v1/files/{mine['id']}{path}")
        err = refused(r, 404, None)
        assert err["message"] == f"No such File object: {mine['id']}"  # the same 404 as a file that never was
    assert (await other.get("/v1/files")).json()["data"] == []
    assert (await other.get("/v1/files", params={"after": mine["id"]})).json()["data"] == []
    assert (await rapi.get(f"/v1/files/{mine['id']}/content")).content == BINARY  # untouched


async def test_unknown_ids_are_404(rapi: httpx.AsyncClient) -> None:
    for fid in ("file-0000", "nonsense", "..%2F..%2Fetc"):
        refused(await rapi.get(f"/v1/files/{fid}"), 404, None)
        refused(await rapi.get(f"/v1/files/{fid}/content"), 404, None)


# -- refusals


async def test_bad_purpose(rapi: httpx.AsyncClient, stored: Services) -> None:
    refused(await upload(rapi, purpose="training"), 400, "purpose", "'training'")
    refused(await upload(rapi, purpose="batch_output"), 400, "purpose")  # returned purposes are not accepted
    body, headers = multipart(("file", "a.jsonl", JSONL), ("purpose", None, b"nope"))
    refused(await post_raw(rapi, body, headers), 400, "purpose")
    refused(await upload(rapi, purpose=None), 400, "purpose", "Missing required parameter: 'purpose'")
    assert on_disk(stored) == []


async def test_missing_file(rapi: httpx.AsyncClient, stored: Services) -> None:
    body, headers = multipart(("purpose", None, b"batch"))
    refused(await post_raw(rapi, body, headers), 400, "file", "Missing required parameter: 'file'")
    body, headers = multipart(("purpose", None, b"batch"), ("file", None, b"not a file"))
    refused(await post_raw(rapi, body, headers), 400, "file")
    assert on_disk(stored) == []


async def test_two_files(rapi: httpx.AsyncClient, stored: Services) -> None:
    body, headers = multipart(("purpose", None, b"batch"), ("file", "a.jsonl", JSONL), ("file", "b.jsonl", JSONL))
    refused(await post_raw(rapi, body, headers), 400, "file", "more than one")
    body, headers = multipart(("purpose", None, b"batch"), ("purpose", None, b"batch"), ("file", "b.jsonl", JSONL))
    refused(await post_raw(rapi, body, headers), 400, "purpose", "Duplicate")
    assert on_disk(stored) == []


@pytest.mark.parametrize("filename", ["input.json", "input.txt", "jsonl", "input.jsonl.gz"])
async def test_a_batch_file_must_be_jsonl(rapi: httpx.AsyncClient, stored: Services, filename: str) -> None:
    err = refused(await upload(rapi, filename=filename), 400, "file")
    assert err["message"] == "Invalid file format for Batch API. Must be .jsonl"
    body, headers = multipart(("file", filename, JSONL), ("purpose", None, b"batch"))  # purpose after the file
    refused(await post_raw(rapi, body, headers), 400, "file", "Must be .jsonl")
    assert on_disk(stored) == []
    assert (await uploaded(rapi, filename="INPUT.JSONL"))["filename"] == "INPUT.JSONL"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"expires_after[anchor]": "last_active_at", "expires_after[seconds]": "3600"}, "expires_after.anchor"),
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "3599"}, "expires_after.seconds"),
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "2592001"}, "expires_after.seconds"),
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "1h"}, "expires_after.seconds"),
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "3600.5"}, "expires_after.seconds"),
        ({"expires_after[anchor]": "created_at"}, "expires_after.seconds"),
        ({"expires_after[seconds]": "3600"}, "expires_after.anchor"),
    ],
)
async def test_bad_expires_after(rapi: httpx.AsyncClient, stored: Services, fields: dict[str, str], param: str) -> None:
    refused(await upload(rapi, fields=fields), 400, param)
    assert on_disk(stored) == []


async def test_too_large_is_413_and_leaves_nothing(stored: Services) -> None:
    async with limited(stored, max_file_bytes=100_000) as api:
        assert (await uploaded(api, b"x" * 100_000, filename="edge.jsonl"))["bytes"] == 100_000  # exactly the limit
        err = refused(await upload(api, b"x" * 100_001, filename="over.jsonl"), 413, "file", "100000 bytes")
        assert err["code"] == "request_too_large"
        body, headers = multipart(("file", "over.txt", b"y" * 300_000), ("purpose", None, b"user_data"))
        refused(await post_raw(api, body, headers), 413, "file")
        assert len((await api.get("/v1/files")).json()["data"]) == 1
    assert temp_files(stored) == [] and len(on_disk(stored)) == 1


async def test_a_batch_file_has_its_own_limit(stored: Services) -> None:
    async with limited(stored, max_file_bytes=10_000, max_batch_file_bytes=1_000) as api:
        refused(await upload(api, b"x" * 1_001), 400, "file", "Batch API")
        body, headers = multipart(("file", "late.jsonl", b"x" * 1_001), ("purpose", None, b"batch"))  # known only at the end
        refused(await post_raw(api, body, headers), 400, "file", "Batch API")
        assert (await uploaded(api, b"x" * 5_000, filename="x.txt", purpose="user_data"))["bytes"] == 5_000
        refused(await upload(api, b"x" * 10_001, filename="x.txt", purpose="user_data"), 413, "file")
    assert temp_files(stored) == [] and len(on_disk(stored)) == 1


async def test_reading_stops_at_the_limit(stored: Services) -> None:
    """An upload past the limit is refused while it streams: the rest of the body is never read."""
    pulled = 0
    boundary = "endless"

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'.encode()
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n\r\n'.encode()
        for _ in range(10_000):  # 640 MB if it were all read
            pulled += 65536
            yield b"\0" * 65536

    async with limited(stored, max_file_bytes=1024 * 1024) as api:
        r = await api.post("/v1/files", content=endless(), headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        refused(r, 413, "file")
    assert pulled <= 1024 * 1024 + 2 * 65536
    assert temp_files(stored) == [] and on_disk(stored) == []


async def test_a_declared_length_past_the_limit_is_refused_before_reading(stored: Services) -> None:
    async with limited(stored, max_file_bytes=1000) as api:
        body, headers = multipart(("purpose", None, b"user_data"), ("file", "a.txt", b"z" * 2_000_000))
        r = await post_raw(api, body, headers)
        refused(r, 413, "file")
    assert on_disk(stored) == []


async def test_bodies_that_are_not_a_multipart_form(rapi: httpx.AsyncClient, stored: Services) -> None:
    refused(await rapi.post("/v1/files", json={"purpose": "batch", "file": "abc"}), 400, None, "multipart/form-data")
    refused(await rapi.post("/v1/files", content=b"x", headers={"content-type": "multipart/form-data"}), 400, None, "boundary")
    body, headers = multipart(("purpose", None, b"batch"), ("file", "a.jsonl", JSONL))
    refused(await post_raw(rapi, body[:-30], headers), 400, None, "closing boundary")  # cut off
    refused(await post_raw(rapi, b"garbage without any boundary", headers), 400, None)
    bad_part = b"--b\r\nContent-Type: text/plain\r\n\r\nvalue\r\n--b--\r\n"
    refused(await post_raw(rapi, bad_part, {"content-type": "multipart/form-data; boundary=b"}), 400, None, "Content-Disposition")
    huge, headers = multipart(("purpose", None, b"b" * 70_000), ("file", "a.jsonl", JSONL))
    refused(await post_raw(rapi, huge, headers), 400, "purpose", "longer than")
    many, headers = multipart(*[(f"f{i}", None, b"v") for i in range(40)])
    refused(await post_raw(rapi, many, headers), 400, None, "parts")
    assert on_disk(stored) == []


async def test_filenames(rapi: httpx.AsyncClient) -> None:
    body, headers = multipart(("purpose", None, b"user_data"), ("file", "données ☃.txt", b"x"))  # UTF-8, as browsers send
    r = await post_raw(rapi, body, headers)
    assert r.status_code == 200 and r.json()["filename"] == "données ☃.txt"
    body, headers = multipart(("purpose", None, b"user_data"), ("file", "a" * 2000, b"x"))
    refused(await post_raw(rapi, body, headers), 400, "file", "filename")
    body, headers = multipart(("purpose", None, b"user_data"), ("file", "a\x01b.txt", b"x"))
    refused(await post_raw(rapi, body, headers), 400, "file", "control character")


async def test_a_client_that_leaves_mid_upload_leaves_nothing(stored: Services) -> None:
    from faceplate.access.auth import Principal
    from faceplate.protocol.files import FileData, FilePart, FormEvent, FormField

    async def gone() -> AsyncIterator[FormEvent]:
        yield FormField("purpose", "user_data")
        yield FilePart("file", "a.bin")
        yield FileData(b"x" * (3 * 1024 * 1024))  # past the write buffer: some reached the disk
        raise ConnectionResetError("client gone")

    with pytest.raises(ConnectionResetError):
        await file_service.upload(stored, Principal(key_id="k", name="k"), gone(), strict=False)
    assert on_disk(stored) == []


# -- expiry and the purge


def expire(services: Services, file_id: str, at: float = 1.0) -> None:
    assert services.store is not None
    with services.store.engine.begin() as conn:
        conn.execute(update(files_table).where(files_table.c.id == file_id).values(expires_at=at))


async def test_an_expired_file_is_gone_and_purged(rapi: httpx.AsyncClient, stored: Services) -> None:
    old = await uploaded(rapi, filename="old.jsonl")
    live = await uploaded(rapi, filename="live.jsonl")
    expire(stored, old["id"])
    for path in ("", "/content"):
        refused(await rapi.get(f"/v1/files/{old['id']}{path}"), 404, None)
    assert [f["id"] for f in (await rapi.get("/v1/files")).json()["data"]] == [live["id"]]
    assert len(on_disk(stored)) == 2  # still on disk until the purge

    assert await file_service.purge_expired(stored) == 1
    assert [p.name for p in on_disk(stored)] == [live["id"]]
    assert stored.store is not None and stored.store.files.get_any(old["id"], now=0) is None
    assert await file_service.purge_expired(stored) == 0


async def test_the_app_purges_at_start_and_then_periodically(
    stored: Services, rapi: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_service, "PURGE_EVERY_S", 0.05)
    first = await uploaded(rapi)
    expire(stored, first["id"])
    stale = blobs_of(stored).writer("file-killed0", limit=10)  # an upload a killed process left behind
    stale.write(b"half")
    os.utime(stale.temp_path, (1.0, 1.0))

    async with lifespan(create_app(stored)):
        assert on_disk(stored) == []  # at start: the expired file and the stale upload are gone
        second = await uploaded(rapi)
        expire(stored, second["id"])
        for _ in range(100):
            if not on_disk(stored):
                break
            await asyncio.sleep(0.02)
        assert on_disk(stored) == []  # the periodic purge
    stale.abort()  # closes what the "killed process" held open


class lifespan:  # noqa: N801 - used as a context manager, like the helpers it stands in for
    """Run an ASGI app's lifespan startup on enter and its shutdown on exit."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.to_app: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def __aenter__(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.ensure_future(self.app(scope, self.to_app.get, self.from_app.put))
        await self.to_app.put({"type": "lifespan.startup"})
        assert (await self.from_app.get())["type"] == "lifespan.startup.complete"

    async def __aexit__(self, *exc: object) -> None:
        await self.to_app.put({"type": "lifespan.shutdown"})
        assert (await self.from_app.get())["type"] == "lifespan.shutdown.complete"
        await self.task


async def test_without_a_store_the_files_api_says_so(api: httpx.AsyncClient) -> None:
    refused(await api.get("/v1/files"), 400, None, "keeps no files")
    refused(await upload(api), 400, None, "keeps no files")
