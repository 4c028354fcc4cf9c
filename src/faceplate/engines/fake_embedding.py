"""A deterministic embedding engine for fast API tests: real batching and checks, no model.

Tokens are the UTF-8 bytes of the text (ids 0-255) between a start token (256) and an
end token (257), as a BERT tokenizer puts [CLS] and [SEP] around text. The vector of an
input is the normalised mean of fixed pseudo-random token vectors, so the same text
always gives the same vector, and a token array gives the vector of its decoded text.
It runs through the real Batcher, with the same validation as the real engines; it is
never used to claim that a real model works.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from faceplate.engines.batcher import Batcher
from faceplate.engines.embedding_inputs import (
    BatchedEmbedding,
    Input,
    check_lengths,
    check_token_ids,
    l2_normalise,
)

START, END = 256, 257
VOCAB = 258


class FakeEmbeddingEngine(BatchedEmbedding):
    kind: Literal["embedding"] = "embedding"

    def __init__(
        self,
        model_id: str = "fake-embedding",
        *,
        dimensions: int = 32,
        max_input_tokens: int = 64,
        supports_dimensions: bool = True,
        max_batch: int = 256,
        wait_s: float = 0.002,
        batching: bool = True,
        max_requests: int | None = None,
        token_ids: Literal["openai", "model"] = "openai",
    ) -> None:
        self.model_id = model_id
        self.token_ids = token_ids
        self.dimensions = dimensions
        self.max_input_tokens = max_input_tokens
        self.supports_dimensions = supports_dimensions
        self.table = np.random.default_rng(1234).standard_normal((VOCAB, dimensions)).astype(np.float32)
        self.batch_sizes: list[int] = []  # one entry per forward pass
        self.delay_s = 0.0  # per forward pass; tests raise it to hold the worker busy
        self.fail_batches = 0  # the next N forward passes raise
        self.batcher: Batcher[list[int], np.ndarray] = Batcher(
            self._forward, max_batch=max_batch, wait_s=wait_s, enabled=batching, max_requests=max_requests, name=model_id
        )

    def token_sequences(self, inputs: Sequence[Input]) -> list[list[int]]:
        seqs: list[list[int]] = []
        for i, x in enumerate(inputs):
            if isinstance(x, str):
                seqs.append([START, *x.encode(), END])
            else:
                check_token_ids(i, x, 256)  # content tokens are bytes; the markers are added here
                seqs.append([START, *x, END])
        check_lengths(seqs, self.max_input_tokens)
        return seqs

    def count_tokens(self, inputs: Sequence[Input]) -> list[int]:
        return [len(s) for s in self.token_sequences(inputs)]

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        self.batch_sizes.append(len(batch))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_batches > 0:
            self.fail_batches -= 1
            raise RuntimeError("injected failure")
        return l2_normalise(np.stack([self.table[seq].mean(axis=0) for seq in batch]))

    def stats(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions, "max_input_tokens": self.max_input_tokens, **self.batcher.stats()}
