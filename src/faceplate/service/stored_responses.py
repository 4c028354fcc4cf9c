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
from faceplate.engines.base import SamplingParams
from faceplate.errors import InvalidRequest
from faceplate.protocol.paging import Page
from faceplate.protocol.responses import InputTokensRequest
from faceplate.service.response_runs import OffsetLost
from faceplate.service.responses import build_turn, require_store, response_not_found
from faceplate.service.services import Services
from faceplate.store import Store
from faceplate.store.responses import UNFINISHED

log = logging.getLogger("faceplate.responses")

RESTARTED = "The server generating this response stopped before it finished."
HEARTBEAT_S = 1.0  # how often a process says which responses it is generating
STALE_S = 10.0  # a response whose process said nothing for this long is failed
SWEEP_S = 5.0
PURGE_EVERY_S = 3600.0
CANCEL_WAIT_S = 10.0  # how long a cancel through another replica waits for the result


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
            f"Response '{response_id}' has no stored stream: the process generating it stopped before it finished "
            "(its events are kept only when a response ends). Retrieve it without stream.",
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
    """Stop a background response (its engine slot is freed at once); cancelling a finished one returns it as it is.

    A response another replica is generating is asked to stop through the store; its runner sees
    the request at its next heartbeat, and this waits (up to ``CANCEL_WAIT_S``) for the result."""
    run = services.runs.get(response_id, principal.owner)
    if run is not None and run.persist is not None:
        if not run.background:
            raise _not_background(response_id)
        return await run.cancel()
    store = require_store(services)
    stored = await asyncio.to_thread(store.responses.get, response_id, principal.owner)
    if stored is None:
        raise response_not_found(response_id)
    if not stored.background:
        raise _not_background(response_id)
    if stored.status not in UNFINISHED:
        return stored.object
    if not await asyncio.to_thread(store.responses.request_cancel, response_id, principal.owner):
        return stored.object
    deadline = time.monotonic() + CANCEL_WAIT_S
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        stored = await asyncio.to_thread(store.responses.get, response_id, principal.owner)
        if stored is None:
            raise response_not_found(response_id)
        if stored.status not in UNFINISHED:
            break
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
    turn = await build_turn(services, principal.owner, body, "count", SamplingParams())
    prepared = await engine.prepare_chat(turn.request, services.cpu)
    count = getattr(engine, "count_prompt", None)  # an engine with no tokenizer of its own asks its server
    tokens = await count(prepared) if count is not None else prepared.prompt_tokens
    return {"object": "response.input_tokens", "input_tokens": tokens}


# -- upkeep


async def start_upkeep(services: Services) -> asyncio.Task[None] | None:
    """Keep the store honest while this process runs.

    Every ``HEARTBEAT_S`` this process says which responses it is still generating (and picks up
    cancels that reached another replica); responses whose runner has been quiet for ``STALE_S``
    (a killed process) are marked failed, at start and every ``SWEEP_S``; responses older than the
    retention period are deleted hourly."""
    store = services.store
    if store is None:
        return None
    await _sweep(store)
    days = services.settings.responses_retention_days

    async def upkeep_forever() -> None:
        last_sweep = last_purge = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await _heartbeat(services, store)
                now = time.monotonic()
                if now - last_sweep >= SWEEP_S:
                    last_sweep = now
                    await _sweep(store)
                if days > 0 and now - last_purge >= PURGE_EVERY_S:
                    last_purge = now
                    gone = await asyncio.to_thread(store.responses.purge, time.time() - days * 86400)
                    if gone:
                        log.info("deleted %d response(s) older than %g days", gone, days)
            except Exception:
                log.exception("responses upkeep failed; retrying")

    if days > 0:
        gone = await asyncio.to_thread(store.responses.purge, time.time() - days * 86400)
        if gone:
            log.info("deleted %d response(s) older than %g days", gone, days)
    return asyncio.get_running_loop().create_task(upkeep_forever(), name="responses upkeep")


async def _heartbeat(services: Services, store: Store) -> None:
    runs = {r.id: r for r in services.runs.stored()}
    cancel = await asyncio.to_thread(store.responses.heartbeat, services.runs.runner, list(runs), time.time())
    for rid in cancel:
        if rid in runs and runs[rid].background:
            asyncio.get_running_loop().create_task(runs[rid].cancel())


async def _sweep(store: Store) -> None:
    now = time.time()
    failed = await asyncio.to_thread(store.responses.fail_unfinished, RESTARTED, now, stale_before=now - STALE_S)
    if failed:
        log.warning("marked %d response(s) whose process stopped before they finished as failed", len(failed))
