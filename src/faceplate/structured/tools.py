"""Tool calling, engine-neutral: how tools reach the prompt, and how calls are read back out.

The model writes calls as ``<tool_call>{"name":"f","arguments":{...}}</tool_call>`` (the
grammar in ``constraints.tool_calls`` guarantees the shape). ``ToolCallParser`` reads that
text incrementally and yields OpenAI-shaped pieces: a call's first piece carries its id and
name, later pieces only argument fragments.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from faceplate.engines.base import Tool
from faceplate.structured.constraints import TOOL_CLOSE, TOOL_OPEN

SYSTEM_TOOLS_PROMPT = """You can call functions. To call one, answer with exactly
<tool_call>{{"name":"<function name>","arguments":<arguments as a JSON object>}}</tool_call>
and nothing else. Results come back in <tool_response> tags. The functions:
{functions}"""


def describe_tools(tools: Sequence[Tool]) -> str:
    lines = []
    for t in tools:
        desc = f": {t.description}" if t.description else ""
        lines.append(f"- {t.name}{desc}\n  parameters (JSON schema): {json.dumps(t.parameters, separators=(',', ':'))}")
    return "\n".join(lines)


def call_markup(name: str, arguments: str) -> str:
    """An earlier call as the model would have written it (for multi-turn prompts)."""
    try:
        args = json.dumps(json.loads(arguments), separators=(",", ":"))
    except (ValueError, TypeError):
        args = json.dumps(arguments)
    return f'{TOOL_OPEN}{{"name":"{name}","arguments":{args}}}{TOOL_CLOSE}'


def messages_for_template(
    messages: list[dict[str, Any]], tools: Sequence[Tool], *, template_supports_tools: bool
) -> list[dict[str, Any]]:
    """Rewrite tool turns for a template without tool support: calls as markup, results as user turns.

    Templates that do support tools get the messages as they are (arguments parsed to objects,
    the convention Hugging Face templates expect).
    """
    if template_supports_tools:
        out = []
        for m in messages:
            if m.get("tool_calls"):
                m = {**m, "tool_calls": [_hf_call(c) for c in m["tool_calls"]]}
            out.append(m)
        return out
    out = []
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            text = "".join(call_markup(c["function"]["name"], c["function"]["arguments"]) for c in m["tool_calls"])
            out.append({"role": "assistant", "content": (m.get("content") or "") + text})
        elif m["role"] == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{m['content']}\n</tool_response>"})
        else:
            out.append(m)
    if tools:
        prompt = SYSTEM_TOOLS_PROMPT.format(functions=describe_tools(tools))
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def _hf_call(call: dict[str, Any]) -> dict[str, Any]:
    fn = call["function"]
    try:
        args: Any = json.loads(fn["arguments"])
    except (ValueError, TypeError):
        args = fn["arguments"]
    return {"type": "function", "id": call.get("id"), "function": {"name": fn["name"], "arguments": args}}


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class Piece:
    """One parsed piece: plain content, the start of call ``index``, or an argument fragment."""

    content: str = ""
    index: int = -1
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


@dataclass
class ParsedCall:
    id: str
    name: str
    arguments: str = ""


_HEAD = f'{TOOL_OPEN}{{"name":"'
_ARGS = '","arguments":'


@dataclass
class ToolCallParser:
    """Incremental reader of model output that may be text or tool-call markup."""

    mode: str = "undecided"  # undecided | text | calls
    calls: list[ParsedCall] = field(default_factory=list)
    _buf: str = ""
    _state: str = "head"  # head | name | args | tail
    _depth: int = 0
    _in_string: bool = False
    _escape: bool = False

    def feed(self, text: str) -> list[Piece]:
        if self.mode == "text":
            return [Piece(content=text)] if text else []
        self._buf += text
        if self.mode == "undecided":
            stripped = self._buf.lstrip()
            if not stripped:
                return []
            if not TOOL_OPEN.startswith(stripped[: len(TOOL_OPEN)]) and not stripped.startswith(TOOL_OPEN):
                self.mode = "text"
                out, self._buf = self._buf, ""
                return [Piece(content=out)]
            if len(stripped) < len(TOOL_OPEN):
                return []
            self.mode = "calls"
            self._buf = stripped
        return self._parse()

    def _parse(self) -> list[Piece]:
        out: list[Piece] = []
        while self._buf:
            if self._state == "head":
                if len(self._buf) < len(_HEAD):
                    break
                if not self._buf.startswith(_HEAD):  # not our markup after all: pass it on as text
                    self.mode = "text"
                    out.append(Piece(content=self._buf))
                    self._buf = ""
                    break
                self._buf = self._buf[len(_HEAD) :]
                self._state = "name"
            elif self._state == "name":
                end = self._buf.find(_ARGS)
                if end < 0:
                    break
                call = ParsedCall(id=new_call_id(), name=self._buf[:end])
                self.calls.append(call)
                out.append(Piece(index=len(self.calls) - 1, call_id=call.id, name=call.name, arguments=""))
                self._buf = self._buf[end + len(_ARGS) :]
                self._state, self._depth, self._in_string, self._escape = "args", 0, False, False
            elif self._state == "args":
                n = self._scan_args()
                fragment, self._buf = self._buf[:n], self._buf[n:]
                if fragment:
                    self.calls[-1].arguments += fragment
                    out.append(Piece(index=len(self.calls) - 1, arguments=fragment))
                if self._depth == 0 and fragment and not self._in_string:
                    self._state = "tail"
                else:
                    break
            else:  # tail: the closing brace of the wrapper and </tool_call>
                tail = "}" + TOOL_CLOSE
                if len(self._buf) < len(tail):
                    break
                self._buf = self._buf[len(tail) :].lstrip()
                self._state = "head"
        return out

    def _scan_args(self) -> int:
        """Advance through the arguments JSON; return how many buffered chars belong to it."""
        for i, ch in enumerate(self._buf):
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    return i + 1
        return len(self._buf)

    def finish(self) -> list[Piece]:
        """End of output: anything still buffered that never became a call is content."""
        if self.mode != "calls" and self._buf:
            out, self._buf = self._buf, ""
            return [Piece(content=out)]
        return []
