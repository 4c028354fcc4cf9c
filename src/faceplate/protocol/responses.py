"""Wire schema of POST /v1/responses (CreateResponse) and /v1/responses/input_tokens (TokenCountsBody).

Everything OpenAI documents is parsed, so the service decides what to honour, ignore or refuse:
hosted tools (web_search, mcp, ...) parse as ``HostedTool`` and hosted tool choices as
``ToolChoiceHosted`` rather than failing here. Ranges use OpenAI's own 400 wording.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, ValidationInfo, field_validator

from faceplate.errors import InvalidRequest
from faceplate.protocol.chat import MAX_TOOLS
from faceplate.protocol.common import WireModel, array_too_long, must_be_object, tagged_union
from faceplate.protocol.response_items import InputItem, MessageItem

MAX_INPUT_ITEMS = 2048  # as 'messages' in chat; checked before any item is validated
MAX_METADATA_PAIRS = 16  # OpenAI's Metadata: 16 pairs, keys <= 64 chars, values <= 512 chars
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"  # the function-name rule chat applies too


def check_metadata(metadata: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's Metadata limits, shared by responses and conversations; 400 with param 'metadata'."""
    if metadata is None:
        return None
    if len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidRequest(
            f"Invalid 'metadata': too many properties. Expected an object with at most {MAX_METADATA_PAIRS} "
            f"properties, but got an object with {len(metadata)} properties instead.",
            param="metadata",
        )
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            raise InvalidRequest(
                f"Invalid 'metadata': key too long. Expected a key with maximum length {MAX_METADATA_KEY}, "
                f"but got a key with length {len(key)} instead.",
                param="metadata",
            )
        if len(value) > MAX_METADATA_VALUE:
            raise InvalidRequest(
                f"Invalid 'metadata': the value of {json.dumps(key)} is too long. Expected a string with maximum length "
                f"{MAX_METADATA_VALUE}, but got a string with length {len(value)} instead.",
                param="metadata",
            )
    return metadata


# ----------------------------------------------------------------------------- tools


def _object_schema(parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    # Same rule as chat's FunctionDefinition: tool arguments are always a JSON object.
    kind = (parameters or {}).get("type", "object")
    if kind != "object":
        raise ValueError(f"the parameters must be a JSON Schema of 'type: \"object\"', got 'type: {json.dumps(kind)}'")
    return parameters


class FunctionTool(WireModel):
    type: Literal["function"]
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # None: OpenAI treats Responses function tools as strict by default

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, parameters: dict[str, Any] | None) -> dict[str, Any] | None:
        return _object_schema(parameters)


class CustomToolFormatText(WireModel):
    type: Literal["text"]


class CustomToolFormatGrammar(WireModel):
    type: Literal["grammar"]
    syntax: Literal["lark", "regex"]
    definition: str


CustomToolFormat = tagged_union(CustomToolFormatText, CustomToolFormatGrammar)


class CustomTool(WireModel):
    type: Literal["custom"]
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    format: CustomToolFormat | None = None


class HostedTool(WireModel):
    """Any other tool type (web_search, mcp, local_shell, namespace, ...): kept so the service can
    refuse it with param ``tools[i].type`` or drop it, instead of a parse error naming the wrong field."""

    type: str


def _type_of(value: Any) -> Any:
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


def _tool_tag(value: Any) -> str:
    kind = _type_of(value)
    return f"type:{kind}" if kind in ("function", "custom") else "type:hosted"


ResponseTool = Annotated[
    Annotated[FunctionTool, Tag("type:function")]
    | Annotated[CustomTool, Tag("type:custom")]
    | Annotated[HostedTool, Tag("type:hosted")],
    Discriminator(_tool_tag),
    BeforeValidator(must_be_object),  # a bare "web_search" is an invalid type, not a HostedTool
]


class ToolChoiceFunction(WireModel):
    type: Literal["function"]
    name: str


class ToolChoiceCustom(WireModel):
    type: Literal["custom"]
    name: str


class ToolChoiceAllowed(WireModel):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class ToolChoiceHosted(WireModel):
    type: str  # {type: "web_search_preview"}, {type: "mcp", server_label}, ...


_CHOICE_TAGS = {"function": "type:function", "custom": "type:custom", "allowed_tools": "type:allowed_tools"}


def _choice_tag(value: Any) -> str:
    if not isinstance(value, dict | WireModel):
        return "choice:options"  # a string (or nonsense, which the Literal then refuses)
    kind = _type_of(value)
    return _CHOICE_TAGS.get(kind, "type:hosted") if isinstance(kind, str) else "type:hosted"


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("choice:options")]
    | Annotated[ToolChoiceFunction, Tag("type:function")]
    | Annotated[ToolChoiceCustom, Tag("type:custom")]
    | Annotated[ToolChoiceAllowed, Tag("type:allowed_tools")]
    | Annotated[ToolChoiceHosted, Tag("type:hosted")],
    Discriminator(_choice_tag),
]


# ----------------------------------------------------------------------------- text and reasoning


class TextFormatText(WireModel):
    type: Literal["text"]


class TextFormatJsonObject(WireModel):
    type: Literal["json_object"]


class TextFormatJsonSchema(WireModel):
    type: Literal["json_schema"]
    name: str = Field(pattern=NAME_PATTERN)
    schema_: dict[str, Any] = Field(alias="schema")  # required here, unlike chat's json_schema
    description: str | None = None
    strict: bool | None = None


TextFormat = tagged_union(TextFormatText, TextFormatJsonObject, TextFormatJsonSchema)


class TextParam(WireModel):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ConversationRef(WireModel):
    id: str


# Tagged so an error inside {id} reads 'conversation.id', not 'conversation.ConversationRef.id'.
Conversation = Annotated[
    Annotated[str, Tag("conversation:id")] | Annotated[ConversationRef, Tag("conversation:object")],
    Discriminator(lambda v: "conversation:object" if isinstance(v, dict | WireModel) else "conversation:id"),
]


class StreamOptions(WireModel):
    include_obfuscation: bool | None = None


class Reasoning(WireModel):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None  # deprecated spelling of summary
    # In OpenAI's Reasoning too; declared so strict mode does not refuse them as unknown.
    mode: str | None = None
    context: str | None = None


IncludeValue = Literal[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
]


# ----------------------------------------------------------------------------- requests


class ResponseInputFields(WireModel):
    """The fields create and input_tokens share (TokenCountsBody): what goes into the prompt."""

    model: str | None = None  # CreateResponseRequest makes it required
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: Conversation | None = None  # a conversation id, or {id}
    tools: list[ResponseTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextParam | None = None
    reasoning: Reasoning | None = None
    truncation: Literal["auto", "disabled"] | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _input_length(cls, value: Any) -> Any:
        # Before item validation, so a huge array costs one len(), not 2048+ model builds.
        if isinstance(value, list) and len(value) > MAX_INPUT_ITEMS:
            raise array_too_long("input", MAX_INPUT_ITEMS, len(value))
        return value

    @field_validator("tools", mode="before")
    @classmethod
    def _tools_length(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > MAX_TOOLS:
            raise array_too_long("tools", MAX_TOOLS, len(value))
        return value

    def items(self) -> list[InputItem]:
        """``input`` as a list of items: a bare string is one user message."""
        if self.input is None:
            return []
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)

    def conversation_id(self) -> str | None:
        return self.conversation.id if isinstance(self.conversation, ConversationRef) else self.conversation


# field -> (minimum, maximum), reported in OpenAI's words by _range below.
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "max_output_tokens": (16, None),
    "temperature": (0, 2),
    "top_p": (0, 1),
    "top_logprobs": (0, 20),
    "max_tool_calls": (1, None),
}


def _shown(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class CreateResponseRequest(ResponseInputFields):
    model: str
    max_output_tokens: int | None = None
    temperature: float | None = None  # strict float still takes an int, as sampling.py relies on
    top_p: float | None = None
    top_logprobs: int | None = None
    metadata: dict[str, str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    store: bool | None = None
    background: bool | None = None
    include: list[IncludeValue] | None = None
    max_tool_calls: int | None = None
    # Accepted, echoed where OpenAI echoes them, otherwise unused by a local server.
    user: str | None = None
    safety_identifier: str | None = Field(None, max_length=64)  # OpenAI's bound
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    service_tier: str | None = None
    prompt: dict[str, Any] | None = None
    context_management: list[Any] | None = None
    moderation: Any = None
    prompt_cache_options: Any = None

    @field_validator(*_RANGES)
    @classmethod
    def _range(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None:
            return None
        name = info.field_name or ""
        low, high = _RANGES[name]
        kind = "integer" if isinstance(value, int) else "decimal"
        if low is not None and value < low:
            raise InvalidRequest(
                f"Invalid '{name}': {kind} below minimum value. Expected a value >= {_shown(low)}, "
                f"but got {_shown(value)} instead.",
                param=name,
            )
        if high is not None and value > high:
            raise InvalidRequest(
                f"Invalid '{name}': {kind} above maximum value. Expected a value <= {_shown(high)}, "
                f"but got {_shown(value)} instead.",
                param=name,
            )
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_metadata(value)


class InputTokensRequest(ResponseInputFields):
    """POST /v1/responses/input_tokens: TokenCountsBody, where even ``model`` is optional."""

    personality: str | None = None  # in TokenCountsBody; declared so strict mode accepts it
