"""OpenAI's response schemas, bundled (openai_schemas.json, made by scripts/contract_schemas.py).

The file keeps the document's ``#/components/schemas/<Name>`` layout, so it is registered as one
``referencing`` resource and every inner ``$ref`` resolves on its own, as tests/spec.py does with
the full document.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

BASE_URI = "urn:faceplate:openai-schemas"
SCHEMAS = "#/components/schemas/"


def load_document() -> dict[str, Any]:
    text = resources.files("faceplate.check").joinpath("openai_schemas.json").read_text(encoding="utf-8")
    return json.loads(text)


class Contract:
    """Validators for the bundled schemas, compiled on first use."""

    def __init__(self, document: dict[str, Any] | None = None) -> None:
        self.document = document if document is not None else load_document()
        resource = DRAFT202012.create_resource(self.document)
        self._registry = Registry().with_resource(BASE_URI, resource).crawl()
        self._validators: dict[str, Draft202012Validator] = {}

    def names(self) -> list[str]:
        return sorted(self.document["components"]["schemas"])

    def validator(self, name: str) -> Draft202012Validator:
        if name not in self._validators:
            if name not in self.document["components"]["schemas"]:
                raise KeyError(f"no bundled schema {name!r}")
            self._validators[name] = Draft202012Validator({"$ref": f"{BASE_URI}{SCHEMAS}{name}"}, registry=self._registry)
        return self._validators[name]

    def problem(self, instance: Any, name: str) -> str | None:
        """None when ``instance`` is a valid ``name``; else the most relevant error, one line."""
        error = best_match(self.validator(name).iter_errors(instance))
        if error is None:
            return None
        message = error.message if len(error.message) <= 160 else error.message[:160] + "…"
        return f"{name}: {error.json_path}: {message}"
