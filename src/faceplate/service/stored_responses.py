"""Stored responses: retrieve, resume a stream, cancel, delete, list input items, count input tokens; and
the store's upkeep (at start, responses a previous process left unfinished are marked failed; old
ones are deleted after the retention period).

A response still running in this process is read from its run (the live object); anything
else from the store. Another key's response, or one made with ``store: false``, is a 404.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from faceplate.access.auth import Principal
from faceplate.engines.base import ChatRequest
from faceplate.errors import InvalidRequest
from faceplate.protocol.paging import Page
from faceplate.protocol.responses import InputTokensRequest
from faceplate.service.response_runs import OffsetLost
from faceplate.service.responses import load_context, require_store, response_not_found, stored_inputs
from faceplate.service.services import Services
from faceplate.translate.response_items import messages
from faceplate.translate.response_request import text_format, tool_plan

log = logging.getLogger("faceplate.responses")

RESTARTED = "The server restarted before this response finished."
PURGE_EVERY_S = 3600.0


async def retrieve(services: Services, principal: Principal, response_id: str) -> dict[str, Any]:
    run = services.runs.get(response_id, principal.owner)
    if run is not None and run.persist is not None:
        return run.state.snapshot()
    stored = await asyncio.to_thread(require_store(services).responses.get, response_id, principal.owner)
    if stored is None:
        raise response_not_found(response_id)
    return stored.object


async def resume(services: Services, principal: Principal, response_id: str, after: int | None) -> AsyncIterator[dict[str, Any]]:
    """A background response's events after ``after`` (all from ``response.created`` when None); live if still running.

    Every refusal happens here, before the caller starts a stream."""
    after = -1 if after is None else after
    run = services.runs.get(response_id, principal.owner)
    if run is not None and run.persist is not None:
        if not run.background:
            raise _not_background(response_id)
        run.check_offset(after)
        return run.follow(after)
    stored = await asyncio.to_thread(require_store(services).responses.get, response_id, principal.owner)
    if stored is None:
        raise response_not_found(response_id)
    if not stored.background:
        raise _not_background(response_id)
    events = stored.events or []
    if not events:
        raise InvalidRequest(
            f"Response '{response_id}' has no stored stream (it ended before it started); retrieve it without stream.",
            param="stream",
        )
    first = events[0]["sequence_number"]
    if after + 1 < first:
        raise OffsetLost(f"Events before sequence number {first} are no longer kept for this response.", param="starting_after")

    async def replay() -> AsyncIterator[dict[str, Any]]:
        for ev in events:
            if ev["sequence_number"] > after:
                yield ev

    return replay()


def _not_background(response_id: str) -> InvalidRequest:
    return InvalidRequest(
        f"Response '{response_id}' was not created with background=true: only background responses can be "
        "streamed again or cancelled.",
        param="response_id",
    )


async def cancel(services: Services, principal: Principal, response_id: str) -> dict[str, Any]:
    """Stop a background response (its engine slot is freed at once); cancelling a finished one returns it as it is."""
    run = services.runs.get(response_id, principal.owner)
    if run is not None and run.persist is not None:
        if not run.background:
            raise _not_background(response_id)
        return await run.cancel()
    stored = await asyncio.to_thread(require_store(services).responses.get, response_id, principal.owner)
    if stored is None:
        raise response_not_found(response_id)
    if not stored.background:
        raise _not_background(response_id)
    return stored.object


async def delete(services: Services, principal: Principal, response_id: str) -> dict[str, Any]:
    run = services.runs.get(response_id, principal.owner)
    if run is not None and run.persist is not None:
        await run.cancel()  # stored as cancelled first, so the row is not written again after it is gone
    deleted = await asyncio.to_thread(require_store(services).responses.delete, response_id, principal.owner)
    if not deleted:
        raise response_not_found(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


async def input_items(services: Services, principal: Principal, response_id: str, page: Page) -> dict[str, Any]:
    found = await paged(require_store(services).responses.input_items, response_id, principal, page)
    if found is None:
        raise response_not_found(response_id)
    return found


async def paged(
    lister: Callable[..., tuple[list[dict[str, Any]], bool] | None], parent_id: str, principal: Principal, page: Page
) -> dict[str, Any] | None:
    """One page of a stored list (a response's input items, a conversation's items); None if the parent is not the caller's."""
    found = await asyncio.to_thread(lister, parent_id, principal.owner, limit=page.limit, order=page.order, after=page.after)
    return None if found is None else item_list(*found)


def item_list(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """The spec makes ``first_id``/``last_id`` strings even for an empty page (SDK strict mode too): "" then."""
    first = items[0]["id"] if items else ""
    last = items[-1]["id"] if items else ""
    return {"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": has_more}


async def input_tokens(services: Services, principal: Principal, body: InputTokensRequest) -> dict[str, Any]:
    """What this input would cost as a prompt: the same context, tools and format as ``create``, counted, not run."""
    if body.model is None:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    engine = services.chat_engine(principal, body.model)
    context, _, _ = await load_context(services, principal.owner, body)
    inputs = await stored_inputs(services, principal.owner, body.items(), "input")
    plan = tool_plan(body, ignore_unsupported=services.settings.responses_ignore_unsupported_tools)
    fmt, _ = text_format(body)
    request = ChatRequest(
        request_id="count",
        messages=tuple(messages([*context, *inputs], body.instructions)),
        tools=plan.tools,
        tool_choice=plan.choice,
        parallel_tool_calls=plan.parallel,
        response_format=fmt,
    )
    prepared = await engine.prepare_chat(request, services.cpu)
    return {"object": "response.input_tokens", "input_tokens": prepared.prompt_tokens}


# -- upkeep


async def start_upkeep(services: Services) -> asyncio.Task[None] | None:
    """Mark what a previous process left running as failed, then purge old responses every hour."""
    store = services.store
    if store is None:
        return None
    failed = await asyncio.to_thread(store.responses.fail_unfinished, RESTARTED, time.time())
    if failed:
        log.warning("marked %d response(s) left unfinished by a previous process as failed", len(failed))
    days = services.settings.responses_retention_days
    if days <= 0:
        return None

    async def purge_forever() -> None:
        while True:
            try:
                gone = await asyncio.to_thread(store.responses.purge, time.time() - days * 86400)
                if gone:
                    log.info("deleted %d response(s) older than %g days", gone, days)
            except Exception:
                log.exception("could not purge old responses")
            await asyncio.sleep(PURGE_EVERY_S)

    return asyncio.get_running_loop().create_task(purge_forever(), name="responses retention")
