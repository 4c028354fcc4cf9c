"""What every token-level engine checks before it queues a request: n, token ids, the context."""

from __future__ import annotations

from collections.abc import Sequence

from faceplate.engines.base import SamplingParams
from faceplate.errors import ContextLengthExceeded, InvalidRequest


def check_prompt_ids(ids: Sequence[int], n_vocab: int) -> None:
    if any(t < 0 or t >= n_vocab for t in ids):
        raise InvalidRequest(f"Invalid 'prompt': token ids must be between 0 and {n_vocab - 1}.", param="prompt")


def fit(params: SamplingParams, n: int, prompt_len: int, *, n_ctx: int, n_vocab: int, max_n: int, param: str) -> int:
    """Refuse what can never run (400s); return the most tokens a choice may generate."""
    if n > max_n:
        raise InvalidRequest(f"n={n} is more than this model can generate at once ({max_n}).", param="n")
    if prompt_len >= n_ctx:
        raise ContextLengthExceeded(prompt_len, n_ctx, param=param)
    if params.max_tokens is not None and prompt_len + params.max_tokens > n_ctx:
        raise ContextLengthExceeded(prompt_len, n_ctx, requested=params.max_tokens, param=param)
    for token, _ in params.logit_bias:
        if token >= n_vocab:
            raise InvalidRequest(f"Invalid logit_bias: token id {token} is outside the vocabulary.", param="logit_bias")
    return params.max_tokens if params.max_tokens is not None else n_ctx - prompt_len
