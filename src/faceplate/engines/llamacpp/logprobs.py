"""Token logprobs from one logits row, as OpenAI reports them.

The row must be the model's own distribution: a grammar writes its mask (-inf for forbidden
tokens) into llama.cpp's logits buffer in place, so for a constrained sequence that asks for
logprobs the scheduler hands over a copy taken before masking. Anything non-finite
(or below it) is floored at OpenAI's -9999.0, so ``-Infinity`` never reaches JSON.
"""

from __future__ import annotations

import math

import numpy as np

from faceplate.engines.base import TokenLogprob, TopLogprob

LOGPROB_FLOOR = -9999.0


def floored(value: float) -> float:
    return value if math.isfinite(value) and value > LOGPROB_FLOOR else LOGPROB_FLOOR


def token_logprob(pieces: list[bytes], logits: np.ndarray, token: int, top: int) -> TokenLogprob:
    """The log-softmax of ``logits`` at ``token``, with the ``top`` most likely tokens as alternatives."""
    row = logits.astype(np.float64, copy=False)
    finite = row[np.isfinite(row)]
    m = float(finite.max()) if finite.size else 0.0
    lse = m + float(np.log(np.exp(finite - m).sum())) if finite.size else math.inf
    alts: tuple[TopLogprob, ...] = ()
    if top:
        top = min(top, row.size)
        best = np.argpartition(-row, top - 1)[:top]
        best = best[np.argsort(-row[best], kind="stable")]
        alts = tuple(_top(pieces, int(t), floored(float(row[t]) - lse)) for t in best)
    piece = pieces[token]
    return TokenLogprob(piece.decode(errors="replace"), floored(float(row[token]) - lse), tuple(piece), alts)


def _top(pieces: list[bytes], token: int, logprob: float) -> TopLogprob:
    piece = pieces[token]
    return TopLogprob(piece.decode(errors="replace"), logprob, tuple(piece))
