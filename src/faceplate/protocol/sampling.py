"""Request fields shared by chat and legacy completions, with OpenAI's ranges."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from faceplate.protocol.common import WireModel

MAX_LOGIT_BIAS = 300  # OpenAI's limit
_TOKEN_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only: int() would take "1_0", " 7" or "²", and refuse 5,000 digits


class SamplingFields(WireModel):
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)  # OpenAI: a 64-bit integer
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, int | float] | None = None
    user: str | None = None
    # Not OpenAI's (protocol.common.NON_OPENAI_FIELDS): accepted in lenient mode only.
    top_k: int | None = Field(None, ge=0, le=1_000_000)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    stream: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > 4:
            raise ValueError("expected an array with maximum length 4")
        return stop

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, bias: dict[str, int | float] | None) -> dict[str, int | float] | None:
        if bias is not None and len(bias) > MAX_LOGIT_BIAS:
            raise ValueError(f"expected an object with at most {MAX_LOGIT_BIAS} entries, but got {len(bias)}")
        for key, value in (bias or {}).items():
            if _TOKEN_ID.fullmatch(key) is None:
                shown = key if len(key) <= 40 else key[:40] + "..."
                raise ValueError(f"logit_bias key {shown!r} is not a token id")
            if not -100 <= value <= 100:
                raise ValueError(f"logit_bias value for token {key} must be between -100 and 100")
        return bias

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        items = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s for s in items if s)
