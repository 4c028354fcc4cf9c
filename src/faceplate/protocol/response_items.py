"""Wire schema of the Responses API's input items (InputItem): the subset a local model can use.

Shared by POST /v1/responses (``input``) and the Conversations routes (``items``). Items are picked by
``type``; OpenAI lets a message omit it (EasyInputMessage) and an item_reference omit it too, so the
discriminator falls back to ``role`` / ``id``. Item types OpenAI knows but this server cannot act on
(computer_call, web_search_call, ...) get their own 400 rather than a generic "invalid value".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Tag
from pydantic_core import PydanticCustomError

from faceplate.protocol.common import WireModel, tagged_union


class InputText(WireModel):
    type: Literal["input_text"]
    text: str


class OutputText(WireModel):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Refusal(WireModel):
    type: Literal["refusal"]
    refusal: str


class InputImage(WireModel):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputFile(WireModel):
    type: Literal["input_file"]
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None


class InputAudio(WireModel):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


# One union for every content list: replayed assistant messages carry output_text/refusal, user ones input_*.
ContentPart = tagged_union(InputText, OutputText, Refusal, InputImage, InputFile, InputAudio)


class MessageItem(WireModel):
    type: Literal["message"] | None = None  # optional (EasyInputMessage)
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None
    status: str | None = None


class FunctionCallItem(WireModel):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str  # a JSON document as a string, as the model produced it
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(WireModel):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[ContentPart]
    id: str | None = None
    status: str | None = None


class ReasoningItem(WireModel):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[dict[str, Any]] = []
    content: list[dict[str, Any]] | None = None  # optional: OpenAI's own replays often omit it
    encrypted_content: str | None = None  # never issued here; accepted and dropped
    status: str | None = None


class ItemReference(WireModel):
    type: Literal["item_reference"] | None = None  # optional in ItemReferenceParam
    id: str


class CustomToolCallItem(WireModel):
    type: Literal["custom_tool_call"]
    call_id: str
    name: str
    input: str
    id: str | None = None


class CustomToolCallOutputItem(WireModel):
    type: Literal["custom_tool_call_output"]
    call_id: str
    output: str | list[ContentPart]
    id: str | None = None


SUPPORTED_ITEM_TYPES: tuple[str, ...] = (
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "item_reference",
    "custom_tool_call",
    "custom_tool_call_output",
)

# Item types in OpenAI's spec (Item, InputItem) that need a hosted tool or server state we do not have.
UNSUPPORTED_ITEM_TYPES: frozenset[str] = frozenset(
    {
        "file_search_call",
        "computer_call",
        "computer_call_output",
        "web_search_call",
        "tool_search_call",
        "tool_search_output",
        "additional_tools",
        "compaction",
        "compaction_trigger",
        "image_generation_call",
        "code_interpreter_call",
        "local_shell_call",
        "local_shell_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "mcp_call",
        "program",
        "program_output",
    }
)


def _refuse(value: Any) -> Any:
    """Runs before the union picks a branch: an item we cannot take fails with a message saying why.

    The ``invalid_tag`` error type makes ``common.validation_error`` report it on ``<item>.type``."""
    if _item_tag(value) is not None:
        return value
    if not isinstance(value, dict):
        if isinstance(value, WireModel):
            return value  # a built model of another kind: the discriminator's own error
        raise PydanticCustomError("model_type", "expected an object")  # "Invalid type for 'input[0]': ..."
    kind = value.get("type")
    accepted = ", ".join(repr(t) for t in SUPPORTED_ITEM_TYPES)
    if isinstance(kind, str) and kind in UNSUPPORTED_ITEM_TYPES:
        detail = f"the item type '{kind}' is not supported by this server. Supported values are: {accepted}"
    elif "type" not in value:
        detail = f"an item without 'type' must be a message (with 'role') or an item_reference (with 'id'); types: {accepted}"
    else:
        shown = repr(kind) if isinstance(kind, str) else "a non-string"
        detail = f"{shown} is not a known item type. Supported values are: {accepted}"
    raise PydanticCustomError("invalid_tag", "{detail}", {"detail": detail})


def _item_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        kind, has_role, has_id = value.get("type"), "role" in value, "id" in value
    else:  # an already-built model (the service may re-validate stored items)
        kind = getattr(value, "type", None)
        has_role, has_id = hasattr(value, "role"), getattr(value, "id", None) is not None
    if kind is None:
        # OpenAI's two type-less shapes; anything else cannot be told apart.
        if has_role:
            return "type:message"
        return "type:item_reference" if has_id else None
    return f"type:{kind}" if isinstance(kind, str) and kind in SUPPORTED_ITEM_TYPES else None


InputItem = Annotated[
    Annotated[MessageItem, Tag("type:message")]
    | Annotated[FunctionCallItem, Tag("type:function_call")]
    | Annotated[FunctionCallOutputItem, Tag("type:function_call_output")]
    | Annotated[ReasoningItem, Tag("type:reasoning")]
    | Annotated[ItemReference, Tag("type:item_reference")]
    | Annotated[CustomToolCallItem, Tag("type:custom_tool_call")]
    | Annotated[CustomToolCallOutputItem, Tag("type:custom_tool_call_output")],
    Discriminator(
        _item_tag,
        custom_error_type="invalid_tag",
        custom_error_message="expected an object with a supported item 'type'",
    ),
    BeforeValidator(_refuse),
]
