"""One step's ``llama_batch``: a token for every decoding sequence, then bounded prompt chunks."""

from __future__ import annotations

import llama_cpp as L

from faceplate.engines.llamacpp.slot import Slot


class Batch:
    def __init__(self, n_batch: int, prefill_chunk: int) -> None:
        self.n_batch = n_batch
        self.prefill_chunk = min(prefill_chunk, n_batch)
        self.batch = L.llama_batch_init(n_batch, 0, 1)

    def fill(self, slots: list[Slot]) -> bool:
        """Lay out this step's tokens (setting each sampling slot's ``batch_index``); False if none."""
        n = 0
        budget = self.n_batch
        decoding = [s for s in slots if s.job is not None and s.next_token is not None]
        for s in decoding:
            self._put(n, s.next_token, len(s.cache), s.seq, True)  # type: ignore[arg-type]
            s.cache.append(s.next_token)  # type: ignore[arg-type]
            s.next_token, s.batch_index = None, n
            n += 1
        budget -= n
        # While others are streaming, a prompt goes in chunks so their next token is not held up.
        chunk_cap = self.prefill_chunk if decoding else budget
        for s in slots:
            if s.job is None or not s.pending or budget <= 0:
                continue
            take = s.pending[: min(budget, chunk_cap)]
            for i, tok in enumerate(take):
                last = i == len(take) - 1 and len(take) == len(s.pending)
                self._put(n, tok, len(s.cache), s.seq, last)
                s.cache.append(tok)
                if last:
                    s.batch_index = n
                n += 1
            del s.pending[: len(take)]
            budget -= len(take)
            chunk_cap = min(chunk_cap, budget)
        self.batch.n_tokens = n
        return n > 0

    def _put(self, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        b = self.batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits

    def free(self) -> None:
        if self.batch is not None:
            L.llama_batch_free(self.batch)
            self.batch = None
