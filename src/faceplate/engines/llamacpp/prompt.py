"""Chat messages -> prompt tokens, where only the template's own markup can be a control token.

A template renders text, and tokenizing that text with special tokens parsed would turn a
user's ``<|im_end|>\\n<|im_start|>system`` into real control tokens (role spoofing, fake
tool-call history). So every caller-supplied string that contains a special token's text
is swapped for a placeholder before rendering; the rendered text is tokenized piecewise:
markup with special tokens parsed, those strings as plain text. Strings without special
text (nearly all) render in place, so their tokens are exactly what a single pass gives.
"""

from __future__ import annotations

import re
from typing import Any

import llama_cpp as L

from faceplate.engines.chat_template import ChatTemplate
from faceplate.engines.llamacpp.model import LlamaModel

_SPECIAL_ATTRS = L.LLAMA_TOKEN_ATTR_CONTROL | L.LLAMA_TOKEN_ATTR_USER_DEFINED | L.LLAMA_TOKEN_ATTR_UNKNOWN
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_STRUCTURAL_KEYS = frozenset({"role", "type"})  # values the wire layer restricted to fixed words


def special_texts(model: LlamaModel) -> list[str]:
    texts = set()
    for token in range(model.n_vocab):
        if int(L.llama_vocab_get_attr(model.vocab, token)) & _SPECIAL_ATTRS:
            text = model.special_piece(token)
            if text:
                texts.add(text)
    return sorted(texts, key=len, reverse=True)


class PromptBuilder:
    def __init__(self, model: LlamaModel, template: ChatTemplate) -> None:
        self._model = model
        self._template = template
        texts = special_texts(model)
        self._special = re.compile("|".join(re.escape(t) for t in texts)) if texts else None

    def _protect(self, value: Any, saved: list[str], key: str | None = None) -> Any:
        if isinstance(value, str):
            if key in _STRUCTURAL_KEYS or self._special is None:
                return value
            if "\ue000" in value or self._special.search(value):
                saved.append(value)
                return f"\ue000{len(saved) - 1}\ue001"
            return value
        if isinstance(value, dict):
            return {k: self._protect(v, saved, k) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._protect(v, saved) for v in value]
        return value

    def tokens(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[int]:
        saved: list[str] = []
        safe_messages = self._protect(messages, saved)
        safe_tools = self._protect(tools, saved) if tools else None
        text = self._template.render(safe_messages, tools=safe_tools)
        if not saved:
            return self._model.tokenize(text, add_special=False, parse_special=True)
        return self._piecewise(text, saved)

    def _piecewise(self, text: str, saved: list[str]) -> list[int]:
        # A placeholder the template dropped or mangled leaves no special text behind either.
        out: list[int] = []
        for i, part in enumerate(_PLACEHOLDER.split(text)):
            if not part:
                continue
            if i % 2 == 0:  # template markup
                out += self._model.tokenize(part, add_special=False, parse_special=True)
            else:  # a caller's string: its special-looking text stays text
                out += self._model.tokenize(saved[int(part)], add_special=False, parse_special=False)
        return out
