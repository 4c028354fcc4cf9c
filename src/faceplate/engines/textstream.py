"""Token bytes -> safe text deltas, for any engine.

Two things must never reach a client: half of a multi-byte UTF-8 character, and any
part of a stop sequence (even one that arrives split across tokens). So text is
held back while it could still be the start of a stop sequence, and bytes are held
back while they do not yet form whole characters. Logprobs travel with the text they
produced.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from faceplate.engines.base import TokenLogprob


@dataclass
class Emitted:
    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)
    stopped: bool = False  # a stop sequence was found; generation must end


class TextStream:
    def __init__(self, stop: tuple[str, ...]) -> None:
        self._stop = tuple(s for s in stop if s)
        self._longest = max((len(s) for s in self._stop), default=0)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""  # decoded text not yet sent (may be a stop-sequence prefix)
        self._held_logprobs: list[TokenLogprob] = []
        self.text = ""  # everything sent so far

    def feed(self, piece: bytes, logprob: TokenLogprob | None = None) -> Emitted:
        self._held += self._decoder.decode(piece)
        if logprob is not None:
            self._held_logprobs.append(logprob)
        return self._release(final=False)

    def flush(self) -> Emitted:
        """End of generation: send whatever is held (an incomplete character becomes U+FFFD)."""
        self._held += self._decoder.decode(b"", final=True)
        return self._release(final=True)

    def _release(self, final: bool) -> Emitted:
        if self._stop:
            # Only the newly added text plus a stop's length of context can contain a new match.
            hits = [i for i in (self._held.find(s) for s in self._stop) if i >= 0]
            if hits:
                cut = min(hits)
                out = Emitted(self._held[:cut], self._held_logprobs, stopped=True)
                self._commit(out)
                return out
            if not final:
                keep = self._partial_stop_suffix()
                if keep:
                    out = Emitted(self._held[: len(self._held) - keep])
                    self._held = self._held[len(self._held) - keep :]
                    self.text += out.text
                    return out
        out = Emitted(self._held, self._held_logprobs)
        self._commit(out)
        return out

    def _commit(self, out: Emitted) -> None:
        self.text += out.text
        self._held = ""
        self._held_logprobs = []

    def _partial_stop_suffix(self) -> int:
        """Length of the longest tail of the held text that is a proper prefix of some stop sequence."""
        held = self._held
        for n in range(min(len(held), self._longest - 1), 0, -1):
            tail = held[-n:]
            if any(s.startswith(tail) for s in self._stop):
                return n
        return 0
