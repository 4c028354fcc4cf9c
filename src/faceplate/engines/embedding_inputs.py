"""What every embedding engine does with its inputs before and after the model.

Inputs arrive as strings or as token-id arrays (the content tokens, without the special
tokens the model adds). Each engine turns them into the exact token sequences its model
sees; these helpers check them the same way everywhere, so a bad input is a 400 for its
own request and never reaches a batch it shares with other requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

import numpy as np

from faceplate.config import ModelSpec, Settings
from faceplate.engines.base import EmbeddingResult, Priority
from faceplate.engines.batcher import Batcher
from faceplate.errors import InvalidRequest

Input = str | Sequence[int]
T = TypeVar("T")

# Inputs bigger than this (characters plus token ids) are tokenized off the event loop.
INLINE_LIMIT = 4096


async def off_loop_if_big(fn: Callable[[Sequence[Input]], T], inputs: Sequence[Input]) -> T:
    """``fn(inputs)``, in a worker thread when the inputs are big enough to stall the event loop."""
    if sum(len(x) for x in inputs) > INLINE_LIMIT:
        return await asyncio.to_thread(fn, inputs)
    return fn(inputs)


def too_long(index: int, n_tokens: int, limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"This model's maximum input length is {limit} tokens, however input {index} has {n_tokens} tokens "
        "(special tokens included). Shorten or split the input: Faceplate does not truncate it.",
        param="input",
        code="context_length_exceeded",
    )


def check_token_ids(index: int, ids: Sequence[int], n_vocab: int) -> None:
    for token in ids:
        if not 0 <= token < n_vocab:
            raise InvalidRequest(
                f"Invalid token id {token} in input {index}: this model's vocabulary has ids 0 to {n_vocab - 1}.",
                param="input",
                code="invalid_value",
            )


def check_lengths(sequences: Sequence[Sequence[int]], limit: int) -> None:
    for i, seq in enumerate(sequences):
        if len(seq) > limit:
            raise too_long(i, len(seq), limit)


def special_affixes(with_special: Sequence[int], without: Sequence[int]) -> tuple[list[int], list[int]]:
    """The tokens a tokenizer adds around content, found by tokenizing one probe text both ways."""
    n = len(without)
    for start in range(len(with_special) - n + 1):
        if list(with_special[start : start + n]) == list(without):
            return list(with_special[:start]), list(with_special[start + n :])
    raise ValueError("cannot tell which special tokens the tokenizer adds")


def longest_first(sequences: Sequence[Sequence[int]]) -> list[int]:
    """Indices ordering sequences longest first: a big request then splits into batches of similar length."""
    return sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))


def length_buckets(lengths: Sequence[int], overhead_tokens: float) -> list[tuple[int, int]]:
    """Split sequences sorted longest first into [start, end) runs that minimise padded work.

    A forward pass over a run costs ``overhead_tokens`` (reading the weights, Python dispatch)
    plus its row count times its longest row (padding included). Exact dynamic programme,
    O(n^2) for n <= the batch size: one pass over 256 mixed-length inputs becomes a dozen
    passes over inputs of similar length, which wastes far less on padding.
    """
    n = len(lengths)
    best = [0.0] * (n + 1)
    start_of = [0] * (n + 1)
    for end in range(1, n + 1):
        cost, start = min((best[i] + overhead_tokens + (end - i) * lengths[i], i) for i in range(end))
        best[end], start_of[end] = cost, start
    runs: list[tuple[int, int]] = []
    end = n
    while end > 0:
        runs.append((start_of[end], end))
        end = start_of[end]
    return runs[::-1]


def unsort(rows: Sequence[np.ndarray], order: Sequence[int]) -> np.ndarray:
    """Stack ``rows`` (in ``order``) back into input order as one float32 matrix."""
    out = np.empty((len(rows), rows[0].shape[-1]), dtype=np.float32)
    for row, i in zip(rows, order, strict=True):
        out[i] = row
    return out


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)


class BatchedEmbedding:
    """The request side every embedding engine shares: tokenize, sort by length, batch, unsort.

    A subclass sets ``self.batcher`` (whose worker runs its model) and implements ``token_sequences``.
    """

    batcher: Batcher[list[int], np.ndarray]
    token_ids: Literal["openai", "model"] = "openai"  # what token-array inputs are (faceplate.engines.openai_tokens)

    def token_sequences(self, inputs: Sequence[Input]) -> list[list[int]]:
        raise NotImplementedError

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        """Embed one batch of token sequences (runs on the batcher's worker thread)."""
        raise NotImplementedError

    def make_batcher(self, spec: ModelSpec, settings: Settings) -> Batcher[list[int], np.ndarray]:
        max_queue = spec.max_queue if spec.max_queue is not None else settings.max_queue
        return Batcher(
            self._forward,
            max_batch=settings.embedding_max_batch,
            wait_s=settings.embedding_batch_wait_ms / 1000,
            enabled=settings.embedding_batching,
            max_requests=256 if max_queue is None else max(1, max_queue),
            name=spec.id,
        )

    async def embed(self, inputs: Sequence[Input], priority: Priority = "interactive") -> EmbeddingResult:
        seqs = await off_loop_if_big(self.token_sequences, inputs)
        order = longest_first(seqs)  # neighbours of similar length waste less padding
        rows = await self.batcher.submit([seqs[i] for i in order], priority)
        return EmbeddingResult(vectors=unsort(rows, order), token_counts=tuple(len(s) for s in seqs))

    async def start(self) -> None:
        self.batcher.start()

    async def close(self) -> None:
        await asyncio.to_thread(self.batcher.close)
