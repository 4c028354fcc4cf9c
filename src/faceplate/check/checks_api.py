"""Models, errors, authentication, legacy completions and embeddings."""

from __future__ import annotations

import base64
import struct
from typing import Any

from faceplate.check.checks_chat import chunks
from faceplate.check.http import Reply
from faceplate.check.runner import CHAT, Check, Context, Fail, Skip, expect, ok

UNKNOWN_MODEL = "faceplate-check-no-such-model"
WRONG_KEY = "sk-faceplate-check-not-a-key"
EMBED_INPUT = ["The quick brown fox.", "Jumps over the lazy dog."]
EMBED_CANDIDATES = 4  # listed models tried when no --embedding-model is given


async def models_list(ctx: Context) -> str:
    reply = ctx.models
    ok(reply)
    ctx.valid(reply, "ListModelsResponse")
    return f"{len(reply.body['data'])} models listed"


async def models_retrieve(ctx: Context) -> str:
    model = ctx.chat_model()
    reply = await ctx.upstream.get(f"/models/{model}")
    body = ok(reply)
    ctx.valid(reply, "Model")
    expect(body.get("id") == model, f"id {body.get('id')!r}, asked {model!r}", reply)
    return f"Model {model!r}"


def error_envelope(ctx: Context, reply: Reply, status: int) -> dict[str, Any]:
    """The ``error`` object of an OpenAI error reply; fails naming every known deviation plainly."""
    problems = []
    if reply.status != status:
        hint = " (OpenAI answers invalid requests with 400)" if reply.status == 422 else ""
        problems.append(f"HTTP {reply.status}, expected {status}{hint}")
    body = reply.body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        problems.append('"error" is a bare string, not {"message", "type", "param", "code"}')
    elif isinstance(error, dict) and isinstance(error.get("code"), int):
        problems.append(f"error.code is the integer {error['code']}, not a string or null")
    elif isinstance(body, dict) and error is None and body.get("object") == "error":
        problems.append('a flat {"object": "error", ...} body, not {"error": {...}}')
    else:
        shape = ctx.contract.problem(body, "ErrorResponse")
        if shape is not None and reply.status != 200:  # a 200 body is not an error at all: the status says it
            problems.append(shape)
    if problems:
        raise Fail("; ".join(problems), reply)
    return error  # type: ignore[return-value]  # a valid ErrorResponse's error: an object


async def errors_missing_messages(ctx: Context) -> str:
    reply = await ctx.upstream.post(CHAT, {"model": ctx.chat_model(), "max_tokens": 1})
    error = error_envelope(ctx, reply, 400)
    return f"400 {error['type']}, param {error['param']!r}"


async def errors_bad_temperature(ctx: Context) -> str:
    reply = await ctx.upstream.post(CHAT, ctx.chat_body(temperature=5, max_tokens=1))
    error = error_envelope(ctx, reply, 400)
    return f"400 {error['type']}, param {error['param']!r}"


async def errors_unknown_model(ctx: Context) -> str:
    body = {**ctx.chat_body(max_tokens=1), "model": UNKNOWN_MODEL}
    reply = await ctx.upstream.post(CHAT, body)
    error = error_envelope(ctx, reply, 404)
    expect(error.get("code") == "model_not_found", f"code {error.get('code')!r}, expected 'model_not_found'", reply)
    return "404 model_not_found"


async def _auth(ctx: Context, key: str | None) -> str:
    if not ctx.key_given:
        raise Skip("no --key given: the server may not require one")
    reply = await ctx.upstream.with_key(key).get("/models")
    error = error_envelope(ctx, reply, 401)
    return f"401 {error['type']}, code {error['code']!r}"


async def auth_missing_key(ctx: Context) -> str:
    return await _auth(ctx, None)


async def auth_invalid_key(ctx: Context) -> str:
    return await _auth(ctx, WRONG_KEY)


def _completion_body(ctx: Context, **extra: Any) -> dict[str, Any]:
    return {"model": ctx.chat_model(), "prompt": "One, two, three,", "max_tokens": 4, "temperature": 0, **extra}


async def completions_body(ctx: Context) -> str:
    reply = await ctx.upstream.post("/completions", _completion_body(ctx))
    body = ok(reply)
    ctx.valid(reply, "CreateCompletionResponse")
    expect(str(body.get("id")).startswith("cmpl-"), f"id {body.get('id')!r} does not start with 'cmpl-'", reply)
    return "valid CreateCompletionResponse"


async def completions_stream(ctx: Context) -> str:
    reply = await ctx.upstream.stream("/completions", _completion_body(ctx, stream=True))
    data = chunks(reply)
    ctype = reply.content_type.split(";")[0].strip()
    expect(ctype == "text/event-stream", f"content-type {reply.content_type!r}", reply)
    for i, chunk in enumerate(data):
        # Legacy chunks reuse CreateCompletionResponse with finish_reason null mid-stream.
        problem = ctx.contract.problem(chunk, "FaceplateCompletionChunk")
        expect(problem is None, f"chunk {i}: {problem}", reply)
    expect(reply.events[-1].done, "no data: [DONE] at the end", reply)
    return f"{len(data)} valid chunks, then [DONE]"


async def _embedding_model(ctx: Context) -> str:
    async def find() -> str | None:
        listed = ctx.models.body.get("data") if isinstance(ctx.models.body, dict) else None
        ids = [m.get("id") for m in listed or [] if isinstance(m, dict)]
        for candidate in [i for i in ids if isinstance(i, str) and i != ctx.model][:EMBED_CANDIDATES]:
            reply = await ctx.upstream.post("/embeddings", {"model": candidate, "input": "x", "encoding_format": "float"})
            if reply.status == 200:
                return candidate
        return None

    if ctx.embedding_model is not None:
        return ctx.embedding_model
    found = await ctx.once("embedding-model", find)
    if found is None:
        raise Skip("no --embedding-model given and no listed model answers /v1/embeddings")
    return found


async def _floats(ctx: Context) -> tuple[Reply, list[list[float]]]:
    model = await _embedding_model(ctx)
    reply = await ctx.post_once("embed-float", "/embeddings", {"model": model, "input": EMBED_INPUT, "encoding_format": "float"})
    body = ok(reply)
    ctx.valid(reply, "CreateEmbeddingResponse")
    data = body["data"]
    expect([d["index"] for d in data] == [0, 1], f"{len(data)} embeddings for 2 inputs, or out of order", reply)
    vectors = [d["embedding"] for d in data]
    expect(len(vectors[0]) > 0 and len(vectors[0]) == len(vectors[1]), "empty or unequal vectors", reply)
    return reply, vectors


async def embeddings_float(ctx: Context) -> str:
    _, vectors = await _floats(ctx)
    return f"2 vectors of {len(vectors[0])} floats"


async def embeddings_base64(ctx: Context) -> str:
    _, floats = await _floats(ctx)
    model = await _embedding_model(ctx)
    reply = await ctx.upstream.post("/embeddings", {"model": model, "input": EMBED_INPUT, "encoding_format": "base64"})
    body = ok(reply)
    ctx.valid(reply, "FaceplateCreateEmbeddingResponse")
    for d, expected in zip(body["data"], floats, strict=False):
        value = d["embedding"]
        expect(isinstance(value, str), f"embedding is {type(value).__name__}, not a base64 string", reply)
        raw = base64.b64decode(value)
        expect(len(raw) == 4 * len(expected), f"{len(raw)} bytes decoded, expected {4 * len(expected)} (float32)", reply)
        # Little-endian float32, as the SDKs decode it; same numbers as the float reply, to float32 precision.
        decoded = struct.unpack(f"<{len(expected)}f", raw)
        worst = max(abs(a - b) for a, b in zip(decoded, expected, strict=True))
        expect(worst < 1e-3, f"decoded vector differs from the float one by {worst:.3g}", reply)
    return f"base64 little-endian float32, {len(floats[0])} dimensions, same as float"


API_CHECKS = (
    Check("models.list", "GET /v1/models is a ListModelsResponse", models_list),
    Check("models.retrieve", "GET /v1/models/{id} is that Model", models_retrieve),
    Check(
        "errors.missing_messages",
        'a request without messages is 400 {"error": {message, type, param, code: str|null}}',
        errors_missing_messages,
    ),
    Check("errors.bad_temperature", "temperature 5 is 400 with the OpenAI error envelope", errors_bad_temperature),
    Check("errors.unknown_model", "an unknown model is 404 with code model_not_found", errors_unknown_model),
    Check("auth.missing_key", "no Bearer key is 401 with the OpenAI error envelope", auth_missing_key),
    Check("auth.invalid_key", "a wrong Bearer key is 401 with the OpenAI error envelope", auth_invalid_key),
    Check("completions.body", "legacy /v1/completions body validates against CreateCompletionResponse", completions_body),
    Check("completions.stream", "legacy /v1/completions stream: valid chunks, text/event-stream, [DONE]", completions_stream),
    Check("embeddings.float", "/v1/embeddings float: one vector of numbers per input, in order", embeddings_float),
    Check("embeddings.base64", "/v1/embeddings base64: little-endian float32, the same vector", embeddings_base64),
)
