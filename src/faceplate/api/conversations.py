"""The Conversations API routes.

POST   /v1/conversations                          create ({items?, metadata?})
GET    /v1/conversations/{id}                     retrieve
POST   /v1/conversations/{id}                     update ({metadata})
DELETE /v1/conversations/{id}                     -> conversation.deleted
POST   /v1/conversations/{id}/items               add ({items}) -> the added items as a list
GET    /v1/conversations/{id}/items               ``limit``, ``order`` (default desc), ``after``
GET    /v1/conversations/{id}/items/{item_id}
DELETE /v1/conversations/{id}/items/{item_id}     -> the conversation
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.http.gate import principal_of
from faceplate.http.respond import parse_body
from faceplate.http.sse import json_response
from faceplate.protocol.conversations import CreateConversationItemsRequest, CreateConversationRequest, UpdateConversationRequest
from faceplate.protocol.paging import page_params
from faceplate.service import conversations as conv
from faceplate.service.services import Services


def routes(svc: Services) -> list[Route]:
    settings = svc.settings

    async def create(request: Request) -> Response:
        body, _ = await parse_body(request, CreateConversationRequest, endpoint="conversations", settings=settings)
        return json_response(await conv.create(svc, principal_of(request), body))

    async def retrieve(request: Request) -> Response:
        return json_response(await conv.retrieve(svc, principal_of(request), request.path_params["conversation_id"]))

    async def update(request: Request) -> Response:
        body, _ = await parse_body(request, UpdateConversationRequest, endpoint="conversations", settings=settings)
        return json_response(await conv.update(svc, principal_of(request), request.path_params["conversation_id"], body))

    async def delete(request: Request) -> Response:
        return json_response(await conv.delete(svc, principal_of(request), request.path_params["conversation_id"]))

    async def add_items(request: Request) -> Response:
        body, _ = await parse_body(request, CreateConversationItemsRequest, endpoint="conversations.items", settings=settings)
        return json_response(await conv.add_items(svc, principal_of(request), request.path_params["conversation_id"], body))

    async def list_items(request: Request) -> Response:
        page = page_params(request.query_params)
        return json_response(await conv.list_items(svc, principal_of(request), request.path_params["conversation_id"], page))

    async def get_item(request: Request) -> Response:
        p = request.path_params
        return json_response(await conv.get_item(svc, principal_of(request), p["conversation_id"], p["item_id"]))

    async def delete_item(request: Request) -> Response:
        p = request.path_params
        return json_response(await conv.delete_item(svc, principal_of(request), p["conversation_id"], p["item_id"]))

    base = "/v1/conversations/{conversation_id}"
    return [
        Route("/v1/conversations", create, methods=["POST"]),
        Route(base, retrieve, methods=["GET"]),
        Route(base, update, methods=["POST"]),
        Route(base, delete, methods=["DELETE"]),
        Route(base + "/items", add_items, methods=["POST"]),
        Route(base + "/items", list_items, methods=["GET"]),
        Route(base + "/items/{item_id}", get_item, methods=["GET"]),
        Route(base + "/items/{item_id}", delete_item, methods=["DELETE"]),
    ]
