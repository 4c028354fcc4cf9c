import json

from faceplate.engines.base import Tool as ToolSpec
from faceplate.structured.tools import ToolCallParser, call_markup, messages_for_template


def parse_in_pieces(text: str, size: int) -> tuple[ToolCallParser, list]:
    p = ToolCallParser()
    pieces = []
    for i in range(0, len(text), size):
        pieces += p.feed(text[i : i + size])
    pieces += p.finish()
    return p, pieces


def test_calls_parsed_at_any_split() -> None:
    text = call_markup("get_weather", '{"city": "Paris", "note": "a } b \\" c"}') + call_markup("f", "{}")
    for size in (1, 2, 3, 7, 100):
        p, pieces = parse_in_pieces(text, size)
        assert [c.name for c in p.calls] == ["get_weather", "f"]
        assert json.loads(p.calls[0].arguments) == {"city": "Paris", "note": 'a } b " c'}
        assert p.calls[1].arguments == "{}"
        starts = [x for x in pieces if x.name is not None]
        assert [x.index for x in starts] == [0, 1] and all(x.call_id and x.call_id.startswith("call_") for x in starts)
        assert all(x.call_id is None for x in pieces if x.name is None)  # ids only in the first piece
        assert "".join(x.arguments or "" for x in pieces if x.index == 0) == p.calls[0].arguments
        assert not any(x.content for x in pieces)


def test_plain_text_passes_through() -> None:
    p, pieces = parse_in_pieces("Hello there", 2)
    assert p.mode == "text" and "".join(x.content for x in pieces) == "Hello there" and not p.calls


def test_lookalike_markup_is_text() -> None:
    p, pieces = parse_in_pieces("<tool_cal no", 3)
    assert "".join(x.content for x in pieces) == "<tool_cal no" and not p.calls


def test_template_without_tools_gets_system_prompt_and_markup() -> None:
    tools = [ToolSpec("f", "does f", {"type": "object"})]
    msgs = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
        },
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
    ]
    out = messages_for_template(msgs, tools, template_supports_tools=False)
    assert out[0]["role"] == "system" and "- f: does f" in out[0]["content"]
    assert out[2]["content"] == '<tool_call>{"name":"f","arguments":{"a":1}}</tool_call>'
    assert out[3] == {"role": "user", "content": "<tool_response>\n42\n</tool_response>"}
