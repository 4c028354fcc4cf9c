"""One llama.cpp sampler chain per sequence, built from engine-neutral SamplingParams.

Order: logit bias -> OpenAI penalties -> (temperature 0: greedy) | temperature -> top-p -> seeded draw.
A seeded chain draws the same tokens from the same logits, whatever else is in the batch.

Penalties follow OpenAI: over the tokens generated so far (never the prompt: the chain only
sees the tokens it samples), ``logit -= count * frequency_penalty + (count > 0) * presence_penalty``,
which is exactly llama.cpp's penalties sampler with its repeat penalty off (1.0).
"""

from __future__ import annotations

from typing import Any

import llama_cpp as L

from faceplate.engines.base import SamplingParams
from faceplate.engines.llamacpp.model import LlamaModel

# OpenAI's penalties count every generated token so far; llama.cpp's look back a window, so the
# window must cover the longest generation (the scheduler passes its per-sequence context).
PENALTY_WINDOW = 8192


class SamplerChain:
    def __init__(self, model: LlamaModel, params: SamplingParams, *, seed: int, history: int = PENALTY_WINDOW) -> None:
        sp = L.llama_sampler_chain_default_params()
        sp.no_perf = True
        self._chain: Any = L.llama_sampler_chain_init(sp)
        try:
            add = lambda smpl: L.llama_sampler_chain_add(self._chain, smpl)  # noqa: E731
            if params.logit_bias:
                arr = (L.llama_logit_bias * len(params.logit_bias))()
                for i, (tok, bias) in enumerate(params.logit_bias):
                    arr[i].token, arr[i].bias = tok, bias
                add(L.llama_sampler_init_logit_bias(model.n_vocab, len(params.logit_bias), arr))
            if params.frequency_penalty or params.presence_penalty or params.repetition_penalty != 1.0:
                # llama-cpp-python 0.3.36: (n_vocab, penalty_last_n, penalty_repeat, penalty_freq, penalty_present).
                add(
                    L.llama_sampler_init_penalties(
                        model.n_vocab,
                        max(history, 1),
                        params.repetition_penalty,
                        params.frequency_penalty,
                        params.presence_penalty,
                    )
                )
            if params.temperature <= 0.0:
                add(L.llama_sampler_init_greedy())
            else:
                # Temperature first, then nucleus: the order OpenAI and Hugging Face use.
                add(L.llama_sampler_init_temp(params.temperature))
                if params.top_k > 0:
                    add(L.llama_sampler_init_top_k(params.top_k))
                if params.top_p < 1.0:
                    add(L.llama_sampler_init_top_p(params.top_p, 1))
                if params.min_p > 0.0:
                    add(L.llama_sampler_init_min_p(params.min_p, 1))
                add(L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        except BaseException:
            self.close()  # the chain owns (and frees) the samplers already added
            raise

    def sample(self, ctx: Any, idx: int) -> int:
        """Sample (and accept) the next token from the logits at batch position ``idx``."""
        return int(L.llama_sampler_sample(self._chain, ctx, idx))

    def close(self) -> None:
        if self._chain:
            L.llama_sampler_free(self._chain)
            self._chain = None
