"""Tool-call markup in generated text -> ToolCallDelta events, for engines that write calls as text.

Wraps an event stream: text of each choice goes through a ``ToolCallParser``; plain text
stays a TextDelta (with its logprobs and token count), call pieces become ToolCallDeltas,
and a choice that made calls finishes with reason ``tool_calls``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from faceplate.engines.base import Finished, GenerationEvent, TextDelta, ToolCallDelta
from faceplate.structured.tools import Piece, ToolCallParser


def _split(index: int, pieces: list[Piece], base: TextDelta | None) -> list[GenerationEvent]:
    text = "".join(p.content for p in pieces if p.index < 0)
    out: list[GenerationEvent] = []
    if base is not None:
        out.append(TextDelta(index, text, base.logprobs, base.tokens))
    elif text:
        out.append(TextDelta(index, text))
    for p in pieces:
        if p.index >= 0:
            out.append(ToolCallDelta(index, p.index, p.call_id, p.name, p.arguments or ""))
    return out


class ToolCallEvents:
    """``events`` with tool-call markup parsed out. Closing it closes (and so cancels) ``events``, even unstarted."""

    def __init__(self, events: AsyncIterator[GenerationEvent], n: int) -> None:
        self._events = events
        self._parsers = [ToolCallParser() for _ in range(n)]
        self._ready: list[GenerationEvent] = []

    def __aiter__(self) -> ToolCallEvents:
        return self

    async def __anext__(self) -> GenerationEvent:
        while not self._ready:
            self._ready = self._convert(await self._events.__anext__())
        return self._ready.pop(0)

    def _convert(self, ev: GenerationEvent) -> list[GenerationEvent]:
        if isinstance(ev, TextDelta):
            return _split(ev.index, self._parsers[ev.index].feed(ev.text), ev)
        if isinstance(ev, Finished):
            parser = self._parsers[ev.index]
            reason = "tool_calls" if ev.reason == "stop" and parser.calls else ev.reason
            return [*_split(ev.index, parser.finish(), None), Finished(ev.index, reason, ev.completion_tokens, ev.cached_tokens)]
        return [ev]

    async def aclose(self) -> None:
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()
