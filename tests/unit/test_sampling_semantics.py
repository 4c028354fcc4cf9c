"""The sampling semantics Faceplate keeps, pinned: OpenAI's, with no silent cut of the vocabulary.

llama.cpp's own server samples with top-k 40 (and min-p 0.05) unless told otherwise, which is
cheaper per token but is not what an OpenAI client asked for. Faceplate's chain is exactly
temperature, then top-p when it is below 1, then the seeded draw; top_p 1.0 draws from the whole
vocabulary, whatever the speed work on the per-token path does."""

from __future__ import annotations

from typing import Any

import llama_cpp as L
import pytest

from faceplate.config import bundled_chat_model_path
from faceplate.engines.base import SamplingParams
from faceplate.engines.llamacpp.model import ContextSettings, LlamaModel
from faceplate.engines.llamacpp.sampling import SamplerChain

pytestmark = pytest.mark.skipif(bundled_chat_model_path() is None, reason="the bundled chat model is not installed")


def names(chain: SamplerChain) -> list[str]:
    """The chain's samplers by name; llama.cpp names a temperature of exactly 1 (a no-op) "?temp"."""
    raw: Any = chain._chain
    found = [L.llama_sampler_name(L.llama_sampler_chain_get(raw, i)).decode() for i in range(L.llama_sampler_chain_n(raw))]
    return [name.removeprefix("?") for name in found]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (SamplingParams(), ["temp", "dist"]),  # OpenAI's defaults: temperature 1, top_p 1: nothing cut
        (SamplingParams(temperature=0.7, top_p=0.9), ["temp", "top-p", "dist"]),  # temperature before nucleus
        (SamplingParams(temperature=0.0, top_p=0.5), ["greedy"]),
        (SamplingParams(presence_penalty=0.5), ["penalties", "temp", "dist"]),
        (SamplingParams(logit_bias=((42, 5.0),)), ["logit-bias", "temp", "dist"]),
    ],
)
def test_the_chain_is_exactly_what_the_request_asked_for(model: LlamaModel, params: SamplingParams, expected: list[str]) -> None:
    chain = SamplerChain(model, params, seed=1)
    try:
        assert names(chain) == expected
    finally:
        chain.close()


def test_top_p_one_draws_from_the_whole_vocabulary(model: LlamaModel) -> None:
    """Many seeded draws at a high temperature from one position's logits reach far more distinct
    tokens than a top-k 40 (llama-server's default) or a min-p cut would ever allow."""
    ctx = model.new_context(ContextSettings(n_ctx_per_seq=256, n_parallel=1, n_batch=64, n_threads=2))
    batch = L.llama_batch_init(64, 0, 1)
    try:
        tokens = model.tokenize("Once upon a time", add_special=True, parse_special=False)
        for i, tok in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == len(tokens) - 1
        batch.n_tokens = len(tokens)
        assert L.llama_decode(ctx, batch) == 0
        drawn = set()
        for seed in range(400):
            chain = SamplerChain(model, SamplingParams(temperature=4.0, top_p=1.0), seed=seed)
            try:
                drawn.add(chain.sample(ctx, len(tokens) - 1))
            finally:
                chain.close()
        assert len(drawn) > 200, len(drawn)  # top-k 40 would give at most 40
    finally:
        L.llama_batch_free(batch)
        L.llama_free(ctx)
