"""Prefix reuse: which free slot a prompt goes to, and how much of it is already in the KV cache."""

from __future__ import annotations

from typing import Any

import llama_cpp as L

from faceplate.engines.llamacpp.slot import Slot, common_prefix

# Copying another sequence's KV stream costs a memcpy of the whole stream; only worth it
# when it saves a real amount of prefill.
MIN_SHARED_PREFIX_TO_COPY = 32


def take_prefix(mem: Any, slots: list[Slot], free: list[Slot], prompt: list[int]) -> tuple[Slot, int]:
    """The free slot to lead ``prompt`` and how many of its tokens it already holds (at most all
    but the last, which is always decoded for its logits); the slot's cache is cut to that prefix.

    A free sequence's cache is reused only for a real shared prefix: a chat template's few header
    tokens must not pull every request into one slot and evict a long cached prefix (a shared
    system prompt). Otherwise an empty slot, then the least recently used. When another sequence
    (busy or not) holds a longer prefix (the same system prompt, say), its KV stream is copied."""

    def fit(slot: Slot) -> tuple[int, bool, float]:
        shared = common_prefix(slot.cache, prompt)
        return (shared if shared >= MIN_SHARED_PREFIX_TO_COPY else 0, not slot.cache, -slot.last_used)

    leader = max(free, key=fit)
    reused = common_prefix(leader.cache, prompt)
    donor = max(slots, key=lambda s: common_prefix(s.cache, prompt))
    shared = common_prefix(donor.cache, prompt)
    if donor is not leader and shared >= reused + MIN_SHARED_PREFIX_TO_COPY:
        L.llama_memory_seq_rm(mem, leader.seq, -1, -1)
        L.llama_memory_seq_cp(mem, donor.seq, leader.seq, -1, -1)
        leader.cache = donor.cache[:]
        reused = shared
    reused = min(reused, len(prompt) - 1)
    L.llama_memory_seq_rm(mem, leader.seq, reused, -1)
    del leader.cache[reused:]
    return leader, reused
