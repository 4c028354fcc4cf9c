"""Loading a GGUF model with llama.cpp's low-level API: weights, vocabulary, metadata, context.

Only the scheduler thread touches the context after creation; the vocabulary helpers
here are read-only and safe from any thread.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as L

from faceplate.errors import InvalidRequest

log = logging.getLogger("faceplate.llamacpp")


class _LlamaLog:
    """Routes llama.cpp's log lines to Python logging (debug level).

    llama.cpp keeps the raw function pointer, so the ctypes callback must live as
    long as the process: it is held by this class, created once.
    """

    _callback: Any = None

    @classmethod
    def install(cls) -> None:
        if cls._callback is not None:
            return

        def _log(level: int, text: bytes, _user: Any) -> None:
            if text and level == 4:  # GGML_LOG_LEVEL_ERROR (5 is a continuation line)
                log.warning("llama.cpp: %s", text.decode(errors="replace").rstrip())
            elif text:
                log.debug("llama.cpp: %s", text.decode(errors="replace").rstrip())

        cls._callback = L.llama_log_callback(_log)
        L.llama_log_set(cls._callback, ctypes.c_void_p(0))
        L.llama_backend_init()


def gguf_is_embedding_model(path: str) -> bool:
    """Whether a GGUF file is an embedding model: its metadata declares a pooling type.

    Reads only the vocabulary and metadata (no weights), so ``--model file.gguf`` can pick
    the engine without being told the kind.
    """
    _LlamaLog.install()
    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(path.encode(), params)
    if not model:
        raise RuntimeError(f"llama.cpp could not read {path}")
    try:
        buf = ctypes.create_string_buffer(256)
        if L.llama_model_meta_val_str(model, b"general.architecture", buf, len(buf)) < 0:
            return False
        arch = buf.value
        return L.llama_model_meta_val_str(model, arch + b".pooling_type", buf, len(buf)) >= 0
    finally:
        L.llama_model_free(model)


@dataclass(frozen=True)
class ContextSettings:
    n_ctx_per_seq: int
    n_parallel: int
    n_batch: int
    n_threads: int


class LlamaModel:
    """A loaded GGUF model and its vocabulary. Close it to free the weights."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        _LlamaLog.install()
        params = L.llama_model_default_params()
        # Keep weights out of the AMX "extra" buffer type: its kernels die with SIGILL on
        # CPUs that report AMX here (see docs/ENVIRONMENT). Costs nothing on other CPUs.
        params.use_extra_bufts = False
        self.path = path
        self.model = L.llama_model_load_from_file(path.encode(), params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = int(L.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(L.llama_model_n_ctx_train(self.model))
        self.n_embd = int(L.llama_model_n_embd(self.model))
        self.pieces = [self._piece(t) for t in range(self.n_vocab)]
        self.eog = frozenset(t for t in range(self.n_vocab) if L.llama_vocab_is_eog(self.vocab, t))
        self.bos = int(L.llama_vocab_bos(self.vocab))
        self.eos = int(L.llama_vocab_eos(self.vocab))

    def _piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    def special_piece(self, token: int) -> str:
        buf = ctypes.create_string_buffer(256)
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode(errors="replace")

    def meta(self, key: str) -> str | None:
        size = 1 << 16
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = L.llama_model_meta_val_str(self.model, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode(errors="replace")
            size = n + 1
        return None

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode()
        n_max = len(data) + 8
        buf = (L.llama_token * n_max)()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, parse_special)
        if n < 0:
            n_max = -n
            buf = (L.llama_token * n_max)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, parse_special)
        if n < 0:
            raise InvalidRequest("The text could not be tokenized.")
        return list(buf[:n])

    def new_context(self, cs: ContextSettings, *, kv_unified: bool = False) -> Any:
        cp = L.llama_context_default_params()
        cp.n_ctx = cs.n_ctx_per_seq * cs.n_parallel
        cp.n_batch = cs.n_batch
        cp.n_ubatch = cs.n_batch
        cp.n_seq_max = cs.n_parallel
        cp.n_threads = cs.n_threads
        cp.n_threads_batch = cs.n_threads
        # Default: one KV stream per sequence. A request's context budget is its own and its
        # attention spans only its own cells, so its logits do not depend on what else is in the
        # batch (seeded output is the same alone or batched). With a unified buffer, softmax sums
        # run over other sequences' masked cells in a placement-dependent order and batched output
        # drifts from solo output (tests/e2e/test_batching_e2e.py fails). The switch exists for
        # bench/raw_decode.py --kv-unified.
        cp.kv_unified = kv_unified
        cp.no_perf = True
        ctx = L.llama_init_from_model(self.model, cp)
        if not ctx:
            raise RuntimeError("llama.cpp could not create a context (out of memory?)")
        return ctx

    def close(self) -> None:
        if self.model:
            L.llama_model_free(self.model)
            self.model = None
