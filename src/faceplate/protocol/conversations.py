"""Wire schema of the Conversations routes' bodies (CreateConversationBody, UpdateConversationBody, items.create)."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from faceplate.errors import InvalidRequest
from faceplate.protocol.common import WireModel, array_too_long
from faceplate.protocol.response_items import InputItem
from faceplate.protocol.responses import check_metadata

MAX_CONVERSATION_ITEMS = 20  # OpenAI's maxItems for both create and items.create


def _items_length(value: Any) -> Any:
    # Before item validation, as responses' 'input': the bound costs one len().
    if isinstance(value, list) and len(value) > MAX_CONVERSATION_ITEMS:
        raise array_too_long("items", MAX_CONVERSATION_ITEMS, len(value))
    return value


class CreateConversationRequest(WireModel):
    items: list[InputItem] | None = None
    metadata: dict[str, str] | None = None

    @field_validator("items", mode="before")
    @classmethod
    def _items(cls, value: Any) -> Any:
        return _items_length(value)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_metadata(value)


class UpdateConversationRequest(WireModel):
    metadata: dict[str, str]  # required: an update only ever replaces the metadata

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        check_metadata(value)
        return value


class CreateConversationItemsRequest(WireModel):
    items: list[InputItem]

    @field_validator("items", mode="before")
    @classmethod
    def _items(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise InvalidRequest("Invalid 'items': empty array. Expected an array with minimum length 1.", param="items")
        return _items_length(value)
