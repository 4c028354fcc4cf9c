"""A service ``Reply`` as an HTTP response: SSE when streaming, JSON otherwise; cleanup either way."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from faceplate.config import Settings
from faceplate.errors import InvalidRequest
from faceplate.http.body import ClientDisconnected, read_body, unless_disconnected
from faceplate.http.lifecycle import stream_stop
from faceplate.http.sse import EventStreamResponse, json_response
from faceplate.protocol.common import parse_request
from faceplate.service.generation import Reply

M = TypeVar("M", bound=BaseModel)


COMPAT_HEADER = "x-faceplate-compat"


def strict_compat(request: Request, default: str) -> bool:
    """Whether this request is answered exactly as OpenAI would (the header overrides the setting)."""
    mode = request.headers.get(COMPAT_HEADER, default).strip().lower()
    if mode not in ("lenient", "strict"):
        raise InvalidRequest(f"Invalid value for the {COMPAT_HEADER} header: {mode!r}; use 'lenient' or 'strict'.")
    return mode == "strict"


async def parse_body(request: Request, model: type[M], *, endpoint: str, settings: Settings) -> tuple[M, bool]:
    """The request's wire model, under its compatibility mode; and whether that mode is strict."""
    strict = strict_compat(request, settings.compat)
    body = await read_body(request, settings.max_request_bytes)
    return parse_request(body, model, endpoint=endpoint, strict=strict), strict


async def respond(request: Request, reply: Reply, *, stream: bool, keepalive_s: float) -> Response:
    if stream and reply.startable:
        try:
            await unless_disconnected(request, reply.start)
        except ClientDisconnected:
            await reply.aclose()
            return Response(status_code=499)
        except BaseException as exc:
            await reply.aclose(exc)
            raise
    if stream:
        return EventStreamResponse(
            reply.chunks(), close=reply.aclose, keepalive_s=keepalive_s, headers=reply.headers, stop=stream_stop()
        )
    try:
        obj = await unless_disconnected(request, reply.collect)
        return json_response(obj, headers=reply.headers)
    except ClientDisconnected:
        return Response(status_code=499)
    finally:
        await reply.aclose()  # no-op when collect finished; settles a reply cancelled before it ran
