"""Per-sequence grammar constraints for the llama.cpp scheduler, via llguidance.

Each constrained sequence owns a ``deep_copy`` of the request's compiled LLMatcher. Before
sampling, the matcher's token mask is applied to that sequence's logits row in place (-inf
for forbidden tokens); after sampling, the token is consumed. Unconstrained sequences in the
same batch pay nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from llguidance import LLMatcher, LLTokenizer
from llguidance.llamacpp import lltokenizer_from_vocab

from faceplate.engines.llamacpp.model import LlamaModel
from faceplate.errors import InvalidRequest
from faceplate.structured.constraints import LIMITS


class GrammarCompiler:
    """Compiles grammars against the model's vocabulary; keeps recent ones as templates to copy."""

    def __init__(self, model: LlamaModel, cache_size: int = 64) -> None:
        self._model = model
        self._tokenizer: LLTokenizer | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, LLMatcher] = OrderedDict()
        self._cache_size = cache_size

    def tokenizer(self) -> LLTokenizer:
        with self._lock:
            if self._tokenizer is None:  # about a second for a 50k vocabulary: built on first use
                self._tokenizer = lltokenizer_from_vocab(self._model.vocab)
            return self._tokenizer

    def compile(self, spec: str, param: str = "response_format") -> LLMatcher:
        """The matcher for ``spec`` (cached); a grammar that fails is a 400.

        Called by ``prepare``, off the scheduler thread: the request carries the result, and each
        sequence runs a ``deep_copy`` of it, so a grammar evicted from this cache is never
        recompiled while other streams wait. The scheduler never compiles.
        """
        with self._lock:
            cached = self._cache.get(spec)
            if cached is not None:
                self._cache.move_to_end(spec)
                return cached
        matcher = LLMatcher(self.tokenizer(), spec, log_level=0, limits=LIMITS)
        if matcher.is_error():
            raise InvalidRequest(f"The schema could not be compiled into a grammar: {matcher.get_error()}", param=param)
        with self._lock:
            self._cache[spec] = matcher
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return matcher


class SequenceGrammar:
    def __init__(self, matcher: LLMatcher, n_vocab: int) -> None:
        self.matcher = matcher
        self._n_vocab = n_vocab
        self._mask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)

    def apply(self, logits: Any) -> None:
        """Forbid every token the grammar does not allow next (logits: the sequence's row, float32)."""
        self.matcher.unsafe_compute_mask_ptr(self._mask.ctypes.data, self._mask.nbytes)
        allowed = np.unpackbits(self._mask.view(np.uint8), bitorder="little")[: self._n_vocab]
        logits[allowed == 0] = -np.inf

    def accept(self, token: int) -> bool:
        return bool(self.matcher.consume_token(token))

    @property
    def finished(self) -> bool:
        return bool(self.matcher.is_stopped())
