"""One step's ``llama_batch``: a token for every decoding sequence, then bounded prompt chunks.

Batch invariance (``deterministic``). llama.cpp's CPU flash attention picks its kernel by the
shape of the sub-batch a token lands in (bench/determinism.py measures it): a sequence with
64 or more tokens in one sub-batch takes a tiled kernel, fewer take a row kernel, and the
two round differently; a lone decode token past 256 KV cells takes a split-KV kernel when it
runs on more than one thread. So by default a token's logits depend on how its prompt was
chunked and on its neighbours. In deterministic mode every prompt goes in chunks under 64
tokens and a step that holds a lone token that far runs it on one thread: every row then
takes the row kernel, and a seeded request gives the same tokens alone or batched, from a
cached prefix or not, at a cost (bench/README.md).
"""

from __future__ import annotations

import llama_cpp as L

from faceplate.engines.llamacpp.slot import Slot

FA_TILE_Q = 64  # from this many tokens of one sequence in a sub-batch, flash attention runs tiled
SPLIT_KV_POS = 256  # from this position, a lone token's attention is split across threads


class Batch:
    def __init__(self, n_batch: int, prefill_chunk: int, *, deterministic: bool = False) -> None:
        self.n_batch = n_batch
        self.deterministic = deterministic
        self.prefill_chunk = min(FA_TILE_Q - 1 if deterministic else prefill_chunk, n_batch)
        self.batch = L.llama_batch_init(n_batch, 0, 1)
        self.max_pos = 0  # the highest position in the last fill

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
        # While others are streaming, a prompt goes in chunks so their next token is not held up
        # (always, in deterministic mode: see the module's docstring).
        chunk_cap = self.prefill_chunk if decoding or self.deterministic else budget
        prefilling = [s for s in slots if s.job is not None and s.pending]
        # A client's prompt goes first; Batch API prompts wait for a step without one, so batch
        # work adds little to a client's time to first token.
        if any(s.job.priority == "interactive" for s in prefilling):  # type: ignore[union-attr]
            prefilling = [s for s in prefilling if s.job.priority == "interactive"]  # type: ignore[union-attr]
        for s in prefilling:
            if budget <= 0:
                break
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
        self.max_pos = max((self.batch.pos[i] for i in range(n)), default=0)
        return n > 0

    def threads_for_lone_tokens(self, n_threads: int) -> int:
        """The thread count for this step's one-token sub-batches (llama.cpp's ``n_threads``)."""
        return 1 if self.deterministic and self.max_pos >= SPLIT_KV_POS else n_threads

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
