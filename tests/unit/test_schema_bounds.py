import json

import jsonschema
from llguidance import LLMatcher

from faceplate.structured.schema_bounds import Bounds, tighten

TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {"label": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            "required": ["label", "children"],
        }
    },
    "type": "object",
    "properties": {"root": {"$ref": "#/$defs/node"}},
    "required": ["root"],
}


def test_arrays_and_strings_get_bounds_only_where_missing() -> None:
    s = tighten(
        {
            "type": "object",
            "properties": {
                "a": {"type": "array", "items": {"type": "integer"}},
                "b": {"type": "array", "items": {"type": "object"}},
                "c": {"type": "string"},
                "d": {"type": "string", "enum": ["x"]},
                "e": {"type": "array", "maxItems": 50},
            },
        }
    )
    p = s["properties"]
    assert p["a"]["maxItems"] == 8 and p["b"]["maxItems"] == 4 and p["c"]["maxLength"] == 128
    assert "maxLength" not in p["d"] and p["e"]["maxItems"] == 50
    assert tighten({"type": "array", "minItems": 12})["maxItems"] == 12
    assert tighten({"type": "integer", "minimum": 0}) == {"type": "integer", "minimum": 0, "maximum": 10**15}


def test_recursion_unrolled_to_depth_then_false() -> None:
    s = tighten(TREE, Bounds(max_depth=2))
    assert "$defs" not in s
    level1 = s["properties"]["root"]
    level2 = level1["properties"]["children"]["items"]
    assert level2["properties"]["children"]["items"] is False  # a third level would be nothing: children must be []
    assert LLMatcher.validate_grammar(LLMatcher.grammar_from_json_schema(s)) == ""


def test_everything_the_tight_schema_allows_the_original_allows() -> None:
    tight = tighten(TREE, Bounds(max_depth=2))
    doc = {"root": {"label": "a", "children": [{"label": "b", "children": []}]}}
    jsonschema.validate(doc, tight)
    jsonschema.validate(doc, TREE)
    too_deep = {"root": {"label": "a", "children": [{"label": "b", "children": [{"label": "c", "children": []}]}]}}
    jsonschema.validate(too_deep, TREE)
    assert not jsonschema.Draft202012Validator(tight).is_valid(too_deep)


def test_ref_with_siblings_and_unknown_refs_kept() -> None:
    s = tighten(
        {
            "$defs": {"x": {"type": "integer"}},
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/x", "description": "d"}, "b": {"$ref": "https://e.com/s"}},
        }
    )
    assert s["properties"]["a"] == {"allOf": [{"type": "integer", "maximum": 10**15, "minimum": -(10**15)}, {"description": "d"}]}
    assert s["properties"]["b"] == {"$ref": "https://e.com/s"}
    assert json.dumps(tighten(True)) == "true"


def test_open_objects_are_bounded_and_declared_ones_closed() -> None:
    closed = tighten({"type": "object", "properties": {"a": {"type": "boolean"}}})
    assert closed["additionalProperties"] is False
    free = tighten({"type": "object"})
    assert free["maxProperties"] == 8 and "anyOf" in free["additionalProperties"]
    doc = {"k": [1, "x", {"n": None}], "b": True}
    jsonschema.validate(doc, free)
    assert LLMatcher.validate_grammar(LLMatcher.grammar_from_json_schema(free)) == ""
    assert tighten({"type": "object", "additionalProperties": False}) == {"type": "object", "additionalProperties": False}
