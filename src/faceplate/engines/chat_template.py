"""Render chat messages with the model's own Jinja chat template, in a sandbox.

Templates come only from model files (GGUF metadata or a tokenizer config), never
from a request; still, they run in Jinja's immutable sandbox, like Hugging Face's
``apply_chat_template``, so a hostile model file cannot reach Python internals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from faceplate.errors import InvalidRequest

# Used when a model carries no template: ChatML, the most common format.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class _TemplateRaised(Exception):
    pass


def _raise(message: str) -> None:
    raise _TemplateRaised(message)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False, sort_keys: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


@lru_cache(maxsize=16)
def _compile(source: str) -> Any:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, undefined=Undefined)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


class ChatTemplate:
    def __init__(self, source: str | None, special_tokens: Mapping[str, str]) -> None:
        self.source = source or CHATML
        self._template = _compile(self.source)
        self._special = dict(special_tokens)
        # A template "supports tools" when it reads the tools variable at all.
        self.supports_tools = "tools" in self.source

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
    ) -> str:
        try:
            return str(
                self._template.render(
                    messages=list(messages),
                    tools=list(tools) if tools else None,
                    add_generation_prompt=add_generation_prompt,
                    bos_token=self._special.get("bos_token", ""),
                    eos_token=self._special.get("eos_token", ""),
                )
            )
        except _TemplateRaised as exc:
            # The template itself rejects this conversation (e.g. roles must alternate).
            raise InvalidRequest(f"The model's chat template rejected these messages: {exc}", param="messages") from None
        except (TemplateError, TypeError, ValueError) as exc:
            raise InvalidRequest(
                f"These messages cannot be rendered with the model's chat template: {exc}", param="messages"
            ) from None


__all__ = ["ChatTemplate", "CHATML"]
