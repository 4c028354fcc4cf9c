"""The Responses API routes.

POST   /v1/responses                      create (JSON, or SSE with ``stream``)
POST   /v1/responses/input_tokens         count a request's input tokens
GET    /v1/responses/{id}                 retrieve; ``?stream=true&starting_after=N`` replays or resumes
DELETE /v1/responses/{id}
POST   /v1/responses/{id}/cancel          background responses only; idempotent
GET    /v1/responses/{id}/input_items     ``limit``, ``order`` (default desc), ``after``
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.errors import FaceplateError, InvalidRequest
from faceplate.http.body import ClientDisconnected, unless_disconnected
from faceplate.http.gate import principal_of
from faceplate.http.lifecycle import stream_stop
from faceplate.http.respond import parse_body
from faceplate.http.sse import EventStreamResponse, json_response
from faceplate.protocol.paging import page_params
from faceplate.protocol.responses import CreateResponseRequest, InputTokensRequest
from faceplate.service import responses, stored_responses
from faceplate.service.services import Services


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"Invalid value for '{name}': expected true or false, got {raw!r}.", param=name)
    return raw in ("true", "1")


def _int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"Invalid value for '{name}': expected an integer, got {raw!r}.", param=name) from None
    if value < -1:
        raise InvalidRequest(f"Invalid '{name}': expected a value >= -1, got {value}.", param=name)
    return value


def routes(svc: Services) -> list[Route]:
    keepalive = svc.settings.keepalive_s

    async def create(request: Request) -> Response:
        body, _ = await parse_body(request, CreateResponseRequest, endpoint="responses", settings=svc.settings)
        run = await responses.create(svc, principal_of(request), body)
        headers = run.reply.headers
        if body.stream:

            async def close() -> None:
                if not run.background:  # the client left: stop generating (a background run goes on)
                    await run.cancel()

            async def on_stop(error: FaceplateError, last: dict[str, Any] | None) -> AsyncIterator[dict[str, Any]]:
                await run.stop(error)  # the deadline: the run ends failed, and its stream with it
                return run.follow(-1 if last is None else last["sequence_number"])

            stream = run.follow()
            return EventStreamResponse(
                stream,
                close=close,
                keepalive_s=keepalive,
                headers=headers,
                done=False,
                named=True,
                stop=stream_stop(),
                on_stop=on_stop,
            )
        if body.background:
            return json_response(run.state.snapshot(), headers=headers)
        try:
            return json_response(await unless_disconnected(request, run.wait), headers=headers)
        except ClientDisconnected:
            await run.cancel()
            return Response(status_code=499)
        finally:
            if not run.finished:  # the request was cancelled (its deadline, a drain's end): so is the run
                await asyncio.shield(run.cancel())

    async def count(request: Request) -> Response:
        body, _ = await parse_body(request, InputTokensRequest, endpoint="responses.input_tokens", settings=svc.settings)
        return json_response(await stored_responses.input_tokens(svc, principal_of(request), body))

    async def retrieve(request: Request) -> Response:
        rid = request.path_params["response_id"]
        principal = principal_of(request)
        if _flag(request, "stream"):
            events = await stored_responses.resume(svc, principal, rid, _int(request, "starting_after"))

            async def nothing() -> None:
                return None

            return EventStreamResponse(events, close=nothing, keepalive_s=keepalive, done=False, named=True)
        return json_response(await stored_responses.retrieve(svc, principal, rid))

    async def delete(request: Request) -> Response:
        return json_response(await stored_responses.delete(svc, principal_of(request), request.path_params["response_id"]))

    async def cancel(request: Request) -> Response:
        return json_response(await stored_responses.cancel(svc, principal_of(request), request.path_params["response_id"]))

    async def input_items(request: Request) -> Response:
        page = page_params(request.query_params)
        rid = request.path_params["response_id"]
        return json_response(await stored_responses.input_items(svc, principal_of(request), rid, page))

    return [
        Route("/v1/responses", create, methods=["POST"]),
        Route("/v1/responses/input_tokens", count, methods=["POST"]),
        Route("/v1/responses/{response_id}", retrieve, methods=["GET"]),
        Route("/v1/responses/{response_id}", delete, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/cancel", cancel, methods=["POST"]),
        Route("/v1/responses/{response_id}/input_items", input_items, methods=["GET"]),
    ]
