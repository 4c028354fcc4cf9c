"""Validation without keeping lines, then the lines streamed again for the store; the token estimate."""

from __future__ import annotations

import io
import json
from typing import Any

from faceplate.service.batch_input import estimated_tokens, read_lines, validate_input

CHAT = "/v1/chat/completions"


def line(custom_id: str, content: str) -> dict[str, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def test_keep_false_validates_without_holding_lines_and_read_lines_gives_them_back() -> None:
    raw = b"\xef\xbb\xbf" + json.dumps(line("a", "one")).encode() + b"\n\n" + json.dumps(line("b", "two")).encode() + b"\r\n"
    kept = validate_input(io.BytesIO(raw), CHAT)
    light = validate_input(io.BytesIO(raw), CHAT, keep=False)
    assert light.errors == [] and light.lines == [] and light.requests == 2 and light.model == "m"
    assert light.tokens == kept.tokens == 2 * estimated_tokens(line("a", "one")["body"])
    assert list(read_lines(io.BytesIO(raw))) == kept.lines
    assert [(x.line, x.custom_id) for x in kept.lines] == [(1, "a"), (3, "b")]


def test_duplicates_are_found_by_digest_however_long_the_ids() -> None:
    long_id = "k" * 100_000
    raw = b"".join(json.dumps(x).encode() + b"\n" for x in (line(long_id, "1"), line(long_id + "!", "2"), line(long_id, "3")))
    result = validate_input(io.BytesIO(raw), CHAT, keep=False)
    assert [(e.code, e.line) for e in result.errors] == [("duplicate_custom_id", 3)]
    assert "line 1" in result.errors[0].message


def test_estimated_tokens_counts_strings_and_token_ids_but_not_the_model() -> None:
    assert estimated_tokens({"model": "a-very-long-model-name"}) == 1
    assert estimated_tokens({"model": "m", "input": "x" * 40}) == 11
    assert estimated_tokens({"model": "m", "input": [1, 2, 3], "encoding_format": "floa"}) == 1 + 3 + 1
    nested = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "y" * 8}]}], "n": 2}
    assert estimated_tokens(nested) == (4 + 4 + 8) // 4 + 1  # "user", "text", the text; "n" is no token
    assert estimated_tokens({"model": "m", "prompt": [[5, 6], [7]], "max_tokens": 900}) == 3 + 1
