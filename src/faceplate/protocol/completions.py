"""Wire schema of POST /v1/completions (CreateCompletionRequest), the legacy text endpoint."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from faceplate.errors import InvalidRequest
from faceplate.protocol.chat import StreamOptions
from faceplate.protocol.common import array_too_long
from faceplate.protocol.sampling import SamplingFields

Prompt = str | list[str] | list[int] | list[list[int]]
MAX_PROMPTS = 2048  # most prompts in one request (an array of strings or of token arrays), as OpenAI allows


class CompletionRequest(SamplingFields):
    model: str
    prompt: Prompt | None = None
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    best_of: int | None = Field(None, ge=0, le=20)
    suffix: str | None = None
    stream_options: StreamOptions | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_count(cls, value: Any) -> Any:
        # A flat list of token ids is one prompt, whatever its length; a list of strings or of arrays is many.
        if isinstance(value, list) and len(value) > MAX_PROMPTS and type(value[0]) is not int:
            raise array_too_long("prompt", MAX_PROMPTS, len(value))
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> CompletionRequest:
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
            )
        if self.best_of not in (None, 1, 0) and self.best_of != (self.n or 1):
            raise InvalidRequest("best_of other than n is not supported by this server.", param="best_of")
        if self.suffix:
            raise InvalidRequest("suffix is not supported by this model.", param="suffix")
        if isinstance(self.prompt, list):
            if not self.prompt:
                raise InvalidRequest("Invalid 'prompt': empty array. Expected an array with minimum length 1.", param="prompt")
            if any(isinstance(p, list) and not p for p in self.prompt):
                raise InvalidRequest("Invalid 'prompt': a token array must not be empty.", param="prompt")
        return self

    def prompts(self) -> list[str | list[int]]:
        """The prompt(s) as a list: each a string or a token-id list. No prompt means the document separator."""
        p = self.prompt
        if p is None:
            return [""]
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]
