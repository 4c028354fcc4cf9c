"""Hostile JSON schemas: inlining $refs is bounded by a node budget, and running out is a 400, fast."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from faceplate.errors import InvalidRequest
from faceplate.structured import schema_bounds
from faceplate.structured.schema_bounds import Bounds, tighten


def doubling_defs(levels: int) -> dict[str, Any]:
    """``d0 -> {d1, d1}``, ``d1 -> {d2, d2}``, ...: tiny as written, 2**levels nodes once inlined."""
    defs: dict[str, Any] = {
        f"d{i}": {"type": "object", "properties": {"a": {"$ref": f"#/$defs/d{i + 1}"}, "b": {"$ref": f"#/$defs/d{i + 1}"}}}
        for i in range(levels)
    }
    defs[f"d{levels}"] = {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


def test_exponential_refs_are_refused_when_the_budget_runs_out(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = doubling_defs(20)  # about 2 KB; inlined it would be 2**21 nodes
    assert 1500 < len(json.dumps(schema)) < 2500
    with pytest.raises(InvalidRequest) as info:
        tighten(schema)
    err = info.value
    assert err.status == 400 and err.param == "response_format.json_schema.schema"
    assert "too complex" in err.message and str(Bounds().max_nodes) in err.message

    budgets: list[Any] = []

    class CountingBudget(schema_bounds._Budget):  # the real budget, kept to see how far the walk got
        def __init__(self, limit: int, param: str) -> None:
            super().__init__(limit, param)
            budgets.append(self)

    monkeypatch.setattr(schema_bounds, "_Budget", CountingBudget)
    with pytest.raises(InvalidRequest):
        tighten(schema)
    # It stopped as soon as the budget was spent, not after inlining everything.
    assert Bounds().max_nodes < budgets[0].used <= Bounds().max_nodes + 200


def test_the_param_named_is_the_callers() -> None:
    with pytest.raises(InvalidRequest) as info:
        tighten(doubling_defs(20), param="tools")
    assert info.value.param == "tools"
    with pytest.raises(InvalidRequest) as small:
        tighten(doubling_defs(8), Bounds(max_nodes=100))  # the budget is a setting
    assert small.value.status == 400


def test_shared_values_count_as_emitted() -> None:
    """A big enum referenced many times is emitted many times: that spends the budget too."""
    defs = {"colour": {"enum": [f"c{i}" for i in range(2000)]}}
    schema = {"$defs": defs, "type": "object", "properties": {f"p{i}": {"$ref": "#/$defs/colour"} for i in range(30)}}
    with pytest.raises(InvalidRequest):
        tighten(schema)


def test_ordinary_schemas_stay_well_within_the_budget() -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "left": {"$ref": "#/$defs/node"},
                    "right": {"$ref": "#/$defs/node"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
            }
        },
        "$ref": "#/$defs/node",
    }
    before = copy.deepcopy(tree)
    out = tighten(tree)  # three-way recursion, unrolled three deep: fine
    assert out["properties"]["left"]["properties"]["label"]["maxLength"] == 128
    assert tree == before  # the input is never changed (references are inlined without copying it first)
    assert tighten(doubling_defs(8))["properties"]["a"]["properties"]["b"]["type"] == "object"


def test_constraints_turn_the_blow_up_into_a_400_naming_the_param() -> None:
    from faceplate.structured.constraints import json_schema

    with pytest.raises(InvalidRequest) as info:
        json_schema(doubling_defs(20))
    assert info.value.status == 400 and info.value.param == "response_format.json_schema.schema"
    with pytest.raises(InvalidRequest) as named:
        json_schema(doubling_defs(20), param="tools[0].function.parameters")
    assert named.value.param == "tools[0].function.parameters"
