"""Conversations: a durable list of items a principal keeps, that responses read and append to.

Items are stored as the item resources a response's input and output are (``msg_…``,
``fc_…``), so a listed item can be sent back as input unchanged (the Agents SDK's
conversation session does exactly that).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from faceplate.access.auth import Principal
from faceplate.errors import InvalidRequest, NotFound
from faceplate.protocol.conversations import CreateConversationItemsRequest, CreateConversationRequest, UpdateConversationRequest
from faceplate.protocol.paging import Page
from faceplate.service.responses import require_store, stored_inputs
from faceplate.service.services import Services
from faceplate.service.stored_responses import item_list, paged
from faceplate.store import Conversation, DuplicateItem
from faceplate.translate.responses import new_item_id


def _not_found(conversation_id: str) -> NotFound:
    return NotFound(f"Conversation with id '{conversation_id}' not found.", param="conversation_id")


def conversation_object(c: Conversation) -> dict[str, Any]:
    return {"id": c.id, "object": "conversation", "created_at": int(c.created_at), "metadata": c.metadata}


async def create(services: Services, principal: Principal, body: CreateConversationRequest) -> dict[str, Any]:
    store = require_store(services)
    items = await stored_inputs(services, principal.owner, body.items or [], "items")
    _unique(items)
    made = await asyncio.to_thread(
        store.conversations.create,
        id=new_item_id("conv"),
        owner=principal.owner,
        created_at=time.time(),
        metadata=dict(body.metadata or {}),
        items=items,
    )
    return conversation_object(made)


def _unique(items: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item["id"] in seen:
            raise InvalidRequest(f"Duplicate item id '{item['id']}' in 'items'.", param=f"items[{i}].id")
        seen.add(item["id"])


async def retrieve(services: Services, principal: Principal, conversation_id: str) -> dict[str, Any]:
    found = await asyncio.to_thread(require_store(services).conversations.get, conversation_id, principal.owner)
    if found is None:
        raise _not_found(conversation_id)
    return conversation_object(found)


async def update(
    services: Services, principal: Principal, conversation_id: str, body: UpdateConversationRequest
) -> dict[str, Any]:
    store = require_store(services)
    found = await asyncio.to_thread(store.conversations.update, conversation_id, principal.owner, dict(body.metadata))
    if found is None:
        raise _not_found(conversation_id)
    return conversation_object(found)


async def delete(services: Services, principal: Principal, conversation_id: str) -> dict[str, Any]:
    if not await asyncio.to_thread(require_store(services).conversations.delete, conversation_id, principal.owner):
        raise _not_found(conversation_id)
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


async def add_items(
    services: Services, principal: Principal, conversation_id: str, body: CreateConversationItemsRequest
) -> dict[str, Any]:
    store = require_store(services)
    items = await stored_inputs(services, principal.owner, body.items, "items")
    _unique(items)
    try:
        added = await asyncio.to_thread(store.conversations.add_items, conversation_id, principal.owner, items, time.time())
    except DuplicateItem as exc:
        raise InvalidRequest(f"Item with id '{exc.item_id}' is already in this conversation.", param="items") from None
    if not added:
        raise _not_found(conversation_id)
    return item_list(items, False)


async def list_items(services: Services, principal: Principal, conversation_id: str, page: Page) -> dict[str, Any]:
    found = await paged(require_store(services).conversations.list_items, conversation_id, principal, page)
    if found is None:
        raise _not_found(conversation_id)
    return found


async def get_item(services: Services, principal: Principal, conversation_id: str, item_id: str) -> dict[str, Any]:
    store = require_store(services)
    if await asyncio.to_thread(store.conversations.get, conversation_id, principal.owner) is None:
        raise _not_found(conversation_id)
    item = await asyncio.to_thread(store.conversations.get_item, conversation_id, principal.owner, item_id)
    if item is None:
        raise NotFound(f"Item with id '{item_id}' not found.", param="item_id")
    return item


async def delete_item(services: Services, principal: Principal, conversation_id: str, item_id: str) -> dict[str, Any]:
    """OpenAI answers an item's deletion with the conversation itself."""
    store = require_store(services)
    found = await asyncio.to_thread(store.conversations.get, conversation_id, principal.owner)
    if found is None:
        raise _not_found(conversation_id)
    if not await asyncio.to_thread(store.conversations.delete_item, conversation_id, principal.owner, item_id):
        raise NotFound(f"Item with id '{item_id}' not found.", param="item_id")
    return conversation_object(found)
