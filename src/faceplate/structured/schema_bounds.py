"""Tighten a JSON schema so a small model's constrained answer closes on its own.

Under a grammar, a 135M model happily writes array items, nested children and string
characters until max_tokens, and the answer comes back truncated (invalid JSON). Every
bound added here only narrows what the grammar allows, so anything generated still
validates against the *original* schema:

- arrays without ``maxItems`` get one (fewer for arrays of objects/arrays);
- strings without ``maxLength`` (and without a pattern/format/enum) get one;
- integers without bounds get +/- 10**15 (digits are repetition too);
- an object with declared properties and no ``additionalProperties`` gets ``false`` (no invented
  keys); a free-form object (``{"type": "object"}``, json_object mode) gets at most a few keys,
  each holding a bounded JSON value;
- recursive ``$ref``s are unrolled to a fixed depth; past it the reference becomes ``false``
  (nothing), so an optional child, an empty array or another ``anyOf`` branch is the only way on.

Inlining is bounded: every node visited and every value copied into the result counts
against ``Bounds.max_nodes``, and a schema that needs more (definitions that each reference
the next one twice grow exponentially when inlined: a 2 KB schema can ask for millions of
nodes) is refused with a 400 the moment the budget runs out, never after the work is done.
A result within the budget but larger than ``max_size`` bytes falls back to the original
schema, untightened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from faceplate.errors import InvalidRequest

DEFAULT_PARAM = "response_format.json_schema.schema"


@dataclass(frozen=True)
class Bounds:
    max_items_scalar: int = 8
    max_items_nested: int = 4
    max_string_length: int = 128
    max_abs_integer: int = 10**15
    max_properties: int = 8  # for objects whose keys the schema leaves open
    any_depth: int = 2  # nesting allowed where the schema says "any JSON value"
    max_depth: int = 3  # how many times one recursive definition may be entered on a path
    max_size: int = 256 * 1024  # bytes of the rewritten schema
    max_nodes: int = 20_000  # nodes visited or emitted while inlining; more is a 400


class _Budget:
    """Counts the walk's work and what it emits; raises InvalidRequest as soon as it is spent."""

    def __init__(self, limit: int, param: str) -> None:
        self.limit = limit
        self.param = param
        self.used = 0
        self._weights: dict[int, int] = {}

    def spend(self, n: int = 1) -> None:
        self.used += n
        if self.used > self.limit:
            raise InvalidRequest(
                f"The JSON schema is too complex: inlining its $refs takes more than {self.limit} nodes "
                "(definitions that reference each other grow exponentially). Reduce the nesting or the references.",
                param=self.param,
            )

    def weight(self, value: Any) -> int:
        """JSON nodes in ``value`` (a part of the input, shared into the result as is); each container counted once."""
        if not isinstance(value, dict | list):
            return 1
        known = self._weights.get(id(value))
        if known is None:
            items = value.values() if isinstance(value, dict) else value
            known = self._weights[id(value)] = 1 + sum(self.weight(v) for v in items)
        return known


def _resolve(root: dict[str, Any], ref: str) -> tuple[str, Any] | None:
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return ref, node


def _is_nested(items: Any, root: dict[str, Any]) -> bool:
    if not isinstance(items, dict):
        return False
    if "$ref" in items:
        target = _resolve(root, items["$ref"])
        items = target[1] if target else {}
    kinds = items.get("type") if isinstance(items, dict) else None
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return bool({"object", "array"} & set(kinds)) or any(k in items for k in ("properties", "items", "anyOf", "oneOf"))


def any_value(bounds: Bounds, depth: int) -> dict[str, Any]:
    """Any JSON value, with the same bounds as everything else, nested at most ``depth`` deep."""
    options: list[dict[str, Any]] = [
        {"type": "string", "maxLength": bounds.max_string_length},
        {"type": "integer", "minimum": -bounds.max_abs_integer, "maximum": bounds.max_abs_integer},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
    ]
    if depth > 0:
        inner = any_value(bounds, depth - 1)
        options.append({"type": "array", "items": inner, "maxItems": bounds.max_items_nested})
        options.append({"type": "object", "additionalProperties": inner, "maxProperties": bounds.max_properties})
    return {"anyOf": options}


def tighten(schema: Any, bounds: Bounds = Bounds(), param: str = DEFAULT_PARAM) -> Any:
    """The schema with bounds added and ``$ref``s inlined; InvalidRequest (naming ``param``) past ``bounds.max_nodes``."""
    if not isinstance(schema, dict):
        return schema
    root = schema
    budget = _Budget(bounds.max_nodes, param)
    free_value = any_value(bounds, bounds.any_depth)
    free_weight = budget.weight(free_value)

    def walk(node: Any, stack: tuple[str, ...]) -> Any:
        budget.spend()
        if isinstance(node, list):
            return [walk(x, stack) for x in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node and isinstance(node["$ref"], str):
            target = _resolve(root, node["$ref"])
            if target is not None:
                ref, body = target
                if stack.count(ref) >= bounds.max_depth:
                    return False
                siblings = {k: v for k, v in node.items() if k not in ("$ref", "$defs", "definitions")}
                inlined = walk(body, (*stack, ref))  # walk builds new nodes: the input is never changed
                if siblings and isinstance(inlined, dict):
                    return {"allOf": [inlined, walk(siblings, stack)]}
                return inlined
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("$defs", "definitions"):
                continue  # every reference is inlined
            if key in ("properties", "patternProperties", "dependentSchemas") and isinstance(value, dict):
                out[key] = {k: walk(v, stack) for k, v in value.items()}
            elif key in (
                "items",
                "additionalProperties",
                "not",
                "contains",
                "if",
                "then",
                "else",
                "prefixItems",
                "allOf",
                "anyOf",
                "oneOf",
            ):
                out[key] = walk(value, stack)
            else:
                budget.spend(budget.weight(value))  # shared, not copied, but emitted with the result all the same
                out[key] = value
        types = out.get("type")
        types = types if isinstance(types, list) else [types]
        if ("array" in types or "items" in out) and "maxItems" not in out:
            cap = bounds.max_items_nested if _is_nested(node.get("items"), root) else bounds.max_items_scalar
            out["maxItems"] = max(cap, int(out.get("minItems", 0)))
        if "integer" in types and not {"enum", "const"} & out.keys():
            # An integer with no bounds lets a small model write digits forever.
            out.setdefault("maximum", bounds.max_abs_integer)
            out.setdefault("minimum", -bounds.max_abs_integer)
        if "object" in types or "properties" in out:
            extra = out.get("additionalProperties", True)
            if "properties" in out and "additionalProperties" not in out:
                out["additionalProperties"] = False
            elif extra is True or extra == {}:
                budget.spend(free_weight)
                out["additionalProperties"] = free_value  # one shared copy; it is never changed
                out.setdefault("maxProperties", max(bounds.max_properties, len(out.get("required", []))))
        if "string" in types and not {"maxLength", "pattern", "format", "enum", "const"} & out.keys():
            out["maxLength"] = max(bounds.max_string_length, int(out.get("minLength", 0)))
        return out

    try:
        result = walk(schema, ())
    except RecursionError:
        return schema
    if len(json.dumps(result)) > bounds.max_size:
        return schema
    return result
