"""Conformance validator against OpenAI's published OpenAPI document (tests/openapi.json).

The document is loaded once and normalised to plain JSON Schema 2020-12 (see
``document``), then registered as a single ``referencing`` resource so every inner
``#/components/schemas/...`` reference resolves on its own. Two profiles exist:

* ``strict``  - the document as published, plus the OpenAPI-3.0 fixes of ``_fix_openapi30``
  (`nullable`, boolean `exclusiveMinimum`, `$recursiveRef`).
* ``lenient`` - additionally, every property that is *not* in its object's ``required``
  list may be null (OpenAI itself sends ``system_fingerprint: null`` and the like).
  Limitation: ``required`` is read per object schema, so a property declared in one
  ``allOf`` member but required by a sibling member is treated as optional.

Endpoint quirks (legacy completion chunks, base64 embeddings) are handled by derived
schemas added next to the originals under ``Faceplate*`` names, never by editing the
instance. Compiled validators are cached per (schema, profile): the hot path (one call per
stream chunk) is a cached lookup plus ``iter_errors``.
"""

from __future__ import annotations

import copy
import heapq
import json
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, relevance
from referencing import Registry
from referencing.jsonschema import DRAFT202012

if TYPE_CHECKING:
    from referencing._core import Resolver  # not re-exported by `referencing`

Schema = dict[str, Any]
Profile = Literal["strict", "lenient"]
PROFILES: tuple[Profile, ...] = ("strict", "lenient")

SPEC_PATH = Path(__file__).resolve().with_name("openapi.json")
BASE_URI = "urn:faceplate:openai-openapi"  # the document has no $id of its own
_SCHEMAS = "#/components/schemas/"

# Keywords holding subschemas (map of schemas / one schema / list of schemas).
_MAP_KW = ("properties", "patternProperties", "$defs", "dependentSchemas")
_ONE_KW = (
    "additionalProperties",
    "items",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
)
_LIST_KW = ("allOf", "anyOf", "oneOf", "prefixItems")
# Keywords that never constrain an instance; a schema made only of these accepts anything.
_ANNOTATIONS = frozenset(
    {"description", "title", "default", "example", "examples", "deprecated", "readOnly", "writeOnly", "discriminator"}
)


# --------------------------------------------------------------------------- transforms


def _walk(schema: Any, fn: Callable[[Schema], Schema]) -> Any:
    """Return a copy of ``schema`` with ``fn`` applied pre-order to every subschema.

    Schema-aware on purpose: a property *named* ``nullable`` or ``properties`` is a key of
    a ``properties`` map, not a keyword, and examples/extensions are never descended into.
    """
    if not isinstance(schema, dict):
        return schema
    node = fn(dict(schema))
    for kw in _MAP_KW:
        if isinstance(node.get(kw), dict):
            node[kw] = {k: _walk(v, fn) for k, v in node[kw].items()}
    for kw in _ONE_KW:
        if kw in node:
            node[kw] = _walk(node[kw], fn)
    for kw in _LIST_KW:
        if isinstance(node.get(kw), list):
            node[kw] = [_walk(v, fn) for v in node[kw]]
    return node


def _is_annotation(key: str) -> bool:
    return key in _ANNOTATIONS or key.startswith("x-")


def _accepts_null(schema: Any) -> bool:
    """Cheap, conservative check used only to avoid wrapping a schema twice."""
    if not isinstance(schema, dict):
        return schema is True
    rest = {k for k in schema if not _is_annotation(k)}
    if not rest:
        return True
    if rest == {"anyOf"}:
        return any(isinstance(m, dict) and m.get("type") == "null" for m in schema["anyOf"])
    t = schema.get("type")
    return (t == "null" or (isinstance(t, list) and "null" in t)) and ("enum" not in schema or None in schema["enum"])


def or_null(schema: Schema) -> Schema:
    """``schema`` widened to also accept null."""
    if _accepts_null(schema):
        return schema
    t = schema.get("type")
    # Plain typed schema: widen ``type`` (and ``enum``) in place; keeps error messages flat.
    if isinstance(t, (str, list)) and not {"$ref", "const", "not", *_LIST_KW} & schema.keys():
        out = {**schema, "type": [*([t] if isinstance(t, str) else t), "null"]}
        if "enum" in schema:
            out["enum"] = [*schema["enum"], None]
        return out
    # $ref (with siblings), allOf/anyOf/oneOf, const: wrap, since ANDed keywords reject null.
    return {"anyOf": [schema, {"type": "null"}]}


def _fix_openapi30(name: str) -> Callable[[Schema], Schema]:
    """Per-node rewrite of OpenAPI-3.0 leftovers that 2020-12 validators ignore or misread."""

    def fix(node: Schema) -> Schema:
        nullable = node.pop("nullable", False) is True
        # `allOf: [{$ref: X}, {nullable: true}]` means "X or null"; the nullable member is
        # useless on its own (an empty schema), so lift it onto the allOf.
        members = node.get("allOf")
        if isinstance(members, list):
            bare = [
                m
                for m in members
                if isinstance(m, dict) and "nullable" in m and all(_is_annotation(k) for k in m if k != "nullable")
            ]
            if bare:
                node["allOf"] = [m for m in members if m not in bare]
                nullable = nullable or any(m["nullable"] is True for m in bare)
        # 3.0 boolean exclusiveMinimum/Maximum -> 2020-12 numeric form.
        for excl, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(node.get(excl), bool) and node.pop(excl) and bound in node:
                node[excl] = node.pop(bound)
        # 2019-09 `$recursiveRef: "#"` (unknown to 2020-12, so silently unchecked) points
        # at the enclosing top-level schema in this document.
        if node.get("$recursiveRef") == "#":
            node["$ref"] = _SCHEMAS + name
            del node["$recursiveRef"]
        node.pop("$recursiveAnchor", None)
        return or_null(node) if nullable else node

    return fix


def _lenient(node: Schema) -> Schema:
    props = node.get("properties")
    if isinstance(props, dict):
        required = set(node.get("required", ()))
        node["properties"] = {k: v if k in required else or_null(v) for k, v in props.items()}
    return node


def _derived(schemas: dict[str, Schema]) -> dict[str, Schema]:
    """Endpoint-specific variants of published schemas (built from the fixed strict ones)."""
    chunk = copy.deepcopy(schemas["CreateCompletionResponse"])
    choice = chunk["properties"]["choices"]["items"]["properties"]
    # Legacy /completions streams reuse the non-stream schema; mid-stream chunks carry
    # `finish_reason: null`.
    choice["finish_reason"] = or_null(choice["finish_reason"])

    embedding = copy.deepcopy(schemas["Embedding"])
    # SDKs default to encoding_format=base64: the vector is then a base64 string
    # (little-endian float32) instead of an array of numbers.
    embedding["properties"]["embedding"] = {
        "anyOf": [
            embedding["properties"]["embedding"],
            {
                "type": "string",
                "contentEncoding": "base64",
                "pattern": r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
            },
        ]
    }
    embeddings = copy.deepcopy(schemas["CreateEmbeddingResponse"])
    embeddings["properties"]["data"]["items"] = {"$ref": _SCHEMAS + "FaceplateEmbedding"}

    # The spec accepts purpose=evals on upload (CreateFileRequest) but leaves it out of the File
    # object's enum; OpenAI echoes it (probed, docs/files.md), so the derived File accepts it too.
    file = copy.deepcopy(schemas["OpenAIFile"])
    file["properties"]["purpose"]["enum"] = [*file["properties"]["purpose"]["enum"], "evals"]
    files = copy.deepcopy(schemas["ListFilesResponse"])
    files["properties"]["data"]["items"] = {"$ref": _SCHEMAS + "FaceplateFile"}

    return {
        "FaceplateCompletionChunk": chunk,
        "FaceplateEmbedding": embedding,
        "FaceplateCreateEmbeddingResponse": embeddings,
        "FaceplateFile": file,
        "FaceplateListFilesResponse": files,
    }


# --------------------------------------------------------------------------- loading


@lru_cache(maxsize=1)
def raw_document() -> dict[str, Any]:
    """The document exactly as published (do not mutate)."""
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


@cache
def document(profile: Profile = "lenient") -> dict[str, Any]:
    """The document with ``components.schemas`` normalised for ``profile``.

    Only ``components.schemas`` is rewritten: every ``$ref`` in the document points there.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    raw = raw_document()
    if profile == "strict":
        schemas = {n: _walk(s, _fix_openapi30(n)) for n, s in raw["components"]["schemas"].items()}
        schemas.update(_derived(schemas))
    else:
        strict = document("strict")["components"]["schemas"]
        schemas = {n: _walk(s, _lenient) for n, s in strict.items()}
    return {**raw, "components": {**raw["components"], "schemas": schemas}}


@cache
def _registry(profile: Profile) -> Registry:
    resource = DRAFT202012.create_resource(document(profile))
    return Registry().with_resource(BASE_URI, resource).crawl()


@cache
def _resolver(profile: Profile) -> Resolver:
    return _registry(profile).resolver(BASE_URI)


@cache
def validator(schema_name: str, profile: Profile = "lenient") -> Draft202012Validator:
    """Compiled validator for ``#/components/schemas/<schema_name>`` (cached)."""
    if schema_name not in document(profile)["components"]["schemas"]:
        raise KeyError(f"no schema {schema_name!r} in {SPEC_PATH.name}")
    return Draft202012Validator({"$ref": f"{BASE_URI}{_SCHEMAS}{schema_name}"}, registry=_registry(profile))


# --------------------------------------------------------------------------- reporting


def _consts(schema: Any, prop: str, resolver: Resolver, seen: set[str]) -> set[Any]:
    """Values ``schema`` allows for ``instance[prop]`` via const/enum (following refs)."""
    if not isinstance(schema, dict):
        return set()
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref in seen:
            return set()
        seen.add(ref)
        schema = {**schema, **resolver.lookup(ref).contents}
        del schema["$ref"]
    out: set[Any] = set()
    sub = schema.get("properties", {}).get(prop)
    if isinstance(sub, dict):
        out |= _values(sub, resolver, seen)
    for kw in ("allOf", "anyOf", "oneOf"):
        for member in schema.get(kw, ()):
            out |= _consts(member, prop, resolver, seen)
    return out


def _values(schema: Any, resolver: Resolver, seen: set[str]) -> set[Any]:
    if not isinstance(schema, dict):
        return set()
    if "$ref" in schema and schema["$ref"] not in seen:
        seen.add(schema["$ref"])
        return _values(resolver.lookup(schema["$ref"]).contents, resolver, seen)
    out = {v for v in schema.get("enum", ()) if isinstance(v, (str, int, bool))}
    if isinstance(schema.get("const"), (str, int, bool)):
        out.add(schema["const"])
    for kw in ("allOf", "anyOf", "oneOf"):
        for member in schema.get(kw, ()):
            out |= _values(member, resolver, seen)
    return out


def _branch(err: ValidationError, resolver: Resolver) -> tuple[int | None, str] | None:
    """Index and label of the anyOf/oneOf branch the instance's discriminator selects.

    None when the instance has no discriminator value; index None when no branch has it.
    """
    inst = err.instance
    disc = err.schema.get("discriminator") if isinstance(err.schema, dict) else None
    prop = disc.get("propertyName", "type") if isinstance(disc, dict) else "type"
    if not isinstance(inst, dict) or not isinstance(inst.get(prop), (str, int, bool)):
        return None
    value = inst[prop]
    mapped = disc.get("mapping", {}).get(value) if isinstance(disc, dict) else None
    for i, member in enumerate(err.validator_value):
        ref = member.get("$ref") if isinstance(member, dict) else None
        if (mapped is not None and ref == mapped) or (mapped is None and value in _consts(member, prop, resolver, set())):
            label = ref.rsplit("/", 1)[-1] if ref else f"{err.validator}[{i}]"
            return i, f"{label} (by {prop}={value!r})"
    return None, f"no {err.validator} branch has {prop}={value!r}"


def _explain(err: ValidationError, resolver: Resolver, notes: list[str]) -> ValidationError:
    """Descend into anyOf/oneOf failures, following the discriminator when there is one.

    Without a discriminator this mirrors ``jsonschema.exceptions.best_match``'s descent.
    """
    while err.context:
        picked = _branch(err, resolver) if err.validator in ("anyOf", "oneOf") else None
        if picked is not None:
            notes.append(picked[1])
            pool = [e for e in err.context if e.relative_schema_path[0] == picked[0]]
            if not pool:
                break
            err = max(pool, key=relevance)
            continue
        smallest = heapq.nsmallest(2, err.context, key=relevance)
        if len(smallest) == 2 and relevance(smallest[0]) == relevance(smallest[1]):
            break  # ambiguous: report the anyOf/oneOf failure itself
        err = smallest[0]
    return err


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


def _message(instance: Any, schema_name: str, profile: Profile, errors: list[ValidationError]) -> str:
    notes: list[str] = []
    err = _explain(max(errors, key=relevance), _resolver(profile), notes)
    lines = [
        f"{schema_name} ({profile}): {err.json_path}: {_short(err.message)}",
        f"  schema path: {'/'.join(map(str, err.absolute_schema_path))}",
    ]
    if notes:
        lines.append("  branch: " + " -> ".join(notes))
    if len(errors) > 1:
        lines.append(f"  (+{len(errors) - 1} more top-level error(s))")
    lines.append("  instance: " + _short(json.dumps(instance, default=repr)))
    return "\n".join(lines)


# --------------------------------------------------------------------------- public API


def validate(instance: Any, schema_name: str, profile: Profile = "lenient") -> None:
    """Raise AssertionError with a readable message unless ``instance`` conforms."""
    v = validator(schema_name, profile)
    first = next(v.iter_errors(instance), None)
    if first is None:  # fast path: one lazy pass, nothing collected
        return
    raise AssertionError(_message(instance, schema_name, profile, list(v.iter_errors(instance))))


def is_valid(instance: Any, schema_name: str, profile: Profile = "lenient") -> bool:
    return validator(schema_name, profile).is_valid(instance)


def validate_any(body: Any, schema_name: str, profile: Profile = "lenient") -> None:
    validate(body, schema_name, profile)


def validate_chat_completion(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "CreateChatCompletionResponse", profile)


def validate_chat_chunk(chunk: Any, profile: Profile = "lenient") -> None:
    validate(chunk, "CreateChatCompletionStreamResponse", profile)


def validate_completion(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "CreateCompletionResponse", profile)


def validate_completion_chunk(chunk: Any, profile: Profile = "lenient") -> None:
    """Legacy /completions stream chunk: CreateCompletionResponse with nullable finish_reason."""
    validate(chunk, "FaceplateCompletionChunk", profile)


def validate_embeddings(body: Any, profile: Profile = "lenient") -> None:
    """CreateEmbeddingResponse, also accepting base64 strings for ``data[i].embedding``."""
    validate(body, "FaceplateCreateEmbeddingResponse", profile)


def validate_error(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "ErrorResponse", profile)


def validate_model(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "Model", profile)


def validate_model_list(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "ListModelsResponse", profile)


def validate_response(body: Any, profile: Profile = "lenient") -> None:
    """A Responses API ``Response`` (create, retrieve, cancel). ``usage: null`` / ``user: null`` pass only leniently."""
    validate(body, "Response", profile)


def validate_response_event(event: Any, profile: Profile = "lenient") -> None:
    """One Responses SSE event, and its integer ``sequence_number`` checked outright (clients order and resume by it)."""
    validate(event, "ResponseStreamEvent", profile)
    seq = event.get("sequence_number") if isinstance(event, dict) else None
    # bool is an int in Python but not in JSON: true must not pass as a sequence number.
    if not isinstance(seq, int) or isinstance(seq, bool):
        shown = _short(json.dumps(event, default=repr))
        raise AssertionError(f"ResponseStreamEvent: sequence_number must be an integer, got {seq!r} in {shown}")


def validate_response_item_list(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "ResponseItemList", profile)


def validate_input_tokens(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "TokenCountsResource", profile)


def validate_conversation(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "ConversationResource", profile)


def validate_conversation_deleted(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "DeletedConversationResource", profile)


def validate_conversation_item_list(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "ConversationItemList", profile)


def validate_conversation_item(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "ConversationItem", profile)


def validate_file(body: Any, profile: Profile = "lenient") -> None:
    """OpenAIFile, with ``purpose: evals`` allowed (the spec accepts it on upload but forgot it here)."""
    validate(body, "FaceplateFile", profile)


def validate_file_list(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "FaceplateListFilesResponse", profile)


def validate_batch(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "Batch", profile)


def validate_batch_list(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "ListBatchesResponse", profile)


def validate_file_deleted(body: Any, profile: Profile = "lenient") -> None:
    validate(body, "DeleteFileResponse", profile)
