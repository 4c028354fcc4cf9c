"""Prefix reuse: which free slot a prompt goes to, and how much of it is already in the KV cache."""

from __future__ import annotations

from typing import Any

import llama_cpp as L

from faceplate.engines.llamacpp.prompt_cache import MIN_TOKENS, HostPromptCache, copy_sequence
from faceplate.engines.llamacpp.slot import Slot, common_prefix

# Copying from another sequence or from host memory costs about 23 KiB a token held (SmolLM2-135M,
# ~1 ms for 40 tokens); prefilling a token costs ~5 ms on 2 cores. A few tokens pay for it.
MIN_GAIN_TO_LOAD = 8


def take_prefix(
    ctx: Any, mem: Any, slots: list[Slot], free: list[Slot], prompt: list[int], host: HostPromptCache | None = None
) -> tuple[Slot, int]:
    """The free slot to lead ``prompt`` and how many of its tokens it already holds (at most all
    but the last, which is always decoded for its logits); the slot's cache is cut to that prefix.

    The leader is the free slot with the lowest sequence id, so that running sequences stay
    packed from 0: with one KV stream per sequence, llama.cpp puts only consecutive sequence ids
    in one micro-batch, and a step over sequences {0, 3, 5} runs three forward passes where {0, 1,
    2} runs one. The prompt's cached prefix comes to it from wherever it is longest: the slot's
    own cache, another sequence (busy or not; only its used cells are copied), or the host prompt
    cache. What the leader held and is about to lose goes to the host cache first."""

    leader = min(free, key=lambda s: s.seq)
    reused = common_prefix(leader.cache, prompt)
    donor = max(slots, key=lambda s: common_prefix(s.cache, prompt))
    shared = common_prefix(donor.cache, prompt)
    use_donor = donor is not leader and shared >= reused + MIN_GAIN_TO_LOAD
    entry, held = host.best(prompt) if host is not None else (None, 0)
    if entry is not None and held < max(reused, shared if use_donor else 0) + MIN_GAIN_TO_LOAD:
        entry = None
    keep = 0 if use_donor or entry is not None else reused
    if host is not None and len(leader.cache) - keep >= MIN_TOKENS:
        host.save(ctx, leader.seq, leader.cache)
    if host is not None and entry is not None:
        reused = min(held, len(prompt) - 1)
        if host.restore(ctx, mem, leader.seq, entry, reused):
            leader.cache = prompt[:reused]
            return leader, reused
        leader.cache, reused = [], 0  # the load failed and left the sequence empty
    if use_donor:
        copy_sequence(ctx, mem, donor.seq, leader.seq)
        leader.cache = donor.cache[:]
        reused = shared
    reused = min(reused, len(prompt) - 1)
    L.llama_memory_seq_rm(mem, leader.seq, reused, -1)
    del leader.cache[reused:]
    return leader, reused


def pack(ctx: Any, mem: Any, slots: list[Slot], host: HostPromptCache | None = None) -> bool:
    """Keep running sequences packed from 0 when one in the middle has finished: move the highest
    decoding sequence into the lowest free one below it (a copy of its used cells, ~2 ms for 200
    tokens, against a whole extra forward pass every step while the gap lasts). The free slot
    takes over the old sequence id, whose cells still hold a copy of what was moved. Sorts
    ``slots`` by sequence id again; True if a sequence moved."""
    free = [s for s in slots if s.job is None]
    busy = [s for s in slots if s.job is not None]
    if not free or not busy:
        return False
    low, high = min(free, key=lambda s: s.seq), max(busy, key=lambda s: s.seq)
    # Only a sequence that is plainly decoding moves: one with a sampled token to decode next has
    # finished its prefill, and an n > 1 leader's followers got their prompt copy in that step.
    if low.seq > high.seq or high.next_token is None:
        return False
    if host is not None and len(low.cache) >= MIN_TOKENS:
        host.save(ctx, low.seq, low.cache)
    copy_sequence(ctx, mem, high.seq, low.seq)
    low.seq, high.seq = high.seq, low.seq
    low.cache = high.cache[:]
    slots.sort(key=lambda s: s.seq)
    return True
