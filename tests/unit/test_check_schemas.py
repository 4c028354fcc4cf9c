"""src/faceplate/check/openai_schemas.json: regenerated from tests/openapi.json, it must equal the committed file."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from typing import Any

import pytest

from faceplate.check.contract import Contract, load_document
from tests import spec

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "contract_schemas.py"
_spec = importlib.util.spec_from_file_location("contract_schemas", SCRIPT)
assert _spec and _spec.loader
contract_schemas = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(contract_schemas)

CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "system_fingerprint": None,  # OpenAI sends null here: the lenient profile allows it
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
}


def test_committed_file_is_what_the_script_makes() -> None:
    committed = contract_schemas.OUT.read_text(encoding="utf-8")
    assert committed == contract_schemas.render(contract_schemas.build()), (
        "src/faceplate/check/openai_schemas.json is stale: run python scripts/contract_schemas.py"
    )


def test_document_is_small_credited_and_packaged() -> None:
    doc = load_document()
    assert "MIT" in doc["$comment"] and "OpenAI" in doc["$comment"]
    assert set(contract_schemas.ROOTS) <= set(doc["components"]["schemas"])
    assert len(contract_schemas.OUT.read_bytes()) < 200_000  # a closure, not the 3.4 MB document
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["faceplate"]
    assert "check/openai_schemas.json" in data


@pytest.mark.parametrize(
    ("instance", "name"),
    [
        (CHAT, "CreateChatCompletionResponse"),
        ({"error": {"message": "x", "type": "invalid_request_error", "param": None, "code": None}}, "ErrorResponse"),
        ({"object": "list", "data": [{"id": "m", "object": "model", "created": 1, "owned_by": "o"}]}, "ListModelsResponse"),
        ({"error": {"message": "x", "type": "t", "param": None, "code": 400}}, "ErrorResponse"),
        ({"error": "bare"}, "ErrorResponse"),
        ({**CHAT, "object": "chat.completion.chunk"}, "CreateChatCompletionResponse"),
    ],
)
def test_bundled_validators_agree_with_tests_spec(instance: Any, name: str) -> None:
    assert (Contract().problem(instance, name) is None) == spec.is_valid(instance, name)


def test_problem_names_the_path() -> None:
    problem = Contract().problem({"error": {"message": "x", "type": "t", "param": None, "code": 400}}, "ErrorResponse")
    assert problem and problem.startswith("ErrorResponse: $.error.code")
