"""The one generation path: engine streams, metered, as wire chunks or a collected object.

A ``Reply`` owns everything a request holds (engine streams, its rate-limit lease, its
usage record) and releases it exactly once, however the call ends: finished, failed, the
client gone mid-stream, before the first byte, or while still queued. HTTP routes, the
batch worker and the Responses API all end here; none of them meters anything itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from faceplate.engines.base import ChatEngine, Finished, GenerationEvent, Prepared, Priority, TextDelta
from faceplate.engines.interleave import aclose, interleave
from faceplate.service import request_log
from faceplate.service.metering import Meter, status_of
from faceplate.translate.common import Choices, Translator


async def merge(streams: Sequence[AsyncIterator[GenerationEvent]], n: int) -> AsyncIterator[GenerationEvent]:
    """Interleave several requests' events; request i's choice j becomes index i*n + j."""
    async for i, ev in interleave(streams):
        yield replace(ev, index=i * n + ev.index) if i else ev


async def open_streams(
    engine: ChatEngine, prepared: Sequence[Prepared], priority: Priority = "interactive"
) -> list[AsyncIterator[GenerationEvent]]:
    """Queue every request, or none: if one is refused (queue full), cancel those already queued."""
    streams: list[AsyncIterator[GenerationEvent]] = []
    try:
        for p in prepared:
            streams.append(engine.generate(p, priority))
    except BaseException:
        for s in streams:  # a JobStream cancels its job on close, even if never iterated
            await aclose(s)
        raise
    return streams


class Reply:
    """A metered generation. Use ``chunks()`` (streaming) or ``collect()``; ``aclose()`` always."""

    def __init__(
        self,
        meter: Meter,
        streams: list[AsyncIterator[GenerationEvent]],
        translator: Translator | None,
        *,
        n: int,
        prepared: Sequence[Prepared],
        include_usage: bool = False,
    ) -> None:
        self.meter = meter
        self._streams = streams  # closed explicitly: an unstarted generator's cleanup never runs
        self._events = merge(streams, n)
        self.translator = translator
        self.choices = Choices.of(n * len(streams))
        self._prepared = prepared
        self.include_usage = include_usage
        self._last_token: dict[int, float] = {}  # choice -> when its last token came

    @property
    def headers(self) -> dict[str, str]:
        return self.meter.headers

    @property
    def prompt_tokens(self) -> int:
        """Read when needed: a remote engine settles its estimate to the upstream's count as it finishes."""
        return sum(p.prompt_tokens for p in self._prepared)

    @property
    def startable(self) -> bool:
        return any(hasattr(stream, "ready") for stream in self._streams)

    async def start(self) -> None:
        """Wait until every engine stream is under way (a remote one: placed, answered, first event held),
        so a refusal still becomes an HTTP status rather than an error event in a 200 stream."""
        readies = [stream.ready() for stream in self._streams if hasattr(stream, "ready")]
        await asyncio.gather(*readies)  # all at once: several prompts' first events are awaited together

    async def events(self) -> AsyncIterator[GenerationEvent]:
        """The engine events, metered: usage is recorded when this ends, however it ends."""
        error: BaseException | None = None
        try:
            async for ev in self._events:
                self.choices.add(ev)
                self._observe(ev)
                yield ev
        except BaseException as exc:
            error = exc
            raise
        finally:
            await self._finish(error)

    def _observe(self, ev: GenerationEvent) -> None:
        """Time to first token (of the whole reply) and the gaps between tokens (of each choice)."""
        if isinstance(ev, Finished) or (isinstance(ev, TextDelta) and not ev.text and not ev.tokens):
            return
        now = time.monotonic()
        metrics, model = self.meter.metrics, self.meter.model
        last = self._last_token.get(ev.index)
        if not self._last_token:
            ttft = now - self.meter.started
            request_log.note(ttft_ms=round(ttft * 1000, 1))
            if metrics is not None:
                metrics.ttft.labels(model).observe(ttft)
        elif last is not None and metrics is not None:
            tokens = max(1, getattr(ev, "tokens", 1))
            for _ in range(min(tokens, 64)):
                metrics.itl.labels(model).observe((now - last) / tokens)
        self._last_token[ev.index] = now

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The wire stream: opening chunks, one or more per event, the usage chunk when asked."""
        assert self.translator is not None, "a reply without a translator gives events() only"
        for chunk in self.translator.opening():
            yield chunk
        events = self.events()
        try:
            async for ev in events:
                for chunk in self.translator.events(ev):
                    yield chunk
        finally:
            await events.aclose()  # at once, not whenever the garbage collector gets to it
        if self.include_usage:
            yield self.translator.usage_chunk(self.prompt_tokens, self.choices)

    async def collect(self) -> dict[str, Any]:
        """The non-streamed object: exactly the stream's events, collected."""
        assert self.translator is not None, "a reply without a translator gives events() only"
        events = self.events()
        try:
            async for _ in events:
                pass
        finally:
            await events.aclose()
        return self.translator.build(self.choices, self.prompt_tokens)

    async def aclose(self, error: BaseException | None = None) -> None:
        """Release everything now (idempotent). Without an error, a reply closed unfinished counts as 499."""
        if not self.meter.done:
            await self._finish(error if error is not None else asyncio.CancelledError())

    async def _finish(self, error: BaseException | None) -> None:
        if self.meter.done:
            return
        try:
            await aclose(self._events)
            for stream in self._streams:
                await aclose(stream)
        finally:
            await self.meter.finish(status_of(error), self.prompt_tokens, self.choices.completion_tokens)
