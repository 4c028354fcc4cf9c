"""Prompt cache in host memory: the KV state of sequences whose slot went to another prompt.

A slot keeps its last conversation's KV, but with ``n_parallel`` slots only that many survive:
the next unrelated request evicts one. Here the evicted sequence's state is copied out
(``llama_state_seq_get_data``, 22.5 KiB a token for SmolLM2-135M) and a later prompt that
starts with it gets it copied back instead of prefilled again (out and back for 650 tokens:
11.7 ms against 3.1 s of prefill on 2 cores, bench/kv_copy.py): a returning conversation, a
system prompt shared by more clients than there are slots. llama-server does the same (``--cache-ram``, 8 GiB by default).

The restored cells are the bytes the prefill wrote, so a request answers exactly as it would
from a slot's own cache. Only the scheduler thread calls in; ``stats`` is read from others.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import llama_cpp as L
import numpy as np

# Below this many tokens a prefill costs about what saving and restoring does.
MIN_TOKENS = 32
# ``best`` compares the prompt with every entry (numpy, a few µs each) on the scheduler thread,
# between two decode steps: the count is bounded as well as the bytes.
MAX_ENTRIES = 256
# copy_sequence uses the state API for sequences up to this fraction of a KV stream (bench/kv_copy.py).
STATE_COPY_SHARE = 5


@dataclass(eq=False)
class Entry:
    tokens: np.ndarray  # int32, the sequence's tokens at positions 0..
    state: Any  # ctypes c_uint8 array: llama_state_seq_get_data's bytes
    size: int


def copy_sequence(ctx: Any, mem: Any, src: int, dst: int) -> None:
    """Make sequence ``dst`` a copy of ``src`` (both in this context), the cheaper way.

    ``llama_memory_seq_cp`` between KV streams copies the whole stream at the next decode (188 MB
    for 8192 cells of SmolLM2-135M: 25-40 ms whatever the length); the state API moves only the
    used cells, out and back in (~20 ms for 1,000 tokens). bench/kv_copy.py puts the crossover
    near a fifth of the stream, so longer sequences take the stream copy."""
    L.llama_memory_seq_rm(mem, dst, -1, -1)
    held = int(L.llama_memory_seq_pos_max(mem, src)) + 1
    if held <= int(L.llama_n_ctx_seq(ctx)) // STATE_COPY_SHARE:
        size = int(L.llama_state_seq_get_size(ctx, src))
        state = (ctypes.c_uint8 * size)()
        if size and int(L.llama_state_seq_get_data(ctx, state, size, src)) == size:
            if int(L.llama_state_seq_set_data(ctx, state, size, dst)) == size:
                return
            L.llama_memory_seq_rm(mem, dst, -1, -1)
    L.llama_memory_seq_cp(mem, src, dst, -1, -1)


class HostPromptCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, Entry] = OrderedDict()  # least recently used first
        self._bytes = 0
        self.saved = 0
        self.hits = 0
        self.tokens_restored = 0

    def stats(self) -> dict[str, int]:
        return {
            "prompt_cache_entries": len(self._entries),
            "prompt_cache_bytes": self._bytes,
            "prompt_cache_saved": self.saved,
            "prompt_cache_hits": self.hits,
            "prompt_cache_tokens_restored": self.tokens_restored,
        }

    def best(self, prompt: list[int]) -> tuple[Entry | None, int]:
        """The entry sharing the longest prefix with ``prompt``, and that length."""
        if not self._entries or not prompt:
            return None, 0
        p = np.asarray(prompt, dtype=np.int32)
        best: Entry | None = None
        best_n = 0
        for e in self._entries.values():
            if e.tokens[0] != p[0]:
                continue
            n = min(len(e.tokens), len(p))
            diff = np.flatnonzero(e.tokens[:n] != p[:n])
            shared = int(diff[0]) if diff.size else n
            if shared > best_n:
                best, best_n = e, shared
        return best, best_n

    def save(self, ctx: Any, seq: int, tokens: list[int]) -> None:
        """Copy sequence ``seq`` (holding ``tokens``) out before its cells are reused."""
        if len(tokens) < MIN_TOKENS or self.max_bytes <= 0:
            return
        t = np.asarray(tokens, dtype=np.int32)
        for key, e in list(self._entries.items()):
            n = min(len(e.tokens), len(t))
            if not np.array_equal(e.tokens[:n], t[:n]):
                continue
            if len(e.tokens) >= len(t):  # already held, as it is or as the start of a longer one
                self._entries.move_to_end(key)
                return
            self._drop(key)  # this one extends it: keep only the longer
        size = int(L.llama_state_seq_get_size(ctx, seq))
        if size <= 0 or size > self.max_bytes:
            return
        while self._entries and (self._bytes + size > self.max_bytes or len(self._entries) >= MAX_ENTRIES):
            self._drop(next(iter(self._entries)))
        state = (ctypes.c_uint8 * size)()
        if int(L.llama_state_seq_get_data(ctx, state, size, seq)) != size:
            return
        entry = Entry(t, state, size)
        self._entries[id(entry)] = entry
        self._bytes += size
        self.saved += 1

    def restore(self, ctx: Any, mem: Any, seq: int, entry: Entry, keep: int) -> bool:
        """Load ``entry`` into sequence ``seq`` and cut it to its first ``keep`` tokens.

        The entry may have been evicted meanwhile (saving the slot's old content made room): its
        state is still in hand, so it loads all the same."""
        L.llama_memory_seq_rm(mem, seq, -1, -1)
        held = id(entry) in self._entries
        if int(L.llama_state_seq_set_data(ctx, entry.state, entry.size, seq)) != entry.size:
            L.llama_memory_seq_rm(mem, seq, -1, -1)  # a partial load must not leave stray cells
            if held:
                self._drop(id(entry))
            return False
        L.llama_memory_seq_rm(mem, seq, keep, -1)
        if held:
            self._entries.move_to_end(id(entry))
        self.hits += 1
        self.tokens_restored += keep
        return True

    def _drop(self, key: int) -> None:
        self._bytes -= self._entries.pop(key).size
