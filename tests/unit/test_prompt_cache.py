"""The host prompt cache: a prompt whose slot went to another request comes back from host memory,
and answers exactly as it did when it was prefilled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from faceplate.engines.base import TextDelta
from tests.unit.test_scheduler import LONG_PROMPT, MODEL_PATH, collect, request, tokenize

if TYPE_CHECKING:
    from faceplate.engines.llamacpp.model import LlamaModel
    from faceplate.engines.llamacpp.scheduler import Scheduler

pytestmark = pytest.mark.skipif(MODEL_PATH is None, reason="the bundled SmolLM2 GGUF is not installed")

OTHER_PROMPT = (
    "Rain fell on the harbour all night, and the fishing boats stayed tied to the quay. In the morning the "
    "old captain walked down to the water, looked at the grey sky and said"
)


async def _answer(s: Scheduler, tokens: list[int], **params: Any) -> tuple[str, int]:
    out = await collect(s.submit(request(tokens, **{"max_tokens": 12, **params})))
    return out.text.get(0, ""), out.finished[0].cached_tokens


@pytest.mark.parametrize("params", [{}, {"temperature": 1.0, "seed": 7}], ids=["greedy", "seeded"])
async def test_an_evicted_prompt_comes_back_from_host_memory(
    model: LlamaModel, make_scheduler: Callable[..., Scheduler], params: dict[str, Any]
) -> None:
    a, b = tokenize(model, LONG_PROMPT), tokenize(model, OTHER_PROMPT)
    s = make_scheduler(1, prompt_cache_bytes=64 << 20)  # one slot: B takes A's slot, so A's KV survives only in the host cache
    first, cached = await _answer(s, a, **params)
    assert cached == 0
    await _answer(s, b, **params)
    again, cached = await _answer(s, a, **params)
    stats = s.stats()
    assert cached == len(a) - 1  # all but the last prompt token, which is decoded for its logits
    assert again == first  # the restored cells are the prefilled ones
    assert stats["prompt_cache_hits"] == 1 and stats["prompt_cache_tokens_restored"] == len(a) - 1
    assert stats["prompt_cache_saved"] >= 1 and 0 < stats["prompt_cache_bytes"] <= 64 << 20


async def test_a_partly_shared_prompt_restores_only_the_shared_part(
    model: LlamaModel, make_scheduler: Callable[..., Scheduler]
) -> None:
    a = tokenize(model, LONG_PROMPT)
    c = a[:40] + tokenize(model, " and then, without a word, the")[1:]  # drop the second BOS
    cached_run = make_scheduler(1, prompt_cache_bytes=64 << 20)
    await _answer(cached_run, a)
    await _answer(cached_run, tokenize(model, OTHER_PROMPT))
    text, cached = await _answer(cached_run, c)
    fresh, fresh_cached = await _answer(make_scheduler(1, prompt_cache_bytes=0), c)
    assert cached == 40 and fresh_cached == 0
    assert text == fresh


async def test_off_at_zero_and_bounded_by_its_bytes(model: LlamaModel, make_scheduler: Callable[..., Scheduler]) -> None:
    a, b = tokenize(model, LONG_PROMPT), tokenize(model, OTHER_PROMPT)
    off = make_scheduler(1, prompt_cache_bytes=0)
    for p in (a, b, a):
        _, cached = await _answer(off, p)
    assert cached == 0 and off.stats()["prompt_cache_entries"] == 0

    probe = make_scheduler(1, prompt_cache_bytes=64 << 20)
    await _answer(probe, a)
    await _answer(probe, b)
    one_entry = probe.stats()["prompt_cache_bytes"]  # A's state, as saved when B took its slot
    assert one_entry > 0

    small = make_scheduler(1, prompt_cache_bytes=one_entry + one_entry // 2)  # room for one entry, not two
    third = tokenize(model, "Three green parrots sat on a wire above the market, arguing loudly about " * 2)
    for p in (a, b, third):
        await _answer(small, p)
    stats = small.stats()
    assert stats["prompt_cache_entries"] == 1 and stats["prompt_cache_bytes"] <= one_entry + one_entry // 2
    _, cached = await _answer(small, b)  # B was saved when the third prompt took the slot
    assert cached == len(b) - 1
    _, cached = await _answer(small, a)  # A, the least recently used, made room for B
    assert cached == 0


async def test_the_same_prompt_is_held_once(model: LlamaModel, make_scheduler: Callable[..., Scheduler]) -> None:
    a, b = tokenize(model, LONG_PROMPT), tokenize(model, OTHER_PROMPT)
    s = make_scheduler(1, prompt_cache_bytes=64 << 20)
    for p in (a, b, a, b, a, b):
        await _answer(s, p, max_tokens=1)
    # Each eviction saves the slot's prompt; one already held (or held as a longer one) is not copied again.
    assert s.stats()["prompt_cache_entries"] == 2


async def test_a_short_shared_start_is_copied_from_a_busy_slot(
    model: LlamaModel, make_scheduler: Callable[..., Scheduler]
) -> None:
    """A chat template's header (a dozen tokens) is copied from the sequence that holds it, here
    one still generating, rather than prefilled again; the answer is the one a fresh context gives."""
    a = tokenize(model, LONG_PROMPT)
    c = a[:12] + tokenize(model, " a cat who could not sleep, and every night she")[1:]
    s = make_scheduler(2, prompt_cache_bytes=0)
    running = s.submit(request(a, max_tokens=40))
    first = await anext(aiter(running))  # A is prefilled and decoding in slot 0
    assert isinstance(first, TextDelta)
    text, cached = await _answer(s, c)
    await collect(running)
    assert cached == 12
    fresh, _ = await _answer(make_scheduler(1, prompt_cache_bytes=0), c)
    assert text == fresh


async def test_running_sequences_stay_packed_from_zero(model: LlamaModel, make_scheduler: Callable[..., Scheduler]) -> None:
    """llama.cpp decodes only consecutive sequence ids in one micro-batch, so a new request takes
    the lowest free sequence even when another free one holds its prompt (which is copied over)."""
    a, b = tokenize(model, LONG_PROMPT), tokenize(model, OTHER_PROMPT)
    s = make_scheduler(3, prompt_cache_bytes=0)
    running = s.submit(request(a, max_tokens=40))
    await anext(aiter(running))  # A decodes in seq 0 ...
    b_text, _ = await _answer(s, b)  # ... so B goes to seq 1
    await collect(running)

    again = s.submit(request(b, max_tokens=12))
    first = await anext(aiter(again))
    assert [slot.seq for slot in s.slots if slot.job is not None] == [0]
    rest = await collect(again)
    assert isinstance(first, TextDelta) and first.text + rest.text.get(0, "") == b_text
    assert rest.finished[0].cached_tokens == len(b) - 1  # B's cells, copied from seq 1


async def test_a_gap_in_the_middle_is_closed_and_the_answers_are_unchanged(
    model: LlamaModel, make_scheduler: Callable[..., Scheduler]
) -> None:
    """When the sequence in the middle finishes, the one above it moves down into its place; every
    answer is the one it gives alone."""
    x, z = tokenize(model, LONG_PROMPT), tokenize(model, OTHER_PROMPT)
    y = tokenize(model, "Count from one to ten: one, two,")
    alone = make_scheduler(1, prompt_cache_bytes=0)
    solo_x, _ = await _answer(alone, x, max_tokens=50)
    solo_z, _ = await _answer(alone, z, max_tokens=50)
    s = make_scheduler(3, prompt_cache_bytes=0)
    streams, firsts = [], []
    for prompt, n in ((x, 50), (y, 8), (z, 50)):  # seqs 0, 1, 2; y ends first and leaves seq 1 free
        streams.append(s.submit(request(prompt, max_tokens=n)))
        firsts.append(await anext(aiter(streams[-1])))
    assert [slot.seq for slot in s.slots if slot.job is not None] == [0, 1, 2]
    out_x, _, out_z = await asyncio.gather(*(collect(st) for st in streams))
    assert s.stats()["sequences_moved"] >= 1
    assert firsts[0].text + out_x.text[0] == solo_x
    assert firsts[2].text + out_z.text[0] == solo_z


def test_least_recently_used_out_first_within_bytes_and_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache's bookkeeping alone, over a stand-in for llama.cpp's state API: bytes and entry
    count stay bounded, the least recently used goes first, a hit makes an entry recent."""
    import types

    from faceplate.engines.llamacpp import prompt_cache as pc

    states: dict[int, bytes] = {}
    loaded: dict[int, bytes] = {}

    def get_data(ctx: Any, dst: Any, size: int, seq: int) -> int:
        dst[:size] = states[seq][:size]
        return size

    def set_data(ctx: Any, src: Any, size: int, seq: int) -> int:
        loaded[seq] = bytes(src[:size])
        return size

    fake = types.SimpleNamespace(
        llama_state_seq_get_size=lambda ctx, seq: len(states[seq]),
        llama_state_seq_get_data=get_data,
        llama_state_seq_set_data=set_data,
        llama_memory_seq_rm=lambda mem, seq, p0, p1: True,
    )
    monkeypatch.setattr(pc, "L", fake)
    cache = pc.HostPromptCache(max_bytes=3000)
    prompts = [[i] * 40 for i in range(1, 6)]
    for i, p in enumerate(prompts[:3]):
        states[0] = bytes([i]) * 1000
        cache.save(None, 0, p)
    assert cache.stats()["prompt_cache_entries"] == 3 and cache.stats()["prompt_cache_bytes"] == 3000
    entry, held = cache.best(prompts[0] + [9])
    assert entry is not None and held == 40
    assert cache.restore(None, None, 5, entry, 39) and loaded[5] == bytes([0]) * 1000  # prompt 1 is now recent
    states[0] = bytes([3]) * 1000
    cache.save(None, 0, prompts[3])  # room for it: out goes prompt 2, the least recently used
    assert cache.best(prompts[1])[1] == 0 and cache.best(prompts[0])[1] == 40
    assert cache.stats()["prompt_cache_bytes"] == 3000

    many = pc.HostPromptCache(max_bytes=1 << 30)
    monkeypatch.setattr(pc, "MAX_ENTRIES", 4)
    for i in range(10):
        states[0] = b"x" * 10
        many.save(None, 0, [100 + i] * 40)
    assert many.stats()["prompt_cache_entries"] == 4
    assert many.best([109] * 40)[1] == 40 and many.best([105] * 40)[1] == 0
