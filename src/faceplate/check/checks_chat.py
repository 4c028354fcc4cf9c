"""Chat completions: the body, the parameters clients rely on, and the stream."""

from __future__ import annotations

import json
import time
from typing import Any

from jsonschema import Draft202012Validator

from faceplate.check.http import Reply, trim
from faceplate.check.runner import CHAT, Check, Context, Fail, Skip, expect, ok

LIMIT = 3  # the max_tokens / max_completion_tokens tested: far below what the counting prompt needs
# A forced tool call costs the chat template's wrapper (about 12 tokens with SmolLM2's) before the
# arguments, and a JSON answer may carry grammar-allowed whitespace: these two get a little more room.
TOOL_TOKENS = 24
JSON_TOKENS = 16
NOW_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "description": "The current time", "parameters": {"type": "object", "properties": {}}},
}
DATE_TOOL = {
    "type": "function",
    "function": {"name": "get_date", "description": "Today's date", "parameters": {"type": "object", "properties": {}}},
}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
    "additionalProperties": False,
}


async def chat_reply(ctx: Context) -> Reply:
    """The plain chat exchange most chat checks read."""
    return await ctx.post_once("chat", CHAT, ctx.chat_body())


def _choice(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    choices = body.get("choices")
    expect(isinstance(choices, list) and len(choices) > 0 and isinstance(choices[0], dict), "no choices", reply)
    return choices[0]


async def chat_schema(ctx: Context) -> str:
    reply = await chat_reply(ctx)
    ok(reply)
    ctx.valid(reply, "CreateChatCompletionResponse")
    return "valid CreateChatCompletionResponse"


async def chat_object(ctx: Context) -> str:
    reply = await chat_reply(ctx)
    value = ok(reply).get("object")
    expect(value == "chat.completion", f"object is {value!r}", reply)
    return 'object "chat.completion"'


async def chat_id(ctx: Context) -> str:
    reply = await chat_reply(ctx)
    value = ok(reply).get("id")
    expect(isinstance(value, str) and value.startswith("chatcmpl-"), f"id is {value!r}", reply)
    return f"id {trim(str(value), 40)}"


async def chat_created(ctx: Context) -> str:
    reply = await chat_reply(ctx)
    value = ok(reply).get("created")
    expect(isinstance(value, int) and not isinstance(value, bool), f"created is {value!r}, not an integer", reply)
    # Seconds, not milliseconds: within a day of this machine's clock (clocks may differ a little).
    expect(abs(value - time.time()) < 86400, f"created {value} is not the current Unix time in seconds", reply)
    return f"created {value}"


async def chat_model(ctx: Context) -> str:
    reply = await chat_reply(ctx)
    asked = ctx.chat_model()
    value = ok(reply).get("model")
    # OpenAI itself answers with a dated snapshot of the name asked for (gpt-4o -> gpt-4o-2024-08-06).
    expect(value == asked or (isinstance(value, str) and value.startswith(asked + "-")), f"asked {asked!r}, got {value!r}", reply)
    return f"model {value!r}"


async def _limit(ctx: Context, field: str) -> str:
    body = ctx.chat_body()
    del body["max_tokens"]
    body[field] = LIMIT
    reply = await ctx.post_once(field, CHAT, body)
    if reply.status == 400:
        raise Fail(f"{field} refused", reply)
    choice = _choice(ok(reply), reply)
    usage = ok(reply).get("usage")
    used = usage.get("completion_tokens") if isinstance(usage, dict) else None
    finish = choice.get("finish_reason")
    if isinstance(used, int) and used > LIMIT:
        raise Fail(f"{field}={LIMIT} but {used} tokens generated", reply)
    if finish == "length":
        return f"finish_reason length{f' at {used} tokens' if used is not None else ''}"
    if finish == "stop" and isinstance(used, int) and used < LIMIT:
        raise Skip(f"the model stopped on its own after {used} tokens, before the limit")
    raise Fail(f"{field}={LIMIT}: finish_reason {finish!r}, expected 'length'", reply)


async def chat_max_tokens(ctx: Context) -> str:
    return await _limit(ctx, "max_tokens")


async def chat_max_completion_tokens(ctx: Context) -> str:
    return await _limit(ctx, "max_completion_tokens")


def pick_stop(text: str) -> tuple[str, int] | None:
    """A two-character stop string first occurring inside ``text`` (from the middle on), and where."""
    half = max(1, len(text) // 2)
    for k in [*range(half, len(text) - 1), *range(1, half)]:
        stop = text[k : k + 2]
        if stop.strip() and text.find(stop) == k:
            return stop, k
    return None


async def chat_stop(ctx: Context) -> str:
    base = await chat_reply(ctx)
    content = _choice(ok(base), base).get("message", {}).get("content") or ""
    picked = pick_stop(content)
    if picked is None:
        raise Skip(f"the plain answer {content!r} is too short to cut with a stop sequence")
    stop, at = picked
    reply = await ctx.post_once("stop", CHAT, ctx.chat_body(stop=[stop]))
    choice = _choice(ok(reply), reply)
    text = choice.get("message", {}).get("content") or ""
    expect(stop not in text, f"stop {stop!r} still in the content {text!r}", reply)
    expect(choice.get("finish_reason") == "stop", f"finish_reason {choice.get('finish_reason')!r}, expected 'stop'", reply)
    expect(
        content.startswith(text),
        f"content {text!r} is not the start of the answer without stop {content!r} (temperature 0 not repeatable?)",
        reply,
    )
    return f"stopped at {stop!r} after {len(text)} chars"


async def chat_n(ctx: Context) -> str:
    reply = await ctx.post_once("n", CHAT, ctx.chat_body(n=2, max_tokens=2))
    if reply.status != 200:
        raise Fail(f"n=2 refused: HTTP {reply.status}", reply)
    choices = ok(reply).get("choices")
    expect(isinstance(choices, list), "no choices", reply)
    expect(len(choices) != 1, "n=2 ignored: one choice", reply)
    indexes = sorted(c.get("index") for c in choices if isinstance(c, dict))
    expect(indexes == [0, 1], f"n=2 gave choices with index {indexes}, expected [0, 1]", reply)
    return "two choices, index 0 and 1"


def _logprob_problem(item: Any, top: int | None) -> str | None:
    if not isinstance(item, dict):
        return f"entry {item!r} is not an object"
    if not isinstance(item.get("token"), str) or not isinstance(item.get("logprob"), (int, float)):
        return f"entry {trim(json.dumps(item), 80)} lacks a string token or a number logprob"
    if "bytes" not in item:
        return f"entry for {item['token']!r} has no bytes"
    if item["bytes"] is not None and not (isinstance(item["bytes"], list) and all(isinstance(b, int) for b in item["bytes"])):
        return f"bytes of {item['token']!r} is {item['bytes']!r}, not a list of integers"
    if top is not None:
        alts = item.get("top_logprobs")
        if not isinstance(alts, list) or len(alts) != top:
            return f"top_logprobs of {item['token']!r} has {len(alts) if isinstance(alts, list) else alts!r} entries, asked {top}"
        return next((p for p in (_logprob_problem(a, None) for a in alts) if p), None)
    return None


async def chat_logprobs(ctx: Context) -> str:
    reply = await ctx.post_once("logprobs", CHAT, ctx.chat_body(logprobs=True, top_logprobs=2, max_tokens=3))
    choice = _choice(ok(reply), reply)
    # The logprobs themselves, checked field by field; the body's other fields are chat.schema's to judge
    # (so a server that gives good logprobs but omits `refusal` is reported once, and the gateway, which
    # rebuilds every body, still knows it can ask for logprobs).
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    expect(isinstance(content, list) and len(content) > 0, f"logprobs is {trim(json.dumps(logprobs), 80)}", reply)
    problem = next((p for p in (_logprob_problem(item, 2) for item in content) if p), None)
    expect(problem is None, str(problem), reply)
    return f"{len(content)} tokens with logprob, bytes and 2 top_logprobs"


async def tool_reply(ctx: Context, key: str, tool_choice: Any) -> Reply:
    body = ctx.chat_body(
        messages=[{"role": "user", "content": "What time is it, and what is the date? Use the tools."}],
        tools=[NOW_TOOL, DATE_TOOL],
        tool_choice=tool_choice,
        max_tokens=TOOL_TOKENS,
    )
    return await ctx.post_once(key, CHAT, body)


async def _tool_call(ctx: Context, key: str, tool_choice: Any, name: str) -> str:
    reply = await tool_reply(ctx, key, tool_choice)
    choice = _choice(ok(reply), reply)
    calls = choice.get("message", {}).get("tool_calls")
    expect(isinstance(calls, list) and len(calls) > 0, f"tool_choice {json.dumps(tool_choice)} gave no tool call", reply)
    call = calls[0]
    function = call.get("function") or {}
    expect(call.get("type") == "function" and isinstance(call.get("id"), str), "tool call without type function and an id", reply)
    expect(function.get("name") == name, f"called {function.get('name')!r}, expected {name!r}", reply)
    arguments = function.get("arguments")
    expect(isinstance(arguments, str), f"arguments is {type(arguments).__name__}, not a JSON string", reply)
    finish = choice.get("finish_reason")
    if finish == "length":
        return f"{name} called (cut at max_tokens {TOOL_TOKENS})"
    expect(finish == "tool_calls", f"finish_reason {finish!r}, expected 'tool_calls'", reply)
    try:
        parsed = json.loads(arguments)
    except ValueError:
        raise Fail(f"arguments {arguments!r} are not JSON", reply) from None
    expect(isinstance(parsed, dict), f"arguments {arguments!r} are not a JSON object", reply)
    return f"{name} called, finish_reason tool_calls"


async def chat_tool_required(ctx: Context) -> str:
    return await _tool_call(ctx, "tool-required", "required", "get_time")


async def chat_tool_named(ctx: Context) -> str:
    return await _tool_call(ctx, "tool-named", {"type": "function", "function": {"name": "get_date"}}, "get_date")


async def chat_json_schema(ctx: Context) -> str:
    body = ctx.chat_body(
        messages=[{"role": "user", "content": "What is 2 + 2? Reply in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": ANSWER_SCHEMA}},
        max_tokens=JSON_TOKENS,
    )
    reply = await ctx.post_once("json_schema", CHAT, body)
    content = _choice(ok(reply), reply).get("message", {}).get("content") or ""
    try:
        value = json.loads(content)
    except ValueError:
        raise Fail(f"content {trim(content, 80)!r} is not JSON", reply) from None
    error = next(Draft202012Validator(ANSWER_SCHEMA).iter_errors(value), None)
    expect(error is None, f"content {trim(content, 80)!r} does not match the schema: {error and error.message}", reply)
    return f"content {trim(content, 40)} matches the schema"


async def plain_stream(ctx: Context) -> Reply:
    return await ctx.stream_once("stream", CHAT, ctx.chat_body(stream=True, max_tokens=4))


def chunks(reply: Reply) -> list[dict[str, Any]]:
    """The stream's JSON chunks; fails on an error status, no events, or data that is not a JSON object."""
    expect(reply.status == 200, f"HTTP {reply.status}", reply)
    expect(len(reply.events) > 0, "no SSE events in the body", reply)
    for i, (event, data) in enumerate(zip([e for e in reply.events if not e.done], reply.data, strict=True)):
        expect(isinstance(data, dict), f"event {i} data is not a JSON object: {trim(event.data, 80)!r}", reply)
    return reply.data


async def stream_content_type(ctx: Context) -> str:
    reply = await plain_stream(ctx)
    expect(reply.status == 200, f"HTTP {reply.status}", reply)
    expect(reply.content_type.split(";")[0].strip() == "text/event-stream", f"content-type {reply.content_type!r}", reply)
    return "text/event-stream"


async def stream_chunks(ctx: Context) -> str:
    reply = await plain_stream(ctx)
    data = chunks(reply)
    named = [e.event for e in reply.events if e.event is not None]
    expect(not named, f"chat chunks carry an event: line ({named[:1]}); clients expect none", reply)
    for i, chunk in enumerate(data):
        problem = ctx.contract.problem(chunk, "CreateChatCompletionStreamResponse")
        expect(problem is None, f"chunk {i}: {problem}", reply)
    expect(any(c.get("choices") for c in data), "no chunk has a choice", reply)
    return f"{len(data)} valid chunks"


async def stream_done(ctx: Context) -> str:
    reply = await plain_stream(ctx)
    chunks(reply)
    done = [i for i, e in enumerate(reply.events) if e.done]
    expect(len(done) > 0, "no data: [DONE] terminator", reply)
    expect(done == [len(reply.events) - 1], "events after data: [DONE]", reply)
    return "ends with data: [DONE]"


async def stream_no_usage(ctx: Context) -> str:
    reply = await plain_stream(ctx)
    with_usage = [i for i, c in enumerate(chunks(reply)) if c.get("usage") is not None]
    expect(not with_usage, f"usage sent without stream_options.include_usage (chunk {with_usage[:1]})", reply)
    return "no usage unless asked"


async def usage_stream(ctx: Context) -> Reply:
    body = ctx.chat_body(stream=True, max_tokens=4, stream_options={"include_usage": True})
    return await ctx.stream_once("stream-usage", CHAT, body)


async def stream_include_usage(ctx: Context) -> str:
    reply = await usage_stream(ctx)
    data = chunks(reply)
    last = data[-1]
    expect(isinstance(last.get("usage"), dict), "include_usage: the last chunk carries no usage", reply)
    expect(last.get("choices") == [], f"the usage chunk has choices {trim(json.dumps(last.get('choices')), 60)}, not []", reply)
    problem = ctx.contract.problem(last, "CreateChatCompletionStreamResponse")
    expect(problem is None, f"usage chunk: {problem}", reply)
    early = [i for i, c in enumerate(data[:-1]) if c.get("usage") is not None]
    expect(not early, f"chunk {early[:1]} before the last carries usage (must be null or absent)", reply)
    return f"usage in a final choices:[] chunk ({last['usage'].get('total_tokens')} tokens)"


CHAT_CHECKS = (
    Check("chat.schema", "a chat completion body validates against CreateChatCompletionResponse", chat_schema),
    Check("chat.object", 'object is "chat.completion"', chat_object),
    Check("chat.id", 'id starts with "chatcmpl-"', chat_id),
    Check("chat.created", "created is an integer Unix time in seconds", chat_created),
    Check("chat.model", "model echoes the model asked for (or a dated snapshot of it)", chat_model),
    Check("chat.max_tokens", "max_tokens stops generation at the limit with finish_reason length", chat_max_tokens),
    Check(
        "chat.max_completion_tokens",
        "max_completion_tokens is accepted and stops generation with finish_reason length",
        chat_max_completion_tokens,
    ),
    Check("chat.stop", 'a stop sequence ends the content before it, with finish_reason "stop"', chat_stop),
    Check("chat.n", "n=2 gives two choices, index 0 and 1", chat_n),
    Check("chat.logprobs", "logprobs + top_logprobs give token, logprob, bytes and top_logprobs per token", chat_logprobs),
    Check("chat.tool_choice.required", 'tool_choice "required" gives a tool call', chat_tool_required),
    Check("chat.tool_choice.named", "tool_choice naming a function gives a call to that function", chat_tool_named),
    Check("chat.json_schema", "response_format json_schema gives JSON content matching the schema", chat_json_schema),
    Check("chat.stream.content_type", "a stream is served as text/event-stream", stream_content_type),
    Check("chat.stream.chunks", "every stream event is a JSON CreateChatCompletionStreamResponse", stream_chunks),
    Check("chat.stream.done", "a stream ends with data: [DONE]", stream_done),
    Check("chat.stream.no_usage", "no usage in a stream unless stream_options.include_usage", stream_no_usage),
    Check(
        "chat.stream.include_usage",
        "include_usage: usage in a final chunk with choices [], earlier chunks usage null or absent",
        stream_include_usage,
    ),
)
