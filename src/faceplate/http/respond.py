"""A service ``Reply`` as an HTTP response: SSE when streaming, JSON otherwise; cleanup either way."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from faceplate.http.body import ClientDisconnected, read_body, unless_disconnected
from faceplate.http.sse import EventStreamResponse, json_response
from faceplate.protocol.common import parse_request
from faceplate.service.generation import Reply

M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M], *, endpoint: str, limit: int) -> M:
    return parse_request(await read_body(request, limit), model, endpoint=endpoint)


async def respond(request: Request, reply: Reply, *, stream: bool, keepalive_s: float) -> Response:
    if stream:
        return EventStreamResponse(reply.chunks(), close=reply.aclose, keepalive_s=keepalive_s, headers=reply.headers)
    try:
        obj = await unless_disconnected(request, reply.collect)
        return json_response(obj, headers=reply.headers)
    except ClientDisconnected:
        return Response(status_code=499)
    finally:
        await reply.aclose()  # no-op when collect finished; settles a reply cancelled before it ran
