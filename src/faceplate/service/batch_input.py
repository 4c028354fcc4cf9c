"""Validating a Batch API input file: streamed line by line, all-or-nothing, as OpenAI does.

``validate_input`` takes the file as an iterator of bytes lines (iterating an open binary file
gives exactly that) and holds one line's bytes at a time, plus a 16-byte digest of each
``custom_id`` seen (with its line), so memory stays small however long the ids are. With
``keep=True`` it also keeps each ``BatchLine`` (while no error has been found); the worker passes
``keep=False`` and, once the file is valid, streams it again through ``read_lines`` into the
store, so a 200 MB input is never held in memory. The result is ``Validated``: the request count,
the batch's model and its estimated prompt tokens, or a non-empty ``errors`` list, in which case
the batch fails.

``estimated_tokens`` is a cheap guess at a line's prompt tokens, as the interactive limiter's
admission makes one (about four characters a token, every string in the body but ``model``; a
token id counts one): the batch's total is what its key's batch token limit counts.

What fails the batch, each ``BatchError`` with the 1-based ``line`` and a ``param`` where one applies:

- ``empty_file``: no request at all (``line`` and ``param`` null).
- ``invalid_json_line``: the line is not JSON, not valid UTF-8, holds NaN/Infinity, a lone
  surrogate or nesting too deep (``protocol.common.parse_json``'s checks; ``param`` null), or its
  envelope is wrong (``param`` names the field): ``custom_id`` missing or not a non-empty string,
  ``method`` not ``"POST"``, ``url`` not a string, ``body`` not an object. One error per line: the
  first envelope problem found, in that order.
- ``duplicate_custom_id`` on the second (and every later) occurrence, ``param: "custom_id"``; the
  message names the line of the first.
- ``url_mismatch``: the line's ``url`` is not the batch's ``endpoint``, exactly, ``param: "url"``.
- ``model_mismatch``, ``param: "body.model"``: the first line whose ``body.model`` is a string sets
  the batch's model; a line naming another model fails. A line that names *no* model (missing or
  not a string) fails too: the doc's rule is that every line names the one model, every endpoint
  a batch serves requires ``model``, and the Batch object reports one ``model``.
- ``too_many_tasks``: more than ``max_requests`` request lines (``param`` null, ``line`` the first
  line past the limit); or, for ``/v1/embeddings``, more than ``max_embedding_inputs`` inputs in all
  (``param: "body.input"``, ``line`` the line that went past). An input counts as
  ``protocol.embeddings`` reads it: a string is 1, an array of token ids is 1 (it is one input), any
  other array counts its length; an ill-typed or missing ``input`` counts 0 (that line's own 400).
  Reading stops at ``too_many_tasks``: the count is checked as each line arrives, before it is
  parsed, so a file of a million lines is never read past line ``max_requests + 1``.

Checks on one well-formed line are independent: a line can carry ``duplicate_custom_id``,
``url_mismatch`` and ``model_mismatch`` together. Collection stops after ``max_errors`` errors
(reading stops there too: the batch has failed and the count is reported as it stood).

What does not fail the batch:

- Blank lines (whitespace only, including the empty "line" after a trailing newline) are skipped;
  they still count in line numbers, so ``line`` is what an editor shows.
- ``\\r\\n`` line endings: the ``\\r`` is JSON whitespace.
- A UTF-8 byte-order mark at the start of line 1 is dropped before anything else (Windows editors
  and some uploader tools write one; it is not content, so a line 1 holding only a BOM is blank).
  A BOM at the start of any other line is ``invalid_json_line``: it is not JSON, and it means two
  files were concatenated.
- Unknown envelope fields are ignored.
- ``body.stream: true``: a streamed answer cannot go in an output file, so that line gets its own
  400 when it runs; the batch goes ahead.
- Any other problem with a body (a request that would not validate on its endpoint, an unknown
  model): the line's own 4xx result in the error file when it runs. Validation checks only the
  envelope, the ``url``, ``custom_id`` uniqueness, the model, and the counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from faceplate.errors import InvalidRequest
from faceplate.protocol.batches import MAX_BATCH_REQUESTS, MAX_EMBEDDING_INPUTS
from faceplate.protocol.common import parse_json

_BOM = b"\xef\xbb\xbf"
NOT_JSON = "This line is not parseable as valid JSON."  # OpenAI's message


@dataclass(frozen=True)
class BatchLine:
    line: int  # 1-based, counting blank lines
    custom_id: str
    method: str
    url: str
    body: dict[str, Any]


@dataclass(frozen=True)
class BatchError:
    code: str
    message: str
    line: int | None
    param: str | None


@dataclass(frozen=True)
class Validated:
    model: str | None
    errors: list[BatchError]  # non-empty: the batch fails and ``lines`` is empty
    requests: int = 0  # request lines read (valid or not)
    tokens: int = 0  # estimated prompt tokens of every request line
    lines: list[BatchLine] = field(default_factory=list)  # with keep=True and no errors


class _Envelope(Exception):
    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:80] + "...")


def _parse(raw: bytes) -> Any:
    """The line's JSON value, or ``_Envelope`` with OpenAI's message for a line that is not JSON."""
    # json.loads(bytes) guesses UTF-16/32 from NUL bytes or a BOM; a JSON line in UTF-8 has neither
    # (a raw NUL is never valid JSON), so this keeps every line to UTF-8, as the file must be.
    if b"\x00" in raw or raw.startswith((_BOM, b"\xff\xfe", b"\xfe\xff")):
        raise _Envelope(NOT_JSON, None)
    try:
        return parse_json(raw)
    except InvalidRequest:
        raise _Envelope(NOT_JSON, None) from None


def _envelope(data: Any) -> tuple[str, str, str, dict[str, Any]]:
    if not isinstance(data, dict):
        raise _Envelope(f"This line is not a JSON object: expected an object, but got {_kind(data)}.", None)
    custom_id = data.get("custom_id")
    if "custom_id" not in data:
        raise _Envelope("Missing required parameter: 'custom_id'.", "custom_id")
    if not isinstance(custom_id, str):
        raise _Envelope(f"Invalid type for 'custom_id': expected a string, but got {_kind(custom_id)} instead.", "custom_id")
    if not custom_id:
        raise _Envelope("Invalid 'custom_id': empty string. Expected a non-empty string.", "custom_id")
    if "method" not in data:
        raise _Envelope("Missing required parameter: 'method'.", "method")
    method = data["method"]
    if method != "POST":
        got = _shown(method) if isinstance(method, str) else _kind(method)
        raise _Envelope(f"Invalid value for 'method': only 'POST' is supported, but got {got} instead.", "method")
    if "url" not in data:
        raise _Envelope("Missing required parameter: 'url'.", "url")
    url = data["url"]
    if not isinstance(url, str):
        raise _Envelope(f"Invalid type for 'url': expected a string, but got {_kind(url)} instead.", "url")
    if "body" not in data:
        raise _Envelope("Missing required parameter: 'body'.", "body")
    body = data["body"]
    if not isinstance(body, dict):
        raise _Envelope(f"Invalid type for 'body': expected an object, but got {_kind(body)} instead.", "body")
    return custom_id, method, url, body


def embedding_inputs(body: dict[str, Any]) -> int:
    """How many inputs an /v1/embeddings body holds, as ``protocol.embeddings`` reads ``input``."""
    value = body.get("input")
    if isinstance(value, str):
        return 1
    if isinstance(value, list):
        if value and type(value[0]) is int:
            return 1  # one array of token ids is one input
        return len(value)
    return 0


def estimated_tokens(body: dict[str, Any]) -> int:
    """About four characters a token over every string in the body but ``model``; an integer in an
    array (a token id of a prompt or input) is one token; other numbers (``max_tokens``, ``n``) none."""
    chars = ids = 0
    stack: list[tuple[Any, bool]] = [(v, False) for k, v in body.items() if k != "model"]
    while stack:
        value, in_array = stack.pop()
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, dict):
            stack.extend((v, False) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, True) for v in value)
        elif in_array and isinstance(value, int) and not isinstance(value, bool):
            ids += 1
    return chars // 4 + ids + 1


def _numbered(raw_lines: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """The file's non-blank lines with their 1-based numbers (blank lines count); a BOM on line 1 dropped."""
    for number, raw in enumerate(raw_lines, 1):
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if raw.strip():
            yield number, raw


def read_lines(raw_lines: Iterable[bytes]) -> Iterator[BatchLine]:
    """The request lines of a file ``validate_input`` found valid, streamed."""
    for number, raw in _numbered(raw_lines):
        custom_id, method, url, body = _envelope(_parse(raw))
        yield BatchLine(line=number, custom_id=custom_id, method=method, url=url, body=body)


def _digest(custom_id: str) -> bytes:
    return hashlib.blake2b(custom_id.encode(errors="surrogatepass"), digest_size=16).digest()


def validate_input(
    raw_lines: Iterable[bytes],
    endpoint: str,
    *,
    keep: bool = True,
    max_requests: int = MAX_BATCH_REQUESTS,
    max_errors: int = 100,
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS,
) -> Validated:
    """The batch's model, counts (and lines, with ``keep``), or the errors that fail it (see the module docstring)."""
    lines: list[BatchLine] = []
    errors: list[BatchError] = []
    seen: dict[bytes, int] = {}  # digest of a custom_id -> the line that first used it
    model: str | None = None
    requests = 0
    inputs = 0
    tokens = 0

    def fail(code: str, message: str, line: int | None, param: str | None) -> bool:
        """Record one error; True when collection must stop."""
        if not errors:
            lines.clear()  # a failed batch runs nothing: free what was kept
        errors.append(BatchError(code=code, message=message, line=line, param=param))
        return len(errors) >= max_errors

    for number, raw in _numbered(raw_lines):
        requests += 1
        if requests > max_requests:
            fail(
                "too_many_tasks",
                f"The batch input file has more than the {max_requests} requests allowed in one batch.",
                number,
                None,
            )
            break
        try:
            custom_id, method, url, body = _envelope(_parse(raw))
        except _Envelope as bad:
            if fail("invalid_json_line", bad.message, number, bad.param):
                break
            continue
        stop = False
        digest = _digest(custom_id)
        first = seen.get(digest)
        if first is not None:
            stop = fail(
                "duplicate_custom_id",
                f"The custom_id {_shown(custom_id)} is already used by line {first}; "
                "every request in a batch needs a unique custom_id.",
                number,
                "custom_id",
            )
        else:
            seen[digest] = number
        if not stop and url != endpoint:
            stop = fail(
                "url_mismatch",
                f"The url {_shown(url)} does not match the batch's endpoint '{endpoint}'; "
                "every request in a batch must use the batch's endpoint.",
                number,
                "url",
            )
        if not stop:
            line_model = body.get("model")
            if not isinstance(line_model, str):
                stop = fail(
                    "model_mismatch",
                    "This line's body does not name a model ('body.model' must be a string); "
                    "every request in a batch must name the same model.",
                    number,
                    "body.model",
                )
            elif model is None:
                model = line_model
            elif line_model != model:
                stop = fail(
                    "model_mismatch",
                    f"The model {_shown(line_model)} differs from the batch's model {_shown(model)}; "
                    "every request in a batch must use the same model.",
                    number,
                    "body.model",
                )
        if stop:
            break
        if endpoint == "/v1/embeddings":
            inputs += embedding_inputs(body)
            if inputs > max_embedding_inputs:
                fail(
                    "too_many_tasks",
                    f"The batch's requests hold more than the {max_embedding_inputs} embedding inputs "
                    "allowed in one /v1/embeddings batch.",
                    number,
                    "body.input",
                )
                break
        tokens += estimated_tokens(body)
        if keep and not errors:
            lines.append(BatchLine(line=number, custom_id=custom_id, method=method, url=url, body=body))
    if requests == 0:
        errors.append(
            BatchError(code="empty_file", message="The batch input file is empty: it holds no requests.", line=None, param=None)
        )
    return Validated(model=model, errors=errors, requests=requests, tokens=tokens, lines=lines if not errors else [])
