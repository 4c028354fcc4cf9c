"""Parsing a request body into a wire model, with OpenAI's 400 for anything wrong.

Python's ``json`` accepts NaN/Infinity and raises RecursionError on deep nesting;
both end here as a 400, never a 500. So does a lone UTF-16 surrogate (``"\ud800"`` is valid
JSON but not Unicode, and could not be encoded as UTF-8 later): the 400 names the field. Pydantic errors become one message naming
the offending field in ``param`` (``messages[0].content``), the way OpenAI does.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Tag, ValidationError
from pydantic_core import PydanticCustomError

from faceplate.errors import InvalidRequest

log = logging.getLogger("faceplate.protocol")

M = TypeVar("M", bound=BaseModel)

# Sampling extras that clients of self-hosted servers send; honoured in lenient mode, refused in strict.
NON_OPENAI_FIELDS = ("top_k", "min_p", "repetition_penalty")


# Names of the request models: pydantic puts a union member's class name into an error's loc
# (``tool_choice.NamedToolChoice.type``), and a class name is never part of a client's field path.
_MODEL_NAMES: set[str] = set()


class WireModel(BaseModel):
    """Base of every request model: strict types (no "1" for 1), unknown fields kept so we can log them."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _MODEL_NAMES.add(cls.__name__)

    def unknown_fields(self, prefix: str = "") -> list[str]:
        found = [prefix + k for k in (self.model_extra or {})]
        for name in type(self).model_fields:
            value = getattr(self, name, None)
            if isinstance(value, WireModel):
                found += value.unknown_fields(f"{prefix}{name}.")
        return found


def must_be_object(value: Any) -> Any:
    """Before a union picked by a key: anything but an object is "Invalid type for 'x'", not a complaint about 'x.type'."""
    if not isinstance(value, dict | BaseModel):
        raise PydanticCustomError("model_type", "expected an object")
    return value


def tagged_union(*models: type[BaseModel], key: str = "type") -> Any:
    """A union picked by ``key`` whose branch tag (``type:text``) never leaks into an error's param."""

    def tag_of(value: Any) -> str:
        found = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
        return f"{key}:{found}"

    members = [Annotated[m, Tag(f"{key}:{m.model_fields[key].annotation.__args__[0]}")] for m in models]  # type: ignore[union-attr]
    allowed = ", ".join(repr(m.model_fields[key].annotation.__args__[0]) for m in models)  # type: ignore[union-attr]
    return Annotated[
        Union[tuple(members)],  # noqa: UP007 - built at run time
        Discriminator(tag_of, custom_error_type="invalid_tag", custom_error_message=f"'{key}' must be one of {allowed}"),
        BeforeValidator(must_be_object),
    ]


def array_too_long(param: str, limit: int, got: int) -> InvalidRequest:
    """OpenAI's 400 for an array past its maximum length."""
    return InvalidRequest(
        f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, "
        f"but got an array with length {got} instead.",
        param=param,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# A lone surrogate can only come from a \uD800-\uDFFF escape, from UTF-8-encoded surrogate bytes
# (json decodes with surrogatepass), or from a UTF-16/32 body: only then is the parsed body searched.
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _may_hold_surrogates(raw: bytes) -> bool:
    return b"\x00" in raw[:4] or raw[:2] in (b"\xff\xfe", b"\xfe\xff") or _SURROGATE_HINT.search(raw) is not None


def _path(link: tuple[Any, str | int] | None) -> str | None:
    """``messages[0].content`` from the linked (parent, key) chain the search keeps."""
    parts: list[str | int] = []
    while link is not None:
        link, item = link
        parts.append(item)
    out = ""
    for item in reversed(parts):
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else item)
    return out or None


def _check_surrogates(data: Any) -> None:
    """Raise InvalidRequest naming the first string (key or value, any depth) that holds a lone surrogate.

    Iterative, with each node's path kept as a link to its parent's, so depth and size cost linear time.
    """
    todo: list[tuple[Any, tuple[Any, str | int] | None]] = [(data, None)]
    while todo:
        node, link = todo.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        nested: list[tuple[Any, tuple[Any, str | int] | None]] = []
        for key, value in items:
            if isinstance(key, str) and _SURROGATE.search(key):
                where = _path(link)
                place = f"'{where}'" if where else "the request body"
                raise InvalidRequest(
                    f"Invalid key in {place}: "
                    "a key holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), which is not valid Unicode.",
                    param=where,
                )
            if isinstance(value, str):
                if _SURROGATE.search(value):
                    where = _path((link, key))
                    raise InvalidRequest(
                        f"Invalid value for '{where}': the string holds a lone UTF-16 surrogate "
                        "(an unpaired \\ud800-\\udfff escape), which is not valid Unicode.",
                        param=where,
                    )
            elif isinstance(value, dict | list):
                nested.append((value, (link, key)))
        todo.extend(reversed(nested))  # children in order, depth first


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body is empty. "
            "(HINT: send a JSON object with Content-Type: application/json.)"
        )
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidRequest("We could not parse the JSON body of your request: it is nested too deeply.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request. ({exc}) "
            "(HINT: This likely means you aren't using your HTTP library correctly. "
            "The OpenAI API expects a JSON payload.)"
        ) from None
    if isinstance(data, dict | list) and _may_hold_surrogates(raw):
        _check_surrogates(data)
    return data


_KINDS = {
    "NoneType": "null",
    "str": "a string",
    "int": "an integer",
    "float": "a decimal",
    "list": "an array",
    "dict": "an object",
    "bool": "a boolean",
}


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in the words of OpenAI's messages ("an array", "null")."""
    name = type(value).__name__
    return _KINDS.get(name, name)


# Loc items pydantic adds for union members and tagged branches, which are not field names.
def _is_union_marker(item: str) -> bool:
    return (
        item in {"str", "int", "float", "bool", "list", "dict", "none"}
        or item in _MODEL_NAMES
        or any(c in item for c in "[(:")
        or item.startswith("function-")
    )


def param_from_loc(loc: tuple[int | str, ...]) -> str | None:
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif not _is_union_marker(item):
            out += f".{item}" if out else item
    return out or None


def _describe(err: dict[str, Any], param: str | None) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    where = f"'{param}'" if param else "the request body"
    if kind == "missing":
        return f"Missing required parameter: {where}."
    if kind.endswith("_type") or kind in {"model_type", "model_attributes_type", "is_instance_of"}:
        return f"Invalid type for {where}: {msg.lower()}, but got {json_kind(err.get('input'))} instead."
    if kind == "union_tag_invalid" or kind == "literal_error" or kind == "enum":
        return f"Invalid value for {where}: {msg}."
    return f"Invalid value for {where}: {msg.removeprefix('Value error, ')}."


def _most_specific(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Among a union's alternatives, the error that got furthest into the input says most."""

    def depth(err: dict[str, Any]) -> tuple[int, int]:
        real = [i for i in err["loc"] if isinstance(i, int) or not _is_union_marker(i)]
        return (len(real), 0 if err["type"].endswith("_type") else 1)

    return max(errors, key=depth)


def validation_error(exc: ValidationError) -> InvalidRequest:
    err = _most_specific(exc.errors(include_url=False))
    param = param_from_loc(tuple(err["loc"]))
    if err["type"] in ("invalid_role", "invalid_tag"):
        field = "role" if err["type"] == "invalid_role" else "type"
        param = f"{param}.{field}" if param else field
        return InvalidRequest(f"Invalid value for '{param}': {err['msg']}.", param=param)
    return InvalidRequest(_describe(err, param), param=param)


def parse_request(raw: bytes, model: type[M], *, endpoint: str, strict: bool = False) -> M:
    """The wire model, or OpenAI's 400. ``strict``: unknown fields and non-OpenAI extras are refused, as OpenAI does."""
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise InvalidRequest(f"Invalid type for the request body: expected an object, but got {json_kind(data)} instead.")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    except RecursionError:
        raise InvalidRequest("The request is nested too deeply.") from None
    if isinstance(parsed, WireModel):
        extra = parsed.unknown_fields()
        if strict:
            extra += [k for k in NON_OPENAI_FIELDS if k in data]
            if extra:
                raise InvalidRequest(f"Unrecognized request argument supplied: {', '.join(sorted(extra))}")
        elif extra:
            # Lenient: accepted and logged, so clients written for other servers keep working.
            log.info("%s: ignoring unrecognised request fields: %s", endpoint, ", ".join(sorted(extra)))
    return parsed
