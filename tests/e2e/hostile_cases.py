"""The hostile-input corpus: malformed and hostile requests, each with the exact 4xx it must get.

Data only; ``test_hostile_corpus_e2e.py`` sends them to the real server. A case's ``body`` is
raw bytes (sent as they are), a JSON value (serialised here, NaN allowed), a callable returning
bytes (built when sent, so the big ones cost nothing at import), or None (no body). Every body
goes out as ``Content-Type: application/json`` unless the case's headers say otherwise.

Where Faceplate answers on purpose otherwise than a guess at OpenAI would (a 404 for a missing
file has no param, as OpenAI's; a missing previous response is a 400 with a code, as OpenAI's;
max_tokens past the context is OpenAI's context_length_exceeded naming messages), the case
expects what Faceplate documents.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faceplate.config import DEFAULT_CHAT_MODEL_ID, DEFAULT_EMBEDDING_MODEL_ID

CHAT = DEFAULT_CHAT_MODEL_ID
EMBED = DEFAULT_EMBEDDING_MODEL_ID
CH, CO, EM, RS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"
FI, BA, CV = "/v1/files", "/v1/batches", "/v1/conversations"
HI = [{"role": "user", "content": "hi"}]


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes | Callable[[], bytes] | Any = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 400
    param: str | None = None
    code: str | None = None
    chunked: bool = False  # sent with Transfer-Encoding: chunked, no Content-Length
    xfail: str | None = None  # the reason, when the server is known to answer wrongly

    def content(self) -> bytes | None:
        if self.body is None or isinstance(self.body, bytes):
            return self.body
        if callable(self.body):
            return self.body()
        return json.dumps(self.body, allow_nan=True).encode()


def bad(name: str, path: str, body: Any, param: str | None = None, code: str | None = None, **kw: Any) -> Case:
    """A POST (unless ``method=``) answered 400 (unless ``status=``)."""
    return Case(name, kw.pop("method", "POST"), path, body, param=param, code=code, **kw)


def get(name: str, path: str, param: str | None = None, code: str | None = None, **kw: Any) -> Case:
    return Case(name, kw.pop("method", "GET"), path, param=param, code=code, **kw)


def chat(**kw: Any) -> dict[str, Any]:
    return {"model": CHAT, "messages": HI, "max_tokens": 1, **kw}


def comp(**kw: Any) -> dict[str, Any]:
    return {"model": CHAT, "prompt": "hi", "max_tokens": 1, **kw}


def emb(**kw: Any) -> dict[str, Any]:
    return {"model": EMBED, "input": "hi", **kw}


def resp(**kw: Any) -> dict[str, Any]:
    return {"model": CHAT, "input": "hi", "max_output_tokens": 16, **kw}


def raw(text: bytes) -> bytes:
    """A body sent exactly as written; ``MODEL`` stands for the chat model's id."""
    return text.replace(b"MODEL", CHAT.encode())


def user(content: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


def schema_format(schema: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def chat_schema(schema: Any, **kw: Any) -> dict[str, Any]:
    return chat(response_format=schema_format(schema), **kw)


def raw_message(content: bytes, extra: bytes = b"") -> bytes:
    """A chat body whose one message's content is written as given (escapes and raw bytes alike)."""
    return raw(b'{"model":"MODEL","messages":[{"role":"user","content":"' + content + b'"' + extra + b"}]}")


def custom_tool(definition: str, syntax: str = "regex") -> list[dict[str, Any]]:
    return [{"type": "custom", "name": "t", "format": {"type": "grammar", "syntax": syntax, "definition": definition}}]


def nested(levels: int, open_: bytes = b"[", close: bytes = b"]") -> Callable[[], bytes]:
    return lambda: raw(b'{"model":"MODEL","messages":') + open_ * levels + b"1" + close * levels + b"}"


def form(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body with boundary ``B``: (name, filename or None, bytes) per part."""
    out = b""
    for name, filename, data in parts:
        extra = f'; filename="{filename}"' if filename else ""
        out += f'--B\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n\r\n'.encode() + data + b"\r\n"
    return out + b"--B--\r\n"


def batch(**kw: Any) -> dict[str, Any]:
    return {"input_file_id": "file-nope", "endpoint": CH, "completion_window": "24h", **kw}


WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
SCHEMA = "response_format.json_schema.schema"
FORM = {"content-type": "multipart/form-data; boundary=B"}
LINE = b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}\n'
NOT_FOUND, UNSUPPORTED = "model_not_found", "model_not_supported"
STRING_TOOL = [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]
F, NOPE = {"type": "function", "name": "f"}, {"name": "nope"}
SHORT_EXPIRY = [
    ("purpose", None, b"user_data"),
    ("expires_after[anchor]", None, b"created_at"),
    ("expires_after[seconds]", None, b"5"),
]
SHORT_EXPIRY += [("file", "a.txt", b"x")]

MALFORMED = [
    bad("empty body", CH, b""),
    bad("not json", CH, b"hello there"),
    bad("truncated json", CH, raw(b'{"model":"MODEL","messages":[{"role":"us')),
    bad("trailing garbage", CH, raw(b'{"model":"MODEL","messages":[]} x')),
    bad("array body", CH, b"[]"),
    bad("string body", EM, b'"hi"'),
    bad("nested arrays 10000", CH, nested(10_000)),
    bad("nested objects 10000", CH, nested(10_000, b'{"a":', b"}")),
    bad("NaN temperature", CH, raw(b'{"model":"MODEL","messages":[],"temperature":NaN}')),
    bad("Infinity max_tokens", CO, raw(b'{"model":"MODEL","prompt":"a","max_tokens":Infinity}')),
    bad("-Infinity in embeddings input", EM, b'{"model":"x","input":[-Infinity]}'),
    bad("invalid utf-8", CH, b'{"model":"\xff\xfe\xfd","messages":[]}'),
    bad("utf-8 surrogate bytes", CH, raw_message(b"\xed\xa0\x80"), "messages[0].content"),
    bad("lone surrogate in a key", CH, raw_message(b"a", b',"\\udc00":1'), "messages[0]"),
    bad("lone surrogate in responses input", RS, raw(b'{"model":"MODEL","input":"x\\ud800"}'), "input"),
    bad("lone surrogate in model", EM, b'{"model":"\\udbff","input":"a"}', "model"),
    bad("raw NUL byte in a string", CH, raw_message(b"a\x00b")),
    bad("NUL in the model name", CH, chat(model="smollm2\u0000"), "model", NOT_FOUND, status=404),
    get("NUL in a path id", FI + "/file-%00", status=404),
    bad("form body to a JSON route", CH, b"model=x&messages=y", headers={"content-type": "application/x-www-form-urlencoded"}),
    bad("JSON body to the upload route", FI, {"purpose": "batch"}),
    bad("bad compat header", CH, chat(), headers={"x-faceplate-compat": "sloppy"}),
]

WRONG_TYPES = [
    bad("chat model int", CH, chat(model=5), "model"),
    bad("chat messages string", CH, chat(messages="hi"), "messages"),
    bad("chat message a string", CH, chat(messages=["hi"]), "messages[0]"),
    bad("chat content int", CH, chat(messages=user(5)), "messages[0].content"),
    bad("chat part a bare string", CH, chat(messages=user(["hi"])), "messages[0].content[0]"),
    bad("chat part type unknown", CH, chat(messages=user([{"type": "video"}])), "messages[0].content[0].type"),
    bad("chat max_tokens string", CH, chat(max_tokens="5"), "max_tokens"),
    bad("chat temperature string", CH, chat(temperature="hot"), "temperature"),
    bad("chat top_p bool", CH, chat(top_p=True), "top_p"),
    bad("chat n float", CH, chat(n=1.5), "n"),
    bad("chat stop int", CH, chat(stop=5), "stop"),
    bad("chat stream string", CH, chat(stream="yes"), "stream"),
    bad("chat logprobs string", CH, chat(logprobs="true"), "logprobs"),
    bad("chat seed float", CH, chat(seed=1.5), "seed"),
    bad("chat logit_bias list", CH, chat(logit_bias=[1, 2]), "logit_bias"),
    bad("chat tools object", CH, chat(tools={"type": "function"}), "tools"),
    bad("chat tool_choice int", CH, chat(tool_choice=5), "tool_choice"),
    bad("chat tool_choice empty object", CH, chat(tools=WEATHER, tool_choice={}), "tool_choice.type"),
    bad("chat function_call int", CH, chat(function_call=5), "function_call"),
    bad("chat response_format string", CH, chat(response_format="json"), "response_format"),
    bad("chat stream_options bool", CH, chat(stream=True, stream_options=True), "stream_options"),
    bad("chat metadata list", CH, chat(metadata=["a"]), "metadata"),
    bad("completions prompt object", CO, comp(prompt={"text": "hi"}), "prompt"),
    bad("completions prompt floats", CO, comp(prompt=[1.5, 2.5]), "prompt[0]"),
    bad("completions echo string", CO, comp(echo="yes"), "echo"),
    bad("completions logprobs bool", CO, comp(logprobs=True), "logprobs"),
    bad("embeddings input object", EM, emb(input={"a": 1}), "input"),
    bad("embeddings input mixed", EM, emb(input=["a", 1]), "input"),
    bad("embeddings encoding_format hex", EM, emb(encoding_format="hex"), "encoding_format"),
    bad("embeddings dimensions string", EM, emb(dimensions="3"), "dimensions"),
    bad("embeddings model null", EM, emb(model=None), "model"),
    bad("responses input int", RS, resp(input=5), "input"),
    bad("responses instructions list", RS, resp(instructions=["a"]), "instructions"),
    bad("responses tools string", RS, resp(tools="web_search"), "tools"),
    bad("responses text.format string", RS, resp(text={"format": "json"}), "text.format"),
    bad("responses max_output_tokens string", RS, resp(max_output_tokens="16"), "max_output_tokens"),
    bad("responses include unknown", RS, resp(include=["everything"]), "include[0]"),
    bad("responses truncation sideways", RS, resp(truncation="sideways"), "truncation"),
    bad("responses metadata list", RS, resp(metadata=["a"]), "metadata"),
    bad("input_tokens input int", "/v1/responses/input_tokens", {"input": 5}, "input"),
    bad("conversation items a string", CV, {"items": "hi"}, "items"),
    bad("batch input_file_id int", BA, batch(input_file_id=5), "input_file_id"),
]

HUGE = [
    bad("100000 messages", CH, lambda: json.dumps(chat(messages=HI * 100_000)).encode(), "messages"),
    bad("n too large", CH, chat(n=129), "n"),
    bad("logit_bias 5000 entries", CH, chat(logit_bias={str(i): 1 for i in range(5000)}), "logit_bias"),
    bad("logit_bias 5000-digit key", CH, chat(logit_bias={"9" * 5000: 1}), "logit_bias"),
    bad("stop 5 strings", CH, chat(stop=["a", "b", "c", "d", "e"]), "stop"),
    bad("200 tools", CH, chat(tools=WEATHER * 200), "tools"),
    bad("3000 embedding inputs", EM, emb(input=["a"] * 3000), "input"),
    bad("3000 prompts", CO, comp(prompt=["a"] * 3000), "prompt"),
    bad("3000 response items", RS, resp(input=user("a") * 3000), "input"),
    bad("conversation metadata 20 pairs", CV, {"metadata": {str(i): "v" for i in range(20)}}, "metadata"),
]

LOOP = {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}
SCHEMAS = [
    bad("schema with an unknown type", CH, chat_schema({"type": "nonsense"}), SCHEMA),
    bad("schema $ref loop", CH, chat_schema(LOOP), SCHEMA),
    bad("schema dangling $ref", CH, chat_schema({"$ref": "#/$defs/missing"}), SCHEMA),
    bad("schema unsatisfiable", CH, chat_schema({"type": "string", "minLength": 5, "maxLength": 2}), SCHEMA),
    bad("unsatisfiable schema, streamed", CH, chat_schema({"type": "integer", "minimum": 5, "maximum": 1}, stream=True), SCHEMA),
    bad("schema not an object", CH, chat_schema("string"), SCHEMA),
    bad(
        "schema name invalid",
        CH,
        chat(response_format={"type": "json_schema", "json_schema": {"name": "a b"}}),
        "response_format.json_schema.name",
    ),
    bad("tool parameters not an object schema", CH, chat(tools=STRING_TOOL), "tools[0].function.parameters"),
    bad(
        "responses schema bad",
        RS,
        resp(text={"format": {"type": "json_schema", "name": "x", "schema": {"type": 7}}}),
        "text.format.schema",
    ),
    bad("custom tool bad regex", RS, resp(tools=custom_tool("(unclosed")), "tools[0].format.definition"),
    bad(
        "custom tool empty regex, streamed",
        RS,
        resp(stream=True, tool_choice="required", tools=custom_tool("[a&&b]")),
        "tools[0].format.definition",
    ),
    bad("custom tool lark grammar (unsupported)", RS, resp(tools=custom_tool("start: ???", "lark")), "tools[0].format.syntax"),
]

TOKENS = [
    bad("completion token id out of vocabulary", CO, comp(prompt=[999_999_999]), "prompt"),
    bad("completion negative token id", CO, comp(prompt=[[1, 2], [-1]]), "prompt"),
    bad("embedding token id out of vocabulary", EM, emb(input=[[999_999_999]]), "input", "invalid_value"),
    bad("embedding negative token id", EM, emb(input=[-1]), "input"),
    bad("logit_bias token out of vocabulary", CH, chat(logit_bias={"999999999": 5}), "logit_bias"),
    bad("logit_bias value over 100", CH, chat(logit_bias={"1": 101}), "logit_bias"),
]

LIMITS = [
    bad("max_tokens 0", CH, chat(max_tokens=0), "max_tokens"),
    bad("max_tokens negative", CO, comp(max_tokens=-1), "max_tokens"),
    bad("max_tokens past the context", CH, chat(max_tokens=10**9), "messages", "context_length_exceeded"),
    bad("max_completion_tokens 0", CH, chat(max_completion_tokens=0), "max_completion_tokens"),
    bad("n 0", CO, comp(n=0), "n"),
    bad("top_logprobs 21", CH, chat(logprobs=True, top_logprobs=21), "top_logprobs"),
    bad("top_logprobs negative", CH, chat(logprobs=True, top_logprobs=-1), "top_logprobs"),
    bad("top_logprobs without logprobs", CH, chat(top_logprobs=2), "top_logprobs"),
    bad("completions logprobs 6", CO, comp(logprobs=6), "logprobs"),
    bad("temperature negative", CH, chat(temperature=-0.1), "temperature"),
    bad("temperature 2.5", CO, comp(temperature=2.5), "temperature"),
    bad("top_p 1.5", CH, chat(top_p=1.5), "top_p"),
    bad("presence_penalty 3", CH, chat(presence_penalty=3), "presence_penalty"),
    bad("frequency_penalty -3", CO, comp(frequency_penalty=-3), "frequency_penalty"),
    bad("seed past 64 bits", CH, chat(seed=2**64), "seed"),
    bad("seed below 64 bits", CO, comp(seed=-(2**63) - 1), "seed"),
    bad("best_of other than n", CO, comp(best_of=3), "best_of"),
    bad("dimensions 0", EM, emb(dimensions=0), "dimensions"),
    bad("dimensions past native", EM, emb(dimensions=385), "dimensions"),
    bad("responses max_output_tokens 15", RS, resp(max_output_tokens=15), "max_output_tokens"),
    bad("responses temperature 3", RS, resp(temperature=3), "temperature"),
    bad("responses top_p -1", RS, resp(top_p=-1), "top_p"),
    bad("responses top_logprobs 21", RS, resp(top_logprobs=21), "top_logprobs"),
    bad("responses max_tool_calls 0", RS, resp(max_tool_calls=0), "max_tool_calls"),
]

REFUSALS = [
    bad("unknown chat model", CH, chat(model="gpt-nope"), "model", NOT_FOUND, status=404),
    bad("unknown embedding model", EM, emb(model="text-embedding-nope"), "model", NOT_FOUND, status=404),
    bad("unknown responses model", RS, resp(model="gpt-nope"), "model", NOT_FOUND, status=404),
    get("unknown model retrieve", "/v1/models/gpt-nope", "model", NOT_FOUND, status=404),
    bad("embedding model for chat", CH, chat(model=EMBED), "model", UNSUPPORTED),
    bad("chat model for embeddings", EM, emb(model=CHAT), "model", UNSUPPORTED),
    bad("messages empty", CH, chat(messages=[]), "messages"),
    bad("messages missing", CH, {"model": CHAT}, "messages"),
    bad("embeddings input empty string", EM, emb(input=""), "input"),
    bad("embeddings input empty list", EM, emb(input=[]), "input"),
    bad("completions prompt empty list", CO, comp(prompt=[]), "prompt"),
    bad("unsupported chat role", CH, chat(messages=[{"role": "wizard", "content": "hi"}]), "messages[0].role"),
    bad("unsupported responses role", RS, resp(input=[{"role": "wizard", "content": "hi"}]), "input[0].role"),
    bad(
        "tool_choice names a missing function",
        CH,
        chat(tools=WEATHER, tool_choice={"type": "function", "function": NOPE}),
        "tool_choice",
    ),
    bad(
        "responses tool_choice names a missing function",
        RS,
        resp(tools=[F], tool_choice={"type": "function", **NOPE}),
        "tool_choice.name",
    ),
    bad("tool_choice required without tools", CH, chat(tool_choice="required"), "tool_choice"),
    bad("unsupported hosted tool", RS, resp(tools=[{"type": "web_search"}]), "tools[0].type"),
]

FILES_AND_BATCHES = [
    bad("upload bad purpose", FI, form(("purpose", None, b"bogus"), ("file", "a.jsonl", LINE)), "purpose", headers=FORM),
    bad("upload without a file", FI, form(("purpose", None, b"batch")), "file", headers=FORM),
    bad("upload expires_after too short", FI, form(*SHORT_EXPIRY), "expires_after.seconds", headers=FORM),
    bad("upload truncated multipart", FI, form(("purpose", None, b"batch"))[:-12], headers=FORM),
    get("retrieve a missing file", FI + "/file-nope", status=404),
    get("delete a missing file", FI + "/file-nope", status=404, method="DELETE"),
    get("content of a missing file", FI + "/file-nope/content", status=404),
    bad("batch of a missing file", BA, batch(), "input_file_id"),
    bad("batch endpoint unsupported", BA, batch(endpoint="/v1/moderations"), "endpoint"),
    bad("batch window 48h", BA, batch(completion_window="48h"), "completion_window"),
    bad(
        "batch output expiry 5 s",
        BA,
        batch(output_expires_after={"anchor": "created_at", "seconds": 5}),
        "output_expires_after.seconds",
    ),
    get("retrieve a missing batch", BA + "/batch_nope", status=404),
    bad("cancel a missing batch", BA + "/batch_nope/cancel", None, status=404),
    get("retrieve a missing response", "/v1/responses/resp_nope", "response_id", status=404),
    get("delete a missing response", "/v1/responses/resp_nope", "response_id", status=404, method="DELETE"),
    get("retrieve a missing conversation", CV + "/conv_nope", "conversation_id", status=404),
    bad("items for a missing conversation", CV + "/conv_nope/items", {"items": user("a")}, "conversation_id", status=404),
    bad(
        "previous_response_id missing",
        RS,
        resp(previous_response_id="resp_nope"),
        "previous_response_id",
        "previous_response_not_found",
    ),
    bad("responses conversation missing", RS, resp(conversation="conv_nope"), "conversation", status=404),
]

PAGING = [
    get("files limit 0", "/v1/files?limit=0", "limit"),
    get("files limit abc", "/v1/files?limit=abc", "limit"),
    get("files limit 100000", "/v1/files?limit=100000", "limit"),
    get("files order sideways", "/v1/files?order=sideways", "order"),
    get("batches limit 0", "/v1/batches?limit=0", "limit"),
    get("batches limit 1000", "/v1/batches?limit=1000", "limit"),
    get("batches limit abc", "/v1/batches?limit=abc", "limit"),
    get("conversation items order sideways", CV + "/conv_nope/items?order=sideways", "order"),
    get("input items limit 0", "/v1/responses/resp_nope/input_items?limit=0", "limit"),
    get("replay starting_after abc", "/v1/responses/resp_nope?stream=true&starting_after=abc", "starting_after"),
]

TOO_LARGE = "request_header_fields_too_large"
TRANSPORT = [
    bad("431 one 40 KB header", CH, chat(), None, TOO_LARGE, status=431, headers={"x-big": "a" * 40_000}),
    bad("431 200 headers", CH, chat(), None, TOO_LARGE, status=431, headers={f"x-h{i}": "v" for i in range(200)}),
    bad("413 9 MB body", CH, lambda: b'{"model":"' + b"a" * 9_000_000 + b'"}', None, "request_too_large", status=413),
    bad("413 9 MB chunked body", EM, lambda: b" " * 9_000_000, None, "request_too_large", status=413, chunked=True),
    bad("405 PUT chat", CH, chat(), None, "method_not_allowed", status=405, method="PUT"),
    get("405 GET embeddings", EM, None, "method_not_allowed", status=405),
    get("405 DELETE models", "/v1/models", None, "method_not_allowed", status=405, method="DELETE"),
    bad("405 PATCH file", FI + "/file-nope", b"{}", None, "method_not_allowed", status=405, method="PATCH"),
    bad("404 unknown route", "/v1/chat/complete", chat(), status=404),
    bad("401 without a key", CH, chat(), None, "invalid_api_key", status=401, headers={"authorization": ""}),
]

CASES: list[Case] = [
    *MALFORMED,
    *WRONG_TYPES,
    *HUGE,
    *SCHEMAS,
    *TOKENS,
    *LIMITS,
    *REFUSALS,
    *FILES_AND_BATCHES,
    *PAGING,
    *TRANSPORT,
]
