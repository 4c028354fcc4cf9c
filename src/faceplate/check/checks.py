"""The conformance suite: every check in report order, and one run of it against a server."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from faceplate.check.checks_api import API_CHECKS
from faceplate.check.checks_chat import CHAT_CHECKS
from faceplate.check.contract import Contract
from faceplate.check.http import Upstream, model_ids
from faceplate.check.runner import CHAT, Check, Context, Result, run_checks, select

CHAT_CANDIDATES = 4  # listed models tried for chat when no --model is given


def all_checks() -> tuple[Check, ...]:
    models, rest = API_CHECKS[:2], API_CHECKS[2:]
    return (*models, *CHAT_CHECKS, *rest)


async def choose_chat_model(upstream: Upstream, listed: Sequence[str]) -> str | None:
    """The first listed model that answers a one-token chat (servers list embedding models too); else the first listed."""
    for model in listed[:CHAT_CANDIDATES]:
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        if (await upstream.post(CHAT, body)).status == 200:
            return model
    return listed[0] if listed else None


async def run_suite(
    base_url: str,
    *,
    api_key: str | None = None,
    model: str | None = None,
    embedding_model: str | None = None,
    timeout: float = 60.0,
    only: Sequence[str] | None = None,
) -> list[Result]:
    """Run the checks (all, or those named in ``only``).

    Raises TransportError when GET /v1/models gets no HTTP answer at all (the server cannot be
    reached), ValueError for an unknown name in ``only`` or a URL that is not http(s).
    """
    checks = select(all_checks(), only)
    async with aiohttp.ClientSession() as session:
        upstream = Upstream(session, base_url, api_key=api_key, timeout=timeout)
        models = await upstream.get("/models")
        chosen = model or await choose_chat_model(upstream, model_ids(models))
        ctx = Context(upstream, Contract(), chosen, models, embedding_model=embedding_model, key_given=api_key is not None)
        return await run_checks(checks, ctx)
