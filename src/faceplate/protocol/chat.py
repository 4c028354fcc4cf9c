"""Wire schema of POST /v1/chat/completions (CreateChatCompletionRequest): the accepted subset, validated."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from faceplate.errors import InvalidRequest
from faceplate.protocol.common import WireModel, array_too_long, must_be_object, tagged_union
from faceplate.protocol.sampling import SamplingFields

MAX_TOOLS = 128  # most tools (or functions) in one request, as OpenAI limits them
MAX_MESSAGES = 2048  # most items in 'messages' (OpenAI's bound); checked before any message is validated


class TextPart(WireModel):
    type: Literal["text"]
    text: str


class ImagePart(WireModel):
    type: Literal["image_url"]
    image_url: dict[str, Any]


class AudioPart(WireModel):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class FilePart(WireModel):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(WireModel):
    type: Literal["refusal"]
    refusal: str


UserPart = tagged_union(TextPart, ImagePart, AudioPart, FilePart)
AssistantPart = tagged_union(TextPart, RefusalPart)


class FunctionCall(WireModel):
    name: str
    arguments: str


class ToolCall(WireModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(WireModel):
    role: Literal["system"]
    content: str | list[TextPart]
    name: str | None = None


class DeveloperMessage(WireModel):
    role: Literal["developer"]
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(WireModel):
    role: Literal["user"]
    content: str | list[UserPart]
    name: str | None = None


class AssistantMessage(WireModel):
    role: Literal["assistant"]
    content: str | list[AssistantPart] | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class ToolMessage(WireModel):
    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str


class FunctionMessage(WireModel):
    role: Literal["function"]
    content: str | None
    name: str


def _role_of(value: Any) -> str | None:
    if isinstance(value, dict):
        role = value.get("role")
        return role if isinstance(role, str) else None
    return getattr(value, "role", None)


Message = Annotated[
    Annotated[SystemMessage, Tag("role:system")]
    | Annotated[DeveloperMessage, Tag("role:developer")]
    | Annotated[UserMessage, Tag("role:user")]
    | Annotated[AssistantMessage, Tag("role:assistant")]
    | Annotated[ToolMessage, Tag("role:tool")]
    | Annotated[FunctionMessage, Tag("role:function")],
    Discriminator(
        lambda v: f"role:{_role_of(v)}",
        custom_error_type="invalid_role",
        custom_error_message="must be one of 'system', 'developer', 'user', 'assistant', 'tool' or 'function'",
    ),
    BeforeValidator(must_be_object),
]


class FunctionDefinition(WireModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, parameters: dict[str, Any] | None) -> dict[str, Any] | None:
        kind = (parameters or {}).get("type", "object")
        if kind != "object":
            raise ValueError(f"the parameters must be a JSON Schema of 'type: \"object\"', got 'type: {json.dumps(kind)}'")
        return parameters

    strict: bool | None = None


class Tool(WireModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(WireModel):
    name: str


class NamedToolChoice(WireModel):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(WireModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormatText(WireModel):
    type: Literal["text"]


class ResponseFormatJsonObject(WireModel):
    type: Literal["json_object"]


class ResponseFormatJsonSchema(WireModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = tagged_union(ResponseFormatText, ResponseFormatJsonObject, ResponseFormatJsonSchema)


class StreamOptions(WireModel):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatCompletionRequest(SamplingFields):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = Field(None, max_length=MAX_TOOLS)
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    prompt_cache_key: str | None = None  # also what keeps a conversation on one upstream of a pool
    safety_identifier: str | None = Field(None, max_length=64)

    @field_validator("messages", mode="before")
    @classmethod
    def _messages_length(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > MAX_MESSAGES:
            raise array_too_long("messages", MAX_MESSAGES, len(value))
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and self.top_logprobs > 0 and not self.logprobs:
            raise InvalidRequest("Using top_logprobs requires logprobs to be set to true.", param="top_logprobs")
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
            )
        if self.tool_choice is not None and not isinstance(self.tool_choice, str) and not self.tools:
            raise InvalidRequest(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice"
            )
        if self.tools is not None and len(self.tools) == 0:
            raise InvalidRequest("Invalid 'tools': empty array. Expected an array with minimum length 1.", param="tools")
        return self

    def completion_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
