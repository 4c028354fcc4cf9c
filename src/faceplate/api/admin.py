"""The admin API: create, list and revoke API keys; read usage. Bearer ``settings.admin_key``.

The admin key is checked by the auth gate (http/gate.py) before any route runs. With no
admin key configured the whole /admin tree answers 404, exactly like a URL that does not
exist (nothing to discover, nothing to brute-force); a wrong or missing key is a 401
``invalid_api_key``. Every error is OpenAI's envelope.

    POST   /admin/keys            {"name", "models"?, "rpm"?, "tpm"?, "batch_token_limit"?, "expires_in"? | "expires_at"?}
                                  -> the key object plus "key": the secret, shown only here
    GET    /admin/keys            -> {"object": "list", "data": [key objects]} (never secrets)
    GET    /admin/keys/{id}       -> a key object
    DELETE /admin/keys/{id}       -> the revoked key object ("status": "revoked")
    GET    /admin/usage?by=key|model|day&since=DATE&until=DATE
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.errors import InvalidRequest, NotFound
from faceplate.http.body import read_body
from faceplate.http.sse import json_response
from faceplate.protocol.common import parse_request
from faceplate.service.services import Services
from faceplate.store import Store
from faceplate.store.keys import parse_duration, parse_time
from faceplate.store.usage import GROUPS


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    models: list[str] | None = Field(None, description="model ids this key may use; null: every model")
    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(None, ge=1, description="tokens per minute")
    batch_token_limit: int | None = Field(
        None, ge=1, description="most prompt tokens enqueued in unfinished batches; null: the server's setting"
    )
    expires_in: str | int | None = Field(None, description="lifetime: seconds, or 30d / 12h / 90m")
    expires_at: str | int | None = Field(None, description="Unix seconds or ISO 8601 time")

    @field_validator("models")
    @classmethod
    def _models(cls, models: list[str] | None) -> list[str] | None:
        if models is not None and any(not m.strip() for m in models):
            raise ValueError("model ids must not be blank")
        return models

    def expiry(self, now: float) -> float | None:
        if self.expires_in is not None and self.expires_at is not None:
            raise InvalidRequest("Give expires_in or expires_at, not both.", param="expires_in")
        try:
            if self.expires_in is not None:
                seconds = float(self.expires_in) if isinstance(self.expires_in, int) else parse_duration(self.expires_in)
                if seconds <= 0:
                    raise ValueError("expires_in must be positive")
                return now + seconds
            if self.expires_at is not None:
                when = float(self.expires_at) if isinstance(self.expires_at, int) else parse_time(self.expires_at)
                if when <= now:
                    raise ValueError("expires_at is in the past")
                return when
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="expires_in" if self.expires_in is not None else "expires_at") from None
        return None


def _time_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw) if raw.replace(".", "", 1).isdigit() else parse_time(raw)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param=name) from None


def routes(svc: Services) -> list[Route]:
    def check(request: Request) -> Store:
        """The gate has checked the admin key; the store is there whenever the admin API is enabled."""
        if svc.store is None:
            raise NotFound(f"Invalid URL ({request.method} {request.url.path})")
        return svc.store

    async def create_key(request: Request) -> Response:
        store = check(request)
        body = parse_request(await read_body(request, 64 * 1024), CreateKey, endpoint="admin.keys")
        expires_at = body.expiry(time.time())
        key, secret = await asyncio.to_thread(
            store.keys.create,
            body.name,
            models=body.models,
            rpm=body.rpm,
            tpm=body.tpm,
            expires_at=expires_at,
            batch_token_limit=body.batch_token_limit,
        )
        svc.auth.enable_store()
        return json_response({**key.to_json(), "key": secret}, status=201)

    async def list_keys(request: Request) -> Response:
        store = check(request)
        keys = await asyncio.to_thread(store.keys.list)
        return json_response({"object": "list", "data": [k.to_json() for k in keys]})

    async def get_key(request: Request) -> Response:
        store = check(request)
        key = await asyncio.to_thread(store.keys.get, request.path_params["key_id"])
        if key is None:
            raise NotFound(f"No API key with id {request.path_params['key_id']!r}.", param="key_id", code="key_not_found")
        return json_response(key.to_json())

    async def revoke_key(request: Request) -> Response:
        store = check(request)
        key = await asyncio.to_thread(store.keys.revoke, request.path_params["key_id"])
        if key is None:
            raise NotFound(f"No API key with id {request.path_params['key_id']!r}.", param="key_id", code="key_not_found")
        svc.auth.invalidate(key.key_hash)
        return json_response(key.to_json())

    async def usage(request: Request) -> Response:
        store = check(request)
        by = request.query_params.get("by", "key")
        if by not in GROUPS:
            raise InvalidRequest(f"Invalid value for 'by': {by!r}; use one of {', '.join(GROUPS)}.", param="by")
        since, until = _time_param(request, "since"), _time_param(request, "until")
        flush = getattr(svc.usage, "aflush", None)
        if flush is not None:
            await flush()  # this process's queued records count too
        rows: list[dict[str, Any]] = await asyncio.to_thread(store.usage.report, by, since=since, until=until)  # type: ignore[arg-type]
        return json_response({"object": "list", "by": by, "data": rows})

    async def engines(request: Request) -> Response:
        """Live engine state for the console: each model's counters and the CPU pool's."""
        return json_response({"models": svc.registry.stats(), "cpu": svc.cpu.stats(), "draining": svc.drain.draining})

    return [
        Route("/admin/engines", engines, methods=["GET"]),
        Route("/admin/keys", create_key, methods=["POST"]),
        Route("/admin/keys", list_keys, methods=["GET"]),
        Route("/admin/keys/{key_id}", get_key, methods=["GET"]),
        Route("/admin/keys/{key_id}", revoke_key, methods=["DELETE"]),
        Route("/admin/usage", usage, methods=["GET"]),
    ]
