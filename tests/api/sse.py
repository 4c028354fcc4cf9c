"""Parse an SSE body the way the SDK does (comments skipped, [DONE] ends it)."""

from __future__ import annotations

import json
from typing import Any


def events(body: str) -> tuple[list[Any], bool]:
    out: list[Any] = []
    done = False
    for block in body.split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln and not ln.startswith(":")]
        data = "\n".join(ln[5:].lstrip() for ln in lines if ln.startswith("data:"))
        if not data:
            continue
        if data == "[DONE]":
            done = True
            continue
        out.append(json.loads(data))
    return out, done
