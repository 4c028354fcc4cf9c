"""Property-based fuzzing of the real server with Schemathesis, OpenAI's OpenAPI document as the oracle.

Every operation Faceplate serves is fuzzed with requests generated from ``tests/openapi.json``,
valid and invalid alike, against a server process of its own (what it creates stays out of the
session server's lists). Checks on every answer:

* ``not_a_server_error``: no 5xx, ever;
* ``response_schema_conformance``: a documented answer (a 200) matches its schema, streams event
  by event;
* ``faceplate_conformance``: the same answer through the project's own oracle
  (``tests.conformance.validate_body``), which also holds every 4xx to OpenAI's error envelope
  and checks the streams the document has no schema for (legacy completions, replays).

A 400 for something OpenAI accepts but Faceplate documents as refused (images, hosted tools,
``suffix``, ``n`` past the engine's slots ...) is fine; a 5xx or a malformed body is not.

The document is the lenient profile of ``tests.spec`` (OpenAPI 3.0 leftovers fixed, optional
fields nullable), with the answers the spec gets wrong pointed at the project's derived schemas.
Generation is seeded and derandomized, with no example database: CI runs the same requests
every time. Bodies go to the served models, with output kept to a few tokens; about half the
ids in paths are swapped for objects that exist (a stored response, a conversation and its
item, a file, a batch, a model), so retrieval, listing and replay run on real data too.
"""

from __future__ import annotations

import copy
import json
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from tests import spec
from tests.conformance import validate_body
from tests.e2e.conftest import E2E_KEY
from tests.e2e.hostile_helpers import AUTH, assert_healthy, server_errors
from tests.e2e.keys_helpers import CHAT
from tests.serverproc import ServerProcess, start_server

EMBED = "all-minilm-l6-v2"
MAX_EXAMPLES = 20  # per operation: about 90 s in all on two cores, the server included
SEED = 20260821  # the document's date

OPERATIONS = [
    "createChatCompletion",
    "createCompletion",
    "createEmbedding",
    "listModels",
    "retrieveModel",
    "createResponse",
    "getResponse",
    "deleteResponse",
    "cancelResponse",
    "listInputItems",
    "Getinputtokencounts",
    "createConversation",
    "getConversation",
    "updateConversation",
    "deleteConversation",
    "createConversationItems",
    "listConversationItems",
    "getConversationItem",
    "deleteConversationItem",
    "createFile",
    "listFiles",
    "retrieveFile",
    "deleteFile",
    "downloadFile",
    "createBatch",
    "listBatches",
    "retrieveBatch",
    "cancelBatch",
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def fuzz_document() -> dict[str, Any]:
    """``tests.spec``'s lenient document, with the answers it documents wrongly pointed at the derived schemas."""
    doc = copy.deepcopy(spec.document("lenient"))
    paths = doc["paths"]

    def answer(path: str, method: str, status: str = "200", media: str = "application/json") -> dict[str, Any]:
        return paths[path][method]["responses"][status]["content"].setdefault(media, {})

    # The two errors the spec documents (404 on deleting or cancelling a response) are a bare Error;
    # OpenAI sends {"error": Error} there too, as everywhere.
    for content in _contents(paths):
        if content.get("application/json", {}).get("schema") == _ref("Error"):
            content["application/json"]["schema"] = _ref("ErrorResponse")
    # Base64 embeddings (the SDKs' default) and purpose=evals files: see tests/spec.py's derived schemas.
    answer("/embeddings", "post")["schema"] = _ref("FaceplateCreateEmbeddingResponse")
    answer("/files", "post")["schema"] = _ref("FaceplateFile")
    answer("/files/{file_id}", "get")["schema"] = _ref("FaceplateFile")
    answer("/files", "get")["schema"] = _ref("FaceplateListFilesResponse")
    # Legacy completion streams: chunks are CreateCompletionResponse with finish_reason null until the end.
    answer("/completions", "post", media="text/event-stream")["schema"] = _ref("FaceplateCompletionChunk")
    # An event stream's schema is its events' data, JSON, ending with [DONE] (Responses streams do not);
    # Schemathesis reads an OpenAPI 3.1 event-stream schema as the event ({data, event, id}) itself.
    for content in _contents(paths):
        if "schema" in content.get("text/event-stream", {}):
            content["text/event-stream"]["schema"] = _event(content["text/event-stream"]["schema"])
    # The item unions' discriminators name no mapping, so OpenAPI reads the branch's schema name ("Message")
    # where OpenAI sends type "message". JSON Schema ignores the keyword: without it every branch is still checked.
    return _without_discriminators(doc)


def _contents(paths: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The ``content`` map of every documented answer of every operation."""
    for operations in paths.values():
        for operation in operations.values():
            for reply in operation.get("responses", {}).values() if isinstance(operation, dict) else ():
                yield reply.setdefault("content", {})


def _event(data: dict[str, Any]) -> dict[str, Any]:
    json_data = {"contentMediaType": "application/json", "contentSchema": data}
    return {"type": "object", "required": ["data"], "properties": {"data": {"if": {"const": "[DONE]"}, "else": json_data}}}


def _without_discriminators(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_discriminators(v) for v in node]
    if not isinstance(node, dict):
        return node
    return {
        k: _without_discriminators(v)
        for k, v in node.items()
        if not (k == "discriminator" and isinstance(v, dict) and "propertyName" in v)
    }


CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "headers": {"Authorization": f"Bearer {E2E_KEY}"},
        "request-timeout": 60,
        "suppress-health-check": ["all"],  # generation speed varies with the machine; it is no finding
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
        },
    }
)
schema = schemathesis.openapi.from_dict(fuzz_document(), config=CONFIG).include(operation_id=OPERATIONS)


def _operation(ctx: Any) -> str | None:
    return ctx.operation.definition.raw.get("operationId") if ctx.operation is not None else None


def _clamp(body: dict[str, Any], key: str, low: int, high: int) -> None:
    if isinstance(body.get(key), int) and not isinstance(body[key], bool):
        body[key] = min(max(body[key], low), high)


@schema.hook
def map_body(ctx: Any, body: Any) -> Any:
    """Generation requests go to the served models and stay a few tokens long (a generated request could ask for 8,192)."""
    if not isinstance(body, dict):
        return body
    op = _operation(ctx)
    body = dict(body)
    if op == "createChatCompletion":
        body.update(model=CHAT, max_completion_tokens=2)
        body.pop("max_tokens", None)
        _clamp(body, "n", 1, 2)
    elif op == "createCompletion":
        body.update(model=CHAT, max_tokens=2)
        _clamp(body, "n", 1, 2)
        _clamp(body, "best_of", 1, 2)
    elif op == "createResponse":
        body.update(model=CHAT, max_output_tokens=16)  # OpenAI's minimum
    elif op == "createEmbedding":
        body.update(model=EMBED)
    return body


REAL: dict[str, str] = {}  # path parameter -> the id of an object the fuzz server holds (``fuzz_server``)


@schema.hook
def map_path_parameters(ctx: Any, path_parameters: dict[str, Any]) -> dict[str, Any]:
    """About half the time (by a stable hash of what was generated), an id that exists; never for a DELETE."""
    if ctx.operation is None or ctx.operation.method.upper() == "DELETE":
        return path_parameters
    if zlib.crc32(json.dumps(path_parameters, sort_keys=True).encode()) % 2:
        return path_parameters
    return {k: REAL.get(k, v) for k, v in path_parameters.items()}


def faceplate_conformance(ctx: Any, response: Any, case: Any) -> None:
    """Every answer through the project's oracle: 4xx as the error envelope, 2xx and their streams by route."""
    ctype = (response.headers.get("content-type") or [""])[0]
    body = response.content
    if response.stream_cut_short:  # read only so far: its whole events are checked
        body = body[: body.rfind(b"\n\n") + 2]
    validate_body(case.method, httpx.URL(response.request.url).path, response.status_code, ctype, body)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of the fuzz's own, with the bundled models, whose log is checked for failures at the end."""
    srv = start_server(["--api-key", E2E_KEY], log_dir=tmp_path_factory.mktemp("fuzz"))
    REAL.update(real_objects(srv))
    yield srv
    try:
        assert_healthy(srv)
        failures = server_errors(srv.log())
        assert not failures, "the fuzz made the server fail:\n" + "\n".join(failures[:20])
    finally:
        srv.stop()


def real_objects(srv: ServerProcess) -> dict[str, str]:
    """One of each object a path can name, made through the API."""
    with httpx.Client(base_url=srv.base_url, headers=AUTH, timeout=60) as api:

        def made(path: str, **kw: Any) -> dict[str, Any]:
            r = api.post(path, **kw)
            assert r.status_code == 200, r.text
            return dict(r.json())

        response = made("/responses", json={"model": CHAT, "input": "Say hi.", "max_output_tokens": 16})
        conversation = made("/conversations", json={"items": [{"type": "message", "role": "user", "content": "Hello"}]})
        item = api.get(f"/conversations/{conversation['id']}/items").json()["data"][0]
        line = {
            "custom_id": "a",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
        }
        upload = {"file": ("in.jsonl", json.dumps(line).encode() + b"\n")}
        file = made("/files", data={"purpose": "batch"}, files=upload)
        batch = made(
            "/batches", json={"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        )
    return {
        "response_id": response["id"],
        "conversation_id": conversation["id"],
        "item_id": item["id"],
        "file_id": file["id"],
        "batch_id": batch["id"],
        "model": CHAT,
    }


@schema.parametrize()
def test_fuzz(case: Any, fuzz_server: ServerProcess) -> None:
    case.call_and_validate(base_url=fuzz_server.base_url, additional_checks=[faceplate_conformance])


def test_the_fuzz_covers_every_served_operation() -> None:
    found = {op.ok().definition.raw.get("operationId") for op in schema.get_all_operations()}
    assert found == set(OPERATIONS)
