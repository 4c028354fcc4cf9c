"""Wire schema of the Files routes: the multipart upload (CreateFileRequest) and the list's query.

An upload is read as a stream of form events (``multipart_events``), never as a whole body:
text fields arrive whole (each at most ``MAX_FIELD_BYTES``), a file part as ``FilePart`` then
its bytes piece by piece (``FileData``, at most one incoming chunk each) then ``PartEnd``, so the
caller can write them to disk as they come. The field names are OpenAI's, the bracketed ones
sent literally by the SDKs: ``file``, ``purpose``, ``expires_after[anchor]``,
``expires_after[seconds]``. Anything malformed is OpenAI's 400, naming the field in ``param``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from faceplate.errors import InvalidRequest
from faceplate.protocol.paging import Page, page_params

log = logging.getLogger("faceplate.protocol")

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")  # accepted on upload
EXPIRES_MIN_S = 3600  # 1 hour
EXPIRES_MAX_S = 2_592_000  # 30 days
MAX_FIELD_BYTES = 64 * 1024  # a text field (purpose, expires_after[...]) is a few bytes; this bounds hostile ones
MAX_PARTS = 32
MAX_FILENAME_CHARS = 1024
FORM_OVERHEAD_BYTES = 1024 * 1024  # what a body may hold besides the file: boundaries, headers, text fields
LIST_MAX_LIMIT = 10_000  # GET /v1/files: limit 1..10,000, default 10,000

KNOWN_FIELDS = ("file", "purpose", "expires_after[anchor]", "expires_after[seconds]")
_DIGITS = re.compile(r"-?[0-9]{1,18}")


@dataclass(frozen=True)
class FormField:
    name: str
    value: str


@dataclass(frozen=True)
class FilePart:
    """A file part begins; its bytes follow as ``FileData`` events, then ``PartEnd``."""

    name: str
    filename: str


@dataclass(frozen=True)
class FileData:
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    pass


FormEvent = FormField | FilePart | FileData | PartEnd


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` body, or the 400 for any other body."""
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        shown = kind.decode("latin-1") or "none"
        raise InvalidRequest(
            f"Invalid Content-Type header ({shown[:100]}): a file upload is sent as multipart/form-data "
            "with the fields 'file' and 'purpose'."
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidRequest("Invalid Content-Type header: multipart/form-data needs a boundary.")
    return boundary


class _Collector:
    """python_multipart's callbacks, turned into form events for one incoming chunk at a time."""

    def __init__(self) -> None:
        self.events: list[FormEvent] = []
        self.ended = False
        self.parts = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._field = bytearray()
        self._file_data: list[bytes] = []

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise InvalidRequest(f"The multipart body has more than {MAX_PARTS} parts.")
        self._disposition = b""
        self._field = bytearray()
        self._is_file = False

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def headers_finished(self) -> None:
        # latin-1 keeps the header's bytes as they are; names and filenames are then read as UTF-8
        kind, options = parse_options_header(self._disposition.decode("latin-1"))
        if kind != b"form-data" or b"name" not in options:
            raise InvalidRequest("Every part of a multipart/form-data body needs 'Content-Disposition: form-data; name=...'.")
        self._name = options[b"name"].decode("utf-8", errors="replace")
        filename = options.get(b"filename")
        self._is_file = filename is not None
        if filename is not None:
            self.events.append(FilePart(self._name, _filename(filename)))

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self._file_data.append(data[start:end])
            return
        if len(self._field) + end - start > MAX_FIELD_BYTES:
            raise InvalidRequest(
                f"Invalid '{self._name[:100]}': the field is longer than {MAX_FIELD_BYTES} bytes.", param=self._name[:100]
            )
        self._field += data[start:end]

    def part_end(self) -> None:
        if self._is_file:
            self.flush()
            self.events.append(PartEnd())
            return
        try:
            value = self._field.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"Invalid '{self._name[:100]}': the value is not UTF-8.", param=self._name[:100]) from None
        self.events.append(FormField(self._name, value))

    def end(self) -> None:
        self.ended = True

    def flush(self) -> None:
        """The file bytes seen so far in this chunk, as one event (the chunk's slices joined)."""
        if self._file_data:
            data = self._file_data[0] if len(self._file_data) == 1 else b"".join(self._file_data)
            self._file_data = []
            if data:
                self.events.append(FileData(data))

    def take(self) -> list[FormEvent]:
        if self._is_file:
            self.flush()
        events, self.events = self.events, []
        return events


def _filename(raw: bytes) -> str:
    name = raw.decode("utf-8", errors="replace")
    if len(name) > MAX_FILENAME_CHARS:
        raise InvalidRequest(f"Invalid 'file': the filename is longer than {MAX_FILENAME_CHARS} characters.", param="file")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidRequest("Invalid 'file': the filename holds a control character.", param="file")
    return name


async def multipart_events(boundary: bytes, body: AsyncIterable[bytes]) -> AsyncIterator[FormEvent]:
    """The form events of a multipart body read piece by piece; a malformed body is a 400."""
    c = _Collector()
    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": c.part_begin,
            "on_part_data": c.part_data,
            "on_part_end": c.part_end,
            "on_header_field": c.header_field,
            "on_header_value": c.header_value,
            "on_header_end": c.header_end,
            "on_headers_finished": c.headers_finished,
            "on_end": c.end,
        },
    )
    async for chunk in body:
        if c.ended:
            continue  # an epilogue after the closing boundary means nothing
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidRequest(f"We could not parse the multipart body of your request: {exc}") from None
        for event in c.take():
            yield event
    if not c.ended:
        raise InvalidRequest("We could not parse the multipart body of your request: it ends before its closing boundary.")


@dataclass(frozen=True)
class UploadFields:
    purpose: str
    expires_after_s: int | None  # None: the purpose's default (batch: 30 days; others: never)


def check_purpose(value: str) -> str:
    if value not in PURPOSES:
        allowed = ", ".join(repr(p) for p in PURPOSES)
        raise InvalidRequest(
            f"Invalid value for 'purpose': expected one of {allowed}, but got {value[:100]!r} instead.", param="purpose"
        )
    return value


def _seconds(value: str) -> int:
    text = value.strip()
    if _DIGITS.fullmatch(text) is None:
        raise InvalidRequest(
            f"Invalid type for 'expires_after.seconds': expected an integer, but got {value[:40]!r} instead.",
            param="expires_after.seconds",
        )
    seconds = int(text)
    if seconds < EXPIRES_MIN_S:
        raise InvalidRequest(
            "Invalid 'expires_after.seconds': integer below minimum value. "
            f"Expected a value >= {EXPIRES_MIN_S}, but got {seconds} instead.",
            param="expires_after.seconds",
        )
    if seconds > EXPIRES_MAX_S:
        raise InvalidRequest(
            "Invalid 'expires_after.seconds': integer above maximum value. "
            f"Expected a value <= {EXPIRES_MAX_S}, but got {seconds} instead.",
            param="expires_after.seconds",
        )
    return seconds


def upload_fields(fields: Mapping[str, str], *, strict: bool) -> UploadFields:
    """The text fields of an upload (the file itself is checked by the caller), or OpenAI's 400."""
    unknown = sorted(k for k in fields if k not in KNOWN_FIELDS)
    if unknown and strict:
        raise InvalidRequest(f"Unrecognized request argument supplied: {', '.join(unknown)}")
    if unknown:
        log.info("files: ignoring unrecognised form fields: %s", ", ".join(k[:100] for k in unknown))
    if "purpose" not in fields:
        raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
    purpose = check_purpose(fields["purpose"])
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return UploadFields(purpose, None)
    if anchor is None:
        raise InvalidRequest("Missing required parameter: 'expires_after.anchor'.", param="expires_after.anchor")
    if anchor != "created_at":
        raise InvalidRequest(
            f"Invalid value for 'expires_after.anchor': expected 'created_at', but got {anchor[:100]!r} instead.",
            param="expires_after.anchor",
        )
    if seconds is None:
        raise InvalidRequest("Missing required parameter: 'expires_after.seconds'.", param="expires_after.seconds")
    return UploadFields(purpose, _seconds(seconds))


@dataclass(frozen=True)
class FileListQuery:
    page: Page
    purpose: str | None


def list_query(query: Mapping[str, str]) -> FileListQuery:
    """``limit`` (1..10,000, default 10,000), ``order`` (default desc), ``after`` (a file id), ``purpose``."""
    page = page_params(query, default_limit=LIST_MAX_LIMIT, max_limit=LIST_MAX_LIMIT)
    return FileListQuery(page=page, purpose=query.get("purpose") or None)
