"""Pools from the settings, at start-up: each upstream's kind detected, its capabilities probed.

An upstream that cannot be reached at start-up does not stop the gateway: it starts unhealthy
with its kind's known capabilities, and the pool's health check probes it once it answers.
Specs sharing an id form one pool; the pool serves embeddings when its members do and chat
cannot be had from them (or when ``serves = "embedding"`` says so).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from redis.asyncio import from_url as redis_from_url

from faceplate.config import Settings
from faceplate.config_upstreams import UpstreamSpec
from faceplate.engines.remote.breaker import Breaker, SharedBreakers
from faceplate.engines.remote.client import UpstreamHTTP
from faceplate.engines.remote.engine import RemoteChatEngine, RemoteEmbeddingEngine
from faceplate.engines.remote.kinds import DETECT, KINDS, Kind
from faceplate.engines.remote.pool import Pool, Upstream
from faceplate.engines.remote.requests import Caps

log = logging.getLogger("faceplate.upstreams")
DETECT_TIMEOUT_S = 3.0


async def detect_kind(http: UpstreamHTTP) -> Kind | None:
    """The kind whose identifying endpoint answers as it does; ``openai`` if none does; None if unreachable."""

    async def answers(path: str, field: str) -> bool:
        try:
            status, body = await http.get(path, DETECT_TIMEOUT_S)
            return status == 200 and field in json.loads(body)
        except Exception:  # noqa: BLE001 - not this kind (or not reachable)
            return False

    try:
        await http.get("/v1/models", DETECT_TIMEOUT_S)
    except Exception:  # noqa: BLE001
        return None
    found = await asyncio.gather(*(answers(path, field) for _, path, field in DETECT))
    for (name, _, _), ok in zip(DETECT, found, strict=True):
        if ok:
            return KINDS[name]
    return KINDS["openai"]


async def _model_to_probe(member: Upstream) -> str | None:
    """The named model; else the pool's id when the upstream lists it among several; else None (its first)."""
    if member.spec.model is not None:
        return member.spec.model
    try:
        _, body = await member.http.get("/v1/models", DETECT_TIMEOUT_S)
        listed = {m.get("id") for m in json.loads(body).get("data", [])}
    except Exception:  # noqa: BLE001 - the probe itself reports an unreachable or odd server
        return None
    return member.spec.id if member.spec.id in listed else None


async def probe_member(member: Upstream) -> None:
    """Set a member's model and capabilities from the contract probe; on failure keep the kind's seeds."""
    try:
        from faceplate.check.probe import probe

        model = await _model_to_probe(member)
        found = await probe(member.http.session, member.url, api_key=member.spec.api_key, model=model)
    except Exception as exc:  # noqa: BLE001 - unreachable or unreadable: seeds now, the health check retries
        member.probe_failures += 1
        level = logging.WARNING if member.probe_failures == 1 else logging.DEBUG  # once, not every health check
        log.log(level, "could not probe %s (its kind's known capabilities stand in): %s", member.url, exc)
        return
    member.model = found.model
    member.caps = Caps(
        chat=found.chat,
        completions=found.completions,
        embeddings=found.embeddings,
        embedding_dimensions=found.embedding_dimensions,
        max_n=max(1, found.max_n),
        logprobs=found.logprobs,
        tools=found.tools,
        tool_choice_forced=found.tool_choice_forced,
        json_schema=found.json_schema,
        stream_usage=found.stream_usage,
        max_completion_tokens=found.max_completion_tokens,
    )
    member.probed = True
    log.info("upstream %s (%s) serves %s: %s", member.url, member.kind.name, member.model, _summary(member.caps))


def _summary(caps: Caps) -> str:
    return ", ".join(f"{k}={v}" for k, v in caps.__dict__.items() if v not in (True, None))


async def _member(spec: UpstreamSpec, settings: Settings) -> Upstream:
    http = UpstreamHTTP(spec)
    kind = KINDS.get(spec.kind) if spec.kind != "auto" else await detect_kind(http)
    routing = settings.routing
    member = Upstream(
        spec=spec,
        kind=kind or KINDS["openai"],
        http=http,
        breaker=Breaker(routing.breaker_failures, routing.breaker_open_s),
        caps=Caps.seed(kind or KINDS["openai"]),
        model=spec.model or spec.id,
        healthy=kind is not None,
    )
    if kind is None:
        log.warning("upstream %s of %s is not reachable yet: it joins when its health check passes", spec.url, spec.id)
    else:
        await probe_member(member)
    return member


async def build_pools(settings: Settings) -> list[RemoteChatEngine | RemoteEmbeddingEngine]:
    groups: dict[str, list[UpstreamSpec]] = {}
    for spec in settings.upstreams:
        groups.setdefault(spec.id, []).append(spec)
    engines: list[RemoteChatEngine | RemoteEmbeddingEngine] = []
    for model_id, specs in groups.items():
        members: Sequence[Upstream] = await asyncio.gather(*(_member(s, settings) for s in specs))
        shared = SharedBreakers(redis_from_url(settings.redis_url) if settings.redis_url else None)
        pool = Pool(model_id, list(members), settings.routing, shared, reprobe=probe_member)
        serves = next((s.serves for s in specs if s.serves), None)
        if serves is None:
            probed = [m for m in members if m.probed]
            serves = "embedding" if probed and all(m.caps.embeddings and not m.caps.chat for m in probed) else "chat"
        engines.append(RemoteEmbeddingEngine(pool) if serves == "embedding" else RemoteChatEngine(pool))
        for m in members:  # aiohttp sessions belong to this loop; the serving loop makes its own
            await m.http.close()
        log.info("pool %s: %d upstream(s), serving %s", model_id, len(members), serves)
    return engines
