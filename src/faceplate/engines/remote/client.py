"""HTTP to one upstream: a bounded, reused aiohttp connection pool and SSE read with deadlines.

Failures come back as ``Unreachable`` (nothing usable was answered: connect refused or reset,
no headers within the first-byte deadline, a retryable status) so the pool may place the
request elsewhere, or as a Faceplate error the client should see (the upstream's 400).
A response is closed, not released, when its reader stops early: that drops the connection,
which is how every upstream server learns the client has gone and frees the slot.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from faceplate.config_upstreams import UpstreamSpec
from faceplate.engines.remote.replies import error_from, retryable, whole_as_chunk
from faceplate.errors import FaceplateError, RequestTimeout, UpstreamFailed

MAX_ERROR_BODY = 64 * 1024
KEEPALIVE_S = 4.0  # below uvicorn's default 5 s idle close: never reuse a connection the far end is closing


class Unreachable(Exception):
    """The upstream gave nothing usable; another upstream may. ``error`` is what the client gets if none does."""

    def __init__(self, error: FaceplateError, *, retry_after: float | None = None, hard: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after
        self.hard = hard  # counts against the breaker (a 429/503 with Retry-After does not)


def _retry_after(headers: Any) -> float | None:
    try:
        return float(headers.get("retry-after"))
    except (TypeError, ValueError):
        return None


class UpstreamHTTP:
    def __init__(self, spec: UpstreamSpec) -> None:
        self.spec = spec
        self.base = spec.url
        self._session: aiohttp.ClientSession | None = None
        self._headers = {"authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.spec.max_inflight + 8, keepalive_timeout=KEEPALIVE_S)
            timeout = aiohttp.ClientTimeout(total=None, connect=self.spec.connect_timeout_s)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers=self._headers, read_bufsize=1 << 20, auto_decompress=True
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, path: str, timeout_s: float) -> tuple[int, bytes]:
        """A small GET (health, load, detection); raises on transport failure or timeout."""
        async with asyncio.timeout(timeout_s):
            async with self.session.get(self.base + path) as resp:
                return resp.status, await resp.content.read(4 << 20)

    async def post_json(self, path: str, body: dict[str, Any], timeout_s: float) -> Any:
        """A whole JSON POST (embeddings); an error status raises the client's error."""
        resp = await self.open(path, body, timeout_s=timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                return json.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unreachable(
                UpstreamFailed(f"The upstream's answer was cut short or not JSON ({type(exc).__name__}).")
            ) from None
        finally:
            resp.release()

    async def open(self, path: str, body: dict[str, Any], *, timeout_s: float | None = None) -> aiohttp.ClientResponse:
        """POST and wait for the response headers (first-byte deadline); an error status is raised here."""
        deadline = timeout_s or self.spec.first_byte_timeout_s
        try:
            async with asyncio.timeout(deadline):
                resp = await self.session.post(self.base + path, json=body)
        except TimeoutError:
            raise Unreachable(RequestTimeout(f"The server behind this model did not answer within {deadline:g} s.")) from None
        except aiohttp.ClientError as exc:
            raise Unreachable(
                UpstreamFailed(f"The server behind this model could not be reached ({type(exc).__name__}).")
            ) from None
        if resp.status < 400:
            return resp
        try:
            async with asyncio.timeout(5):
                raw = await resp.content.read(MAX_ERROR_BODY)
        except (aiohttp.ClientError, TimeoutError):
            raw = b""
        finally:
            resp.close()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = {"error": raw.decode(errors="replace")[:1000]}
        wait = _retry_after(resp.headers)
        error = error_from(resp.status, parsed, wait)
        if retryable(resp.status):
            raise Unreachable(error, retry_after=wait, hard=resp.status not in (429, 503) or wait is None)
        raise error

    async def events(self, resp: aiohttp.ClientResponse) -> AsyncIterator[str]:
        """The ``data:`` payloads of an SSE body, each within the idle deadline; a cut body raises Unreachable.
        A server that answered one JSON body despite ``stream: true`` gives it as one event."""
        if resp.content_type == "application/json":
            try:
                async with asyncio.timeout(self.spec.idle_timeout_s):
                    raw = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Unreachable(
                    UpstreamFailed(f"The answer of the server behind this model was cut ({type(exc).__name__}).")
                ) from None
            try:
                chunk = whole_as_chunk(json.loads(raw))
            except ValueError:
                raise Unreachable(UpstreamFailed("The server behind this model answered JSON that does not parse.")) from None
            yield chunk
            yield "[DONE]"
            return
        data: list[str] = []
        idle = self.spec.idle_timeout_s
        while True:
            try:
                async with asyncio.timeout(idle):
                    line = await resp.content.readline()
            except TimeoutError:
                raise Unreachable(RequestTimeout(f"The server behind this model went silent for {idle:g} s.")) from None
            except (aiohttp.ClientError, ValueError) as exc:
                raise Unreachable(
                    UpstreamFailed(f"The connection to the server behind this model broke ({type(exc).__name__}).")
                ) from None
            if not line:  # end of body
                if data:
                    yield "\n".join(data)
                return
            text = line.decode("utf-8", errors="replace").rstrip("\r\n")
            if not text:
                if data:
                    yield "\n".join(data)
                    data = []
            elif text.startswith("data:"):
                data.append(text[5:].removeprefix(" "))
            # other fields (event:, id:, retry:) and comments carry nothing an OpenAI stream needs
