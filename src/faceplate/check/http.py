"""One HTTP exchange with an OpenAI-compatible server, kept whole for evidence.

Shared by the conformance checks and the gateway's start-up probe: both send a request, keep what
was sent and what came back (status, content type, body, SSE events), and judge it afterwards.
Transport failures become ``TransportError``; an HTTP error status is an ordinary ``Reply``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from faceplate.check.sse import SSEDecoder, SSEEvent

TRIM = 300  # characters of a body shown as evidence


def base_v1(url: str) -> str:
    """The API root ending in ``/v1``, whether the user gave it with or without (and with a trailing slash)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    return url if url.endswith("/v1") else url + "/v1"


def trim(text: str, limit: int = TRIM) -> str:
    text = " ".join(text.split())  # one line in a table
    return text if len(text) <= limit else text[:limit] + f"… (+{len(text) - limit} chars)"


class TransportError(Exception):
    """No (whole) HTTP answer: refused, reset, timed out, or not an HTTP server at all."""


@dataclass(frozen=True)
class Reply:
    method: str
    path: str
    sent: Any  # the JSON body sent, None for GET
    status: int
    content_type: str
    text: str  # the body as text; for streams, what was received
    events: tuple[SSEEvent, ...] = field(default=())

    @property
    def body(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    @property
    def data(self) -> list[Any]:
        """Every event's data as JSON (``[DONE]`` left out; data that is not JSON as None)."""
        out: list[Any] = []
        for event in self.events:
            if event.done:
                continue
            try:
                out.append(event.json())
            except ValueError:
                out.append(None)
        return out

    def evidence(self) -> str:
        sent = "" if self.sent is None else " " + trim(json.dumps(self.sent), 160)
        if self.events:
            more = f" | … ({len(self.events)} events)" if len(self.events) > 3 else ""
            shown = " | ".join(e.data for e in self.events[:3]) + more
            got = f"{self.status} {self.content_type or '(no content-type)'} events: {trim(shown)}"
        else:
            got = f"{self.status} {trim(self.text) or '(empty body)'}"
        return f"sent {self.method} {self.path}{sent} -> got {got}"


class Upstream:
    """An OpenAI-compatible server at ``base_url`` reached through ``session``."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        self.session = session
        self.base = base_v1(base_url)
        self.api_key = api_key
        self.timeout = timeout

    def with_key(self, api_key: str | None) -> Upstream:
        """The same server with another (or no) Bearer key: for the authentication checks."""
        return Upstream(self.session, self.base, api_key=api_key, timeout=self.timeout)

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "application/json"}
        if self.api_key is not None:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    async def get(self, path: str) -> Reply:
        return await self._send("GET", path, None, stream=False)

    async def post(self, path: str, body: Any) -> Reply:
        return await self._send("POST", path, body, stream=False)

    async def stream(self, path: str, body: Any) -> Reply:
        """POST expecting SSE: a 200 body is decoded as events whatever its content type (judged separately)."""
        return await self._send("POST", path, body, stream=True)

    async def _send(self, method: str, path: str, body: Any, *, stream: bool) -> Reply:
        url = self.base + path
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        kwargs: dict[str, Any] = {"headers": self._headers(), "timeout": timeout}
        if body is not None:
            kwargs["json"] = body
        try:
            async with self.session.request(method, url, **kwargs) as resp:
                content_type = resp.headers.get("content-type", "")
                if stream and resp.status == 200:
                    decoder = SSEDecoder()
                    events: list[SSEEvent] = []
                    raw = bytearray()
                    async for piece in resp.content.iter_any():
                        raw += piece
                        events += decoder.feed(piece)
                    events += decoder.close()
                    text = raw.decode("utf-8", "replace")
                    return Reply(method, path, body, resp.status, content_type, text, tuple(events))
                text = (await resp.read()).decode("utf-8", "replace")
                return Reply(method, path, body, resp.status, content_type, text)
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors (asyncio's is the same class since 3.11)
            raise TransportError(f"{method} {url}: no answer within {self.timeout:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(f"{method} {url}: cannot connect: {exc.os_error.strerror or exc}") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc


def model_ids(reply: Reply) -> tuple[str, ...]:
    """The ids a GET /models reply lists (none when it is not a model list)."""
    body = reply.body if reply.status == 200 else None
    data = body.get("data") if isinstance(body, dict) else None
    return tuple(m["id"] for m in data or [] if isinstance(m, dict) and isinstance(m.get("id"), str))
