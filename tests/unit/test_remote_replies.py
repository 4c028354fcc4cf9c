"""Upstream stream chunks -> engine events, and upstream error bodies -> OpenAI's error envelope.

The chunks are shaped as each server sends them (ids, created, system_fingerprint, nulls and all)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from faceplate.engines.base import Finished, GenerationEvent, TextDelta, TokenLogprob, ToolCallDelta, TopLogprob
from faceplate.engines.remote.replies import StreamReader, whole_as_chunk
from faceplate.errors import UpstreamFailed
from tests.unit.test_remote_errors import assert_envelope

HEAD = {"id": "chatcmpl-9x", "object": "chat.completion.chunk", "created": 1733000000, "model": "m"}


def chunk(*choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**HEAD, "choices": list(choices), **extra}


def delta(content: str | None = None, index: int = 0, finish: str | None = None, **d: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(d)
    if content is not None:
        body["content"] = content
    return {"index": index, "delta": body, "logprobs": None, "finish_reason": finish}


def run(reader: StreamReader, *items: dict[str, Any] | str) -> tuple[list[GenerationEvent], list[Finished]]:
    events: list[GenerationEvent] = []
    for item in items:
        events.extend(reader.feed(item if isinstance(item, str) else json.dumps(item)))
    return events, reader.finish()


def text_of(events: list[GenerationEvent], index: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.index == index)


# ---------------------------------------------------------------- chat streams as servers send them


def test_openai_stream_with_usage_chunk() -> None:
    r = StreamReader(1, chat=True)
    events, done = run(
        r,
        chunk(delta("", role="assistant", refusal=None), usage=None, system_fingerprint="fp_1"),
        chunk(delta("Hello"), usage=None),
        chunk(delta(" there"), usage=None),
        chunk(delta(finish="stop"), usage=None),
        {
            **HEAD,
            "choices": [],
            "usage": {
                "prompt_tokens": 19,
                "completion_tokens": 2,
                "total_tokens": 21,
                "prompt_tokens_details": {"cached_tokens": 16, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        },
        "[DONE]",
    )
    assert events == [TextDelta(0, "Hello", tokens=1), TextDelta(0, " there", tokens=1)]
    assert done == [Finished(0, "stop", 2, cached_tokens=16)]
    assert (r.prompt_tokens, r.completion_tokens, r.done) == (19, 2, True)


def test_openai_tool_call_streamed_in_pieces() -> None:
    first = {"index": 0, "id": "call_X", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    events, done = run(
        StreamReader(1, chat=True),
        chunk(delta(None, role="assistant", tool_calls=[first])),
        chunk(delta(None, tool_calls=[{"index": 0, "function": {"arguments": '{"ci'}}])),
        chunk(delta(None, tool_calls=[{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}])),
        chunk(delta(finish="tool_calls")),
        "[DONE]",
    )
    assert events == [
        ToolCallDelta(0, 0, "call_X", "get_weather", ""),
        ToolCallDelta(0, 0, arguments='{"ci'),
        ToolCallDelta(0, 0, arguments='ty":"Paris"}'),
    ]
    assert done[0].reason == "tool_calls"


def test_vllm_stream_with_logprobs_and_null_details() -> None:
    lp = {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.1,
                "bytes": [72, 105],
                "top_logprobs": [
                    {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                    {"token": "Hey", "logprob": -2.5, "bytes": None},
                ],
            },
            {"token": "!", "logprob": -0.3, "bytes": [33], "top_logprobs": []},
        ]
    }
    r = StreamReader(1, chat=True)
    events, done = run(
        r,
        chunk(delta("", role="assistant")),
        chunk({"index": 0, "delta": {"content": "Hi!"}, "logprobs": lp, "finish_reason": "stop", "stop_reason": None}),
        {
            **HEAD,
            "choices": [],
            "usage": {"prompt_tokens": 10, "total_tokens": 12, "completion_tokens": 2, "prompt_tokens_details": None},
        },
        "[DONE]",
    )
    (ev,) = events
    assert isinstance(ev, TextDelta) and ev.text == "Hi!" and ev.tokens == 2
    assert ev.logprobs == (
        TokenLogprob("Hi", -0.1, (72, 105), (TopLogprob("Hi", -0.1, (72, 105)), TopLogprob("Hey", -2.5, tuple(b"Hey")))),
        TokenLogprob("!", -0.3, (33,), ()),
    )
    assert done == [Finished(0, "stop", 2, cached_tokens=0)]
    assert r.prompt_tokens == 10


def test_llama_server_usage_and_timings_on_the_last_chunk() -> None:
    tail = {"choices": [{"finish_reason": "length", "index": 0, "delta": {}}], "created": 1, "id": "chatcmpl-x"}
    tail["usage"] = {"completion_tokens": 3, "prompt_tokens": 12, "total_tokens": 15}
    tail["timings"] = {"cache_n": 8, "prompt_n": 4, "prompt_ms": 1.2, "predicted_n": 3, "predicted_ms": 9.0}
    r = StreamReader(1, chat=True)
    events, done = run(
        r,
        {"choices": [{"finish_reason": None, "index": 0, "delta": {"role": "assistant", "content": None}}], "object": "x"},
        {"choices": [{"finish_reason": None, "index": 0, "delta": {"content": "Hel"}}]},
        {"choices": [{"finish_reason": None, "index": 0, "delta": {"content": "lo"}}]},
        tail,
        "[DONE]",
    )
    assert text_of(events) == "Hello"
    # two deltas seen, three tokens reported: the upstream's count settles it; its cache served 8 prompt tokens
    assert done == [Finished(0, "length", 3, cached_tokens=8)]
    assert r.prompt_tokens == 12


def test_ollama_whole_tool_calls_in_one_chunk_without_index() -> None:
    calls = [
        {"id": "call_a1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_b2", "type": "function", "function": {"name": "get_time", "arguments": '{"tz":"CET"}'}},
    ]
    events, done = run(
        StreamReader(1, chat=True),
        chunk(delta("", role="assistant", tool_calls=calls), system_fingerprint="fp_ollama"),
        chunk(delta("", role="assistant", finish="tool_calls")),
        {**HEAD, "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62}},
        "[DONE]",
    )
    assert events == [
        ToolCallDelta(0, 0, "call_a1", "get_weather", '{"city":"Paris"}'),
        ToolCallDelta(0, 1, "call_b2", "get_time", '{"tz":"CET"}'),
    ]
    assert done == [Finished(0, "tool_calls", 12)]


def test_two_choices_interleaved() -> None:
    r = StreamReader(2, chat=True)
    events, done = run(
        r,
        chunk(delta("", 0, role="assistant")),
        chunk(delta("", 1, role="assistant")),
        chunk(delta("A", 1)),
        chunk(delta("x", 0)),
        chunk(delta("B", 1)),
        chunk(delta("y", 0, finish="stop")),
        chunk(delta("C", 1, finish="length")),
        {**HEAD, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}},
        "[DONE]",
    )
    assert (text_of(events, 0), text_of(events, 1)) == ("xy", "ABC")
    # usage is one total: the first choice keeps its count, the last takes the rest
    assert done == [Finished(0, "stop", 2), Finished(1, "length", 7)]


def test_usage_below_what_was_counted_leaves_the_counts() -> None:
    _, done = run(
        StreamReader(2, chat=True),
        chunk(delta("a", 0), delta("b", 1)),
        chunk(delta("c", 0, finish="stop"), delta(None, 1, finish="stop")),
        {**HEAD, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
        "[DONE]",
    )
    assert [f.completion_tokens for f in done] == [2, 1]


# ---------------------------------------------------------------- completions


def test_completions_with_logprobs() -> None:
    def c(text: str, tokens: list[str], values: list[float | None], tops: list[Any], finish: str | None) -> dict[str, Any]:
        lp = {"text_offset": [0] * len(tokens), "token_logprobs": values, "tokens": tokens, "top_logprobs": tops}
        return {
            "id": "cmpl-1",
            "object": "text_completion",
            "choices": [{"index": 0, "text": text, "logprobs": lp, "finish_reason": finish}],
        }

    r = StreamReader(1, chat=False)
    events, done = run(
        r,
        c(" Paris", [" Paris"], [-0.05], [{" Paris": -0.05, " Lyon": -3.2}], None),
        c(". It", [".", " It"], [-0.5, None], [None, {" It": -1.0}], "length"),
        {"id": "cmpl-1", "object": "text_completion", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}},
        "[DONE]",
    )
    first, second = events
    assert isinstance(first, TextDelta) and isinstance(second, TextDelta)
    assert first.text == " Paris" and first.tokens == 1
    assert first.logprobs == (
        TokenLogprob(
            " Paris",
            -0.05,
            tuple(b" Paris"),
            (TopLogprob(" Paris", -0.05, tuple(b" Paris")), TopLogprob(" Lyon", -3.2, tuple(b" Lyon"))),
        ),
    )
    assert second.tokens == 2 and [t.token for t in second.logprobs] == [".", " It"]
    assert second.logprobs[0].top == () and second.logprobs[1].logprob == 0.0  # a null logprob reads as 0
    assert done == [Finished(0, "length", 3)]


def test_completions_plain_text() -> None:
    events, done = run(
        StreamReader(1, chat=False),
        {"choices": [{"index": 0, "text": "Once", "logprobs": None, "finish_reason": None}]},
        {"choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]},
        "[DONE]",
    )
    assert events == [TextDelta(0, "Once", tokens=1)] and done == [Finished(0, "stop", 1)]


# ---------------------------------------------------------------- finish reasons and broken streams


@pytest.mark.parametrize(
    ("upstream", "ours"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("eos", "stop"),
        ("eos_token", "stop"),
        ("content_filter", "stop"),
    ],
)
def test_finish_reasons_mapped(upstream: str, ours: str) -> None:
    _, done = run(StreamReader(1, chat=True), chunk(delta("x", finish=upstream)), "[DONE]")
    assert done[0].reason == ours


def test_stream_cut_before_its_end_is_a_502() -> None:
    r = StreamReader(1, chat=True)
    r.feed(json.dumps(chunk(delta("Hel"))))
    with pytest.raises(UpstreamFailed) as info:
        r.finish()
    assert info.value.status == 502
    assert_envelope(info.value)


def test_stream_cut_with_one_of_two_choices_finished() -> None:
    r = StreamReader(2, chat=True)
    r.feed(json.dumps(chunk(delta("a", 0, finish="stop"), delta("b", 1))))
    with pytest.raises(UpstreamFailed):
        r.finish()


def test_every_choice_finished_without_done_is_complete() -> None:
    r = StreamReader(1, chat=True)
    r.feed(json.dumps(chunk(delta("a", finish="stop"))))
    assert r.finish() == [Finished(0, "stop", 1)]


@pytest.mark.parametrize(
    "event",
    [
        {
            "error": {
                "object": "error",
                "message": "CUDA out of memory",
                "type": "InternalServerError",
                "param": None,
                "code": 500,
            }
        },
        {"error": "Request failed during generation: Server error: OOM", "error_type": "generation"},
    ],
)
def test_in_band_error_event_raises(event: dict[str, Any]) -> None:
    r = StreamReader(1, chat=True)
    r.feed(json.dumps(chunk(delta("a"))))
    with pytest.raises(UpstreamFailed) as info:
        r.feed(json.dumps(event))
    assert "out of memory" in info.value.message.lower() or "OOM" in info.value.message
    assert_envelope(info.value)


@pytest.mark.parametrize("data", ["not json", "[1, 2]", json.dumps(chunk(delta("a", 1)))])
def test_garbage_and_unasked_choices_are_502s(data: str) -> None:
    with pytest.raises(UpstreamFailed):
        StreamReader(1, chat=True).feed(data)


def test_a_whole_answer_reads_as_one_chunk() -> None:
    """A server that ignores stream: true: its chat.completion (tool calls too) or text_completion is one event."""
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    chat = {
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [call]}, "finish_reason": "tool_calls"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 7},
    }
    reader = StreamReader(1, chat=True)
    events = reader.feed(whole_as_chunk(chat))
    assert events == [ToolCallDelta(0, 0, "call_1", "f", '{"a":1}')]
    reader.feed("[DONE]")
    assert reader.finish() == [Finished(0, "tool_calls", 7)] and reader.prompt_tokens == 9
    text = {"object": "text_completion", "choices": [{"index": 0, "text": "Paris.", "finish_reason": "stop"}]}
    reader = StreamReader(1, chat=False)
    assert reader.feed(whole_as_chunk(text)) == [TextDelta(0, "Paris.", tokens=1)]
    assert whole_as_chunk({"error": {"message": "no"}}) == '{"error": {"message": "no"}}'
