"""The Batch API routes.

POST /v1/batches                 create ({input_file_id, endpoint, completion_window, metadata?, output_expires_after?})
GET  /v1/batches                 ``limit`` (1..100, default 20), ``after``; newest first
GET  /v1/batches/{id}            retrieve
POST /v1/batches/{id}/cancel     -> the batch, ``cancelling`` (400 once it has finished)
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.http.gate import principal_of
from faceplate.http.respond import parse_body
from faceplate.http.sse import json_response
from faceplate.protocol.batches import CreateBatchRequest
from faceplate.service import batches as batch_service
from faceplate.service.services import Services


def routes(svc: Services) -> list[Route]:
    settings = svc.settings

    async def create(request: Request) -> Response:
        body, _ = await parse_body(request, CreateBatchRequest, endpoint="batches", settings=settings)
        return json_response(await batch_service.create(svc, principal_of(request), body))

    async def list_batches(request: Request) -> Response:
        q = request.query_params
        limit = batch_service.list_limit(q.get("limit"))
        return json_response(await batch_service.list_batches(svc, principal_of(request), limit=limit, after=q.get("after")))

    async def retrieve(request: Request) -> Response:
        return json_response(await batch_service.retrieve(svc, principal_of(request), request.path_params["batch_id"]))

    async def cancel(request: Request) -> Response:
        return json_response(await batch_service.cancel(svc, principal_of(request), request.path_params["batch_id"]))

    return [
        Route("/v1/batches", create, methods=["POST"]),
        Route("/v1/batches", list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", retrieve, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", cancel, methods=["POST"]),
    ]
