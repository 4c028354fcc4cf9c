"""Seeded output alone vs batched, with the bundled model: when it holds, and the mode that makes it always hold.

bench/determinism.py measures why: llama.cpp's CPU flash attention picks a kernel by sub-batch
shape (64+ tokens of one sequence: tiled; a lone token past 256 KV cells: split across threads),
and the kernels round differently. These tests pin both halves of the README's claim.
"""

from __future__ import annotations

import asyncio

import llama_cpp as L
import pytest

from faceplate.config import bundled_chat_model_path
from faceplate.engines.base import SamplingParams, TextDelta
from faceplate.engines.llamacpp.model import ContextSettings, LlamaModel
from faceplate.engines.llamacpp.request import TokenRequest
from faceplate.engines.llamacpp.scheduler import Scheduler

pytestmark = pytest.mark.skipif(bundled_chat_model_path() is None, reason="the bundled chat model is not installed")

LONG = (
    "<|im_start|>user\nHere is a long story to continue. The quick brown fox jumps over the lazy dog, then runs "
    "across the field to the river, where an old boat waits under the willow trees. The fox climbs in, the boat "
    "drifts away, and the journey begins. Continue the story in detail.<|im_end|>\n<|im_start|>assistant\n"
)
SHORT = "<|im_start|>user\nWrite a poem about the sea.<|im_end|>\n<|im_start|>assistant\n"


def run(model: LlamaModel, requests: list[TokenRequest], *, deterministic: bool, repeat_first: bool = False) -> list[str]:
    """Run the requests together (queued before the scheduler starts, so they share steps); texts in order."""

    async def go() -> list[str]:
        ctx = model.new_context(ContextSettings(n_ctx_per_seq=768, n_parallel=4, n_batch=512, n_threads=2))
        sched = Scheduler(model, ctx, n_parallel=4, n_ctx_per_seq=768, n_batch=512, max_queue=8, deterministic=deterministic)

        async def text(req: TokenRequest) -> str:
            return "".join([ev.text async for ev in sched.submit(req) if isinstance(ev, TextDelta)])

        try:
            if repeat_first:  # the same request again: now from the cached prefix
                sched.start()
                first = await asyncio.wait_for(text(requests[0]), 120)
                return [first, await asyncio.wait_for(text(requests[0]), 120)]
            tasks = [asyncio.ensure_future(text(r)) for r in requests]
            await asyncio.sleep(0)  # every job is submitted before the first step
            sched.start()
            return list(await asyncio.wait_for(asyncio.gather(*tasks), 240))
        finally:
            await asyncio.to_thread(sched.stop)
            L.llama_free(ctx)

    return asyncio.run(go())


def request(model: LlamaModel, prompt: str, *, seed: int, max_tokens: int) -> TokenRequest:
    tokens = tuple(model.tokenize(prompt, add_special=False, parse_special=True))
    params = SamplingParams(max_tokens=max_tokens, temperature=0.9, seed=seed, ignore_eos=True)
    return TokenRequest("r", tokens, params, max_new_tokens=max_tokens)


def neighbours(model: LlamaModel) -> list[TokenRequest]:
    return [
        request(model, SHORT, seed=7, max_tokens=60),
        request(model, LONG, seed=8, max_tokens=30),
        request(model, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", seed=9, max_tokens=280),
    ]


def test_deterministic_mode_gives_the_same_tokens_alone_batched_and_cached(model: LlamaModel) -> None:
    target = request(model, LONG, seed=1, max_tokens=240)  # a 64+ token prompt, decoding well past position 256
    assert len(target.tokens) >= 64 and len(target.tokens) + 240 > 300
    [alone] = run(model, [target], deterministic=True)
    batched = run(model, [target, *neighbours(model)], deterministic=True)[0]
    first, cached = run(model, [target], deterministic=True, repeat_first=True)
    assert batched == alone
    assert first == cached == alone


def test_by_default_short_prompts_and_answers_are_batch_invariant(model: LlamaModel) -> None:
    """The default mode's guarantee: a prompt under 64 tokens whose answer ends before position 256."""
    target = request(model, SHORT, seed=1, max_tokens=100)
    assert len(target.tokens) < 64
    [alone] = run(model, [target], deterministic=False)
    assert run(model, [target, *neighbours(model)], deterministic=False)[0] == alone
