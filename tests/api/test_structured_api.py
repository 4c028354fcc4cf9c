"""Validation of tools and response_format at the API edge (compile errors are 400s, never 500s)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests import spec

USER = [{"role": "user", "content": "hello json"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}


def body(**kw: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": USER, "max_tokens": 3, **kw}


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (
            body(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}),
            "response_format.json_schema.schema",
        ),
        (
            body(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/none"}}}),
            "response_format.json_schema.schema",
        ),
        (
            body(
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "(("}},
                }
            ),
            "response_format.json_schema.schema",
        ),
        (
            body(response_format={"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}}),
            "response_format.json_schema.name",
        ),
        (body(response_format={"type": "xml"}), "response_format.type"),
        (body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "g"}}), "tool_choice"),
        (body(tools=[TOOL, TOOL]), "tools"),
        (body(tools=[]), "tools"),
        (body(tools=[{"type": "function", "function": {"name": "has space"}}]), "tools[0].function.name"),
        (body(tool_choice={"type": "function", "function": {"name": "f"}}), "tool_choice"),
        (body(functions=[TOOL["function"]], function_call={"name": "zzz"}), "function_call"),
        (
            body(
                tools=[
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "bogus"}}}},
                    }
                ],
                tool_choice="required",
            ),
            "tools",
        ),
    ],
)
async def test_bad_structured_requests(api: httpx.AsyncClient, payload: dict[str, Any], param: str) -> None:
    r = await api.post("/v1/chat/completions", json=payload)
    assert r.status_code == 400, r.text
    spec.validate_error(r.json())
    assert r.json()["error"]["param"] == param


async def test_huge_schema_rejected_quickly(api: httpx.AsyncClient) -> None:
    props = {f"p{i}": {"type": "string", "description": "x" * 100} for i in range(1000)}
    r = await api.post(
        "/v1/chat/completions",
        json=body(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "big", "schema": {"type": "object", "properties": props}},
            }
        ),
    )
    assert r.status_code == 400 and "too large" in r.json()["error"]["message"]


async def test_valid_structured_requests_accepted(api: httpx.AsyncClient) -> None:
    ok = [
        body(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}),
        body(response_format={"type": "json_object"}),
        body(response_format={"type": "text"}),
        body(tools=[TOOL], tool_choice="auto", parallel_tool_calls=False),
        body(tools=[TOOL], tool_choice="none"),
        body(functions=[TOOL["function"]], function_call="auto"),
    ]
    for payload in ok:
        r = await api.post("/v1/chat/completions", json=payload)
        assert r.status_code == 200, r.text
        spec.validate_chat_completion(r.json())
