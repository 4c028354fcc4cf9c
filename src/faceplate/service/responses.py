"""The Responses API for a principal, with no HTTP in sight.

    run = await create(services, principal, body)   # 4xx raised here, before any event
    async for event in run.follow(): ...             # or: obj = await run.wait()

``create`` does everything that can refuse the request first (model access, state fields,
the stored context, tools, the rate limit, the prompt's fit), so those are HTTP errors,
never a stream that fails. Only then is the response stored (``store``, the default) and
its run started: a task that ends, whatever happens, with a terminal event and the final
object persisted (see ``response_runs``).

Context: ``previous_response_id`` continues from the stored chain (every turn's inputs and
outputs, function calls included; never the old ``instructions``); ``conversation``
prepends the conversation's items and appends this turn's input and output when it
completes. Both are read once, when the request starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, replace
from typing import Any

from faceplate.access.auth import Principal
from faceplate.engines.base import ChatEngine, ChatRequest, Prepared, SamplingParams, estimate_prompt_tokens
from faceplate.errors import ContextLengthExceeded, FaceplateError, InvalidRequest, NotFound
from faceplate.protocol.response_items import ItemReference
from faceplate.protocol.responses import CreateResponseRequest, ResponseInputFields
from faceplate.service.generate import metered
from faceplate.service.generation import Reply
from faceplate.service.response_runs import Persist, ResponseRun
from faceplate.service.services import Services
from faceplate.store import BrokenChain, Store
from faceplate.translate.response_items import Item, messages, stored_item
from faceplate.translate.response_request import ToolPlan, sampling, text_format, tool_plan
from faceplate.translate.responses import ResponseState, new_item_id

ENDPOINT = "/v1/responses"


def response_not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


def require_store(services: Services) -> Store:
    if services.store is None:
        raise InvalidRequest("This server keeps no store: send 'store': false.", param="store")
    return services.store


def _previous_not_found(response_id: str, why: str = "not found") -> InvalidRequest:
    return InvalidRequest(
        f"Previous response with id '{response_id}' {why}.", param="previous_response_id", code="previous_response_not_found"
    )


THREAD_CHARS = 2048  # of the first input, enough to tell threads apart


def thread_of(inputs: list[Item]) -> str | None:
    """A chain's affinity key: its first turn's first input, which every later turn can read back from the
    store (the first turn's ``instructions`` are not stored, and each turn may send its own). One item, not
    all: this runs for every request, and an input may be a whole document."""
    return "r:" + json.dumps(inputs[0], sort_keys=True)[:THREAD_CHARS] if inputs else None


async def load_context(services: Services, owner: str, body: ResponseInputFields) -> tuple[list[Item], str | None, str | None]:
    """The stored items this turn continues from, the conversation id (if it continues one), and the
    thread: what keeps it on one upstream of a pool (the chain's first inputs, or the conversation)."""
    if body.previous_response_id and body.conversation is not None:
        raise InvalidRequest(
            "Mutually exclusive parameters: 'previous_response_id' and 'conversation' cannot be used together.",
            param="conversation",
        )
    if body.previous_response_id:
        rid = body.previous_response_id
        try:
            turns = await asyncio.to_thread(require_store(services).responses.chain, rid, owner)
        except BrokenChain as exc:
            raise _previous_not_found(rid, f"continues from response '{exc.missing_id}', which was deleted") from None
        if not turns:
            raise _previous_not_found(rid)
        last = await asyncio.to_thread(require_store(services).responses.get, rid, owner)
        if last is not None and last.status in ("queued", "in_progress"):
            raise _previous_not_found(rid, "has not finished yet")
        return [item for t in turns for item in (*t.inputs, *t.outputs)], None, thread_of(turns[0].inputs)
    cid = body.conversation_id()
    if cid is None:
        return [], None, None
    store = require_store(services)
    items = await asyncio.to_thread(store.conversations.items, cid, owner)
    if items is None:
        raise NotFound(f"Conversation with id '{cid}' not found.", param="conversation")
    return items, cid, cid


async def stored_inputs(services: Services, owner: str, wire: list[Any], param: str) -> list[Item]:
    """Wire input items as stored items; ``item_reference`` items are looked up among the owner's items."""
    refs = {it.id for it in wire if isinstance(it, ItemReference)}
    found: dict[str, Item | None] = {}
    if refs:
        store = require_store(services)
        for ref in refs:
            found[ref] = await asyncio.to_thread(store.responses.find_item, owner, ref)
    return [stored_item(it, f"{param}[{i}]", found.get) for i, it in enumerate(wire)]


def _object(
    rid: str, body: CreateResponseRequest, *, status: str, store: bool, plan: ToolPlan, text: dict[str, Any]
) -> dict[str, Any]:
    cid = body.conversation_id()
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": bool(body.background),
        "completed_at": None,
        "conversation": {"id": cid} if cid else None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "metadata": dict(body.metadata or {}),
        "model": body.model,
        "output": [],
        "parallel_tool_calls": plan.parallel,
        "previous_response_id": body.previous_response_id,
        "prompt_cache_key": body.prompt_cache_key,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": body.safety_identifier,
        "service_tier": "default",
        "store": store,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "text": text,
        "tool_choice": plan.choice_echo,
        "tools": plan.echo,
        "top_logprobs": body.top_logprobs or 0,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "truncation": body.truncation or "disabled",
        "usage": None,
        "user": body.user,
    }


def _fits(items: list[Item]) -> list[Item]:
    """``truncation: auto``: drop the oldest quarter of the items, never starting at a tool result."""
    rest = items[max(1, len(items) // 4) :]
    while rest and rest[0].get("type") in ("function_call_output", "custom_tool_call_output"):
        rest = rest[1:]
    return rest


@dataclass(frozen=True)
class PromptTurn:
    """What one turn sends the engine: the request, the items it renders, and what the object echoes."""

    request: ChatRequest
    items: list[Item]  # the stored context, then this turn's inputs
    inputs: list[Item]
    conversation_id: str | None
    plan: ToolPlan
    text: dict[str, Any]


async def build_turn(
    services: Services,
    owner: str,
    body: ResponseInputFields,
    rid: str,
    params: SamplingParams,
    *,
    one_call: bool = False,
    cache_key: str | None = None,
    person: str | None = None,
) -> PromptTurn:
    """Context, inputs, tools and format as one engine request (shared by create and input_tokens).

    ``one_call``: ``max_tool_calls`` is 1, so the grammar allows no parallel calls. What keeps the
    conversation on one upstream of a pool: ``cache_key`` (prompt_cache_key), else the chain or
    conversation it continues, else ``person`` (safety_identifier or user)."""
    context, cid, thread = await load_context(services, owner, body)
    inputs = await stored_inputs(services, owner, body.items(), "input")
    plan = tool_plan(body, ignore_unsupported=services.settings.responses_ignore_unsupported_tools)
    fmt, text = text_format(body)
    items = [*context, *inputs]
    request = ChatRequest(
        request_id=rid,
        messages=tuple(messages(items, body.instructions)),
        sampling=params,
        tools=plan.tools,
        tool_choice=plan.choice,
        parallel_tool_calls=plan.parallel and not one_call,
        response_format=fmt,
        affinity=cache_key or thread or thread_of(inputs) or person,
    )
    return PromptTurn(request, items, inputs, cid, plan, text)


async def create(services: Services, principal: Principal, body: CreateResponseRequest) -> ResponseRun:
    store = body.store is not False
    if body.background and not store:
        raise InvalidRequest("Background responses must be stored: 'background' needs 'store' true.", param="background")
    if store:
        require_store(services)
    engine = services.chat_engine(principal, body.model)
    owner = principal.owner
    rid = new_item_id("resp")
    turn = await build_turn(
        services,
        owner,
        body,
        rid,
        sampling(body),
        one_call=body.max_tool_calls == 1,
        cache_key=body.prompt_cache_key,
        person=body.safety_identifier or body.user,
    )
    request, inputs, cid, plan = turn.request, turn.inputs, turn.conversation_id, turn.plan

    async def prepare() -> list[Prepared]:
        return await _prepare_truncating(services, engine, request, turn.items, body)

    reply = await metered(
        services,
        principal,
        engine,
        endpoint=ENDPOINT,
        model=body.model,
        estimate=estimate_prompt_tokens(request),
        max_tokens=request.sampling.max_tokens,
        choices=1,
        prepare=prepare,
    )
    if not body.background:
        await _under_way(reply)
    status = "queued" if body.background else "in_progress"
    state = ResponseState(
        _object(rid, body, status=status, store=store, plan=plan, text=turn.text),
        logprobs=request.sampling.top_logprobs is not None,
        custom_tools=plan.custom,
        max_tool_calls=body.max_tool_calls,
    )
    persist = started = None
    if store:
        persist = _persister(services, inputs, cid)
        started = _progress(services) if body.background else None
        try:
            await asyncio.to_thread(
                services.store.responses.create,  # type: ignore[union-attr]
                id=rid,
                owner=owner,
                object=state.snapshot(),
                background=bool(body.background),
                previous_response_id=body.previous_response_id,
                conversation_id=cid,
                input_items=inputs,
                runner=services.runs.runner,
            )
        except BaseException:
            await reply.aclose()
            raise
    limit = services.settings.responses_stream_events
    run = ResponseRun(state, reply, owner, bool(body.background), persist, started, max_events=limit)
    services.runs.add(run)
    return run


async def _under_way(reply: Reply) -> None:
    """Wait for a remote engine's first event: its upstream's refusal (a context overflow, say) is then
    this request's HTTP status, as a local engine's would be, not a failed response after the fact."""
    try:
        await reply.start()
    except BaseException as exc:
        await reply.aclose(exc)
        if isinstance(exc, FaceplateError) and exc.code == "context_length_exceeded":
            exc.param = "input"
        raise


async def _prepare_truncating(
    services: Services, engine: ChatEngine, request: ChatRequest, items: list[Item], body: CreateResponseRequest
) -> list[Prepared]:
    """Prepare; with ``truncation: auto``, drop the oldest items until the prompt fits (else the 400 names ``input``)."""
    while True:
        try:
            return [await engine.prepare_chat(request, services.cpu)]
        except ContextLengthExceeded as exc:
            if body.truncation != "auto" or len(items) <= 1:
                exc.param = "input"
                raise
            items = _fits(items)
            request = replace(request, messages=tuple(messages(items, body.instructions)))


def _progress(services: Services) -> Persist:
    async def started(run: ResponseRun) -> None:
        snapshot = run.state.snapshot()
        write = asyncio.ensure_future(asyncio.to_thread(services.store.responses.update, run.id, snapshot))  # type: ignore[union-attr]
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            # Cancelled mid-write: the thread goes on regardless. Let it land before the run stores
            # its final object, or it would overwrite that with this in_progress one.
            with contextlib.suppress(Exception):
                await write
            raise

    return started


def _persister(services: Services, inputs: list[Item], cid: str | None) -> Persist:
    async def persist(run: ResponseRun) -> None:
        obj = run.state.snapshot()
        # the store leaves out items the conversation already holds (or that repeat in this turn)
        appended = [*inputs, *obj["output"]] if cid is not None and obj["status"] in ("completed", "incomplete") else []
        await asyncio.to_thread(
            services.store.responses.finish,  # type: ignore[union-attr]
            run.id,
            object=obj,
            output_items=obj["output"],
            events=run.events if run.background else None,
            conversation_items=appended,
        )

    return persist
