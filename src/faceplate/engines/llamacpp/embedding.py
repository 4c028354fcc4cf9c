"""GGUF embedding models through llama.cpp (``--model`` of kind ``embedding``).

The pooling (mean, CLS, last) comes from the GGUF metadata: the context is created with
``LLAMA_POOLING_TYPE_UNSPECIFIED`` so llama.cpp reads it from the model. A model that
declares no pooling (a plain generative model) is mean-pooled; a reranker is refused.
Vectors are L2-normalised, as OpenAI's are and as llama.cpp's own server does.

The batcher's single worker thread owns the context. Each forward pass packs several
sequences into one ``llama_batch`` (one ``seq_id`` each, at most ``n_batch`` tokens) and
reads one pooled vector per sequence with ``llama_get_embeddings_seq``.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from typing import Any, Literal

import llama_cpp as L
import numpy as np

from faceplate.config import ModelSpec, Settings
from faceplate.engines.embedding_inputs import (
    BatchedEmbedding,
    Input,
    check_lengths,
    check_token_ids,
    l2_normalise,
    special_affixes,
)
from faceplate.engines.llamacpp.model import LlamaModel

log = logging.getLogger("faceplate.llamacpp.embedding")

DEFAULT_CTX_CAP = 8192
DEFAULT_N_BATCH = 512  # tokens per forward pass: attention spans the whole pass, so keep it modest

POOLING_NAMES = {
    L.LLAMA_POOLING_TYPE_NONE: "none",
    L.LLAMA_POOLING_TYPE_MEAN: "mean",
    L.LLAMA_POOLING_TYPE_CLS: "cls",
    L.LLAMA_POOLING_TYPE_LAST: "last",
    L.LLAMA_POOLING_TYPE_RANK: "rank",
}


class LlamaCppEmbeddingEngine(BatchedEmbedding):
    kind: Literal["embedding"] = "embedding"
    supports_dimensions: bool = True  # truncate + renormalise, as for sentence-transformers models

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        self.model_id = spec.id
        self.model = LlamaModel(spec.path)
        self.ctx: Any = None
        self.batch: Any = None
        try:
            self._setup(spec, settings)
        except BaseException:
            self._free()
            raise

    def _setup(self, spec: ModelSpec, settings: Settings) -> None:
        m = self.model
        if L.llama_model_has_encoder(m.model) and L.llama_model_has_decoder(m.model):
            raise ValueError(f"model {spec.id}: encoder-decoder models cannot serve embeddings")
        n_ctx_train = m.n_ctx_train or DEFAULT_CTX_CAP
        self.max_input_tokens = min(spec.n_ctx or n_ctx_train, n_ctx_train, DEFAULT_CTX_CAP)
        self.n_batch = max(self.max_input_tokens, spec.n_batch or DEFAULT_N_BATCH)
        self.n_seq_max = max(1, min(int(L.llama_max_parallel_sequences()), settings.embedding_max_batch))
        self.threads = spec.n_threads or settings.threads
        self.ctx, self.pooling = self._new_context(L.LLAMA_POOLING_TYPE_UNSPECIFIED)
        if self.pooling == L.LLAMA_POOLING_TYPE_NONE:
            log.warning("model %s declares no pooling; its embeddings are the mean over tokens", spec.id)
            L.llama_free(self.ctx)
            self.ctx, self.pooling = self._new_context(L.LLAMA_POOLING_TYPE_MEAN)
        if self.pooling == L.LLAMA_POOLING_TYPE_RANK:
            raise ValueError(f"model {spec.id} is a reranker (rank pooling), not an embedding model")
        self.memory = L.llama_get_memory(self.ctx)  # NULL for encoder-only models such as BERT
        self.dimensions = int(L.llama_model_n_embd_out(m.model)) or m.n_embd
        self.n_vocab = m.n_vocab
        probe = "a"
        self.prefix, self.suffix = special_affixes(
            m.tokenize(probe, add_special=True, parse_special=True), m.tokenize(probe, add_special=False, parse_special=True)
        )
        self.batch = L.llama_batch_init(self.n_batch, 0, 1)
        self.batcher = self.make_batcher(spec, settings)
        self.token_ids = spec.token_ids

    def _new_context(self, pooling: int) -> tuple[Any, int]:
        cp = L.llama_context_default_params()
        cp.n_ctx = self.n_batch
        cp.n_batch = self.n_batch
        cp.n_ubatch = self.n_batch  # non-causal models need a whole sequence in one micro-batch
        cp.n_seq_max = self.n_seq_max
        cp.n_outputs_max = 0  # = n_batch: every token is an output of an embedding pass
        cp.n_outputs_max_per_seq = 0
        cp.n_threads = self.threads
        cp.n_threads_batch = self.threads
        cp.embeddings = True
        cp.pooling_type = pooling
        cp.kv_unified = True  # one pass's sequences share the cache (causal models); cleared before each pass
        cp.no_perf = True
        ctx = L.llama_init_from_model(self.model.model, cp)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not create an embedding context for {self.model.path}")
        return ctx, int(L.llama_pooling_type(ctx))

    # ------------------------------------------------------------------ inputs

    def token_sequences(self, inputs: Sequence[Input]) -> list[list[int]]:
        seqs: list[list[int]] = []
        for i, x in enumerate(inputs):
            if isinstance(x, str):
                seqs.append(self.model.tokenize(x, add_special=True, parse_special=True))
            else:
                check_token_ids(i, x, self.n_vocab)
                seqs.append([*self.prefix, *x, *self.suffix])
        check_lengths(seqs, self.max_input_tokens)
        return seqs

    def count_tokens(self, inputs: Sequence[Input]) -> list[int]:
        return [len(s) for s in self.token_sequences(inputs)]

    # ------------------------------------------------------------------ model

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        """Embed ``batch`` in as few llama_decode calls as fit (runs on the batcher's worker thread)."""
        out = np.empty((len(batch), self.dimensions), dtype=np.float32)
        b = self.batch
        tokens = np.ctypeslib.as_array(b.token, shape=(self.n_batch,))
        positions = np.ctypeslib.as_array(b.pos, shape=(self.n_batch,))
        n_seq_id = np.ctypeslib.as_array(b.n_seq_id, shape=(self.n_batch,))
        outputs = np.ctypeslib.as_array(ctypes.cast(b.logits, ctypes.POINTER(ctypes.c_int8)), shape=(self.n_batch,))
        i = 0
        while i < len(batch):
            members: list[int] = []
            used = 0
            while i < len(batch) and len(members) < self.n_seq_max and used + len(batch[i]) <= self.n_batch:
                seq = batch[i]
                end = used + len(seq)
                tokens[used:end] = seq
                positions[used:end] = np.arange(len(seq))
                n_seq_id[used:end] = 1
                outputs[used:end] = 1
                sid = len(members)
                for k in range(used, end):
                    b.seq_id[k][0] = sid
                members.append(i)
                used = end
                i += 1
            if not members:
                raise RuntimeError(f"an input of {len(batch[i])} tokens does not fit a pass of {self.n_batch}")
            b.n_tokens = used
            if self.memory:
                L.llama_memory_clear(self.memory, True)
            rc = L.llama_decode(self.ctx, b)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with {rc} on {len(members)} sequences ({used} tokens)")
            for sid, index in enumerate(members):
                ptr = L.llama_get_embeddings_seq(self.ctx, sid)
                if not ptr:
                    raise RuntimeError("llama.cpp returned no pooled embedding")
                out[index] = np.ctypeslib.as_array(ptr, shape=(self.dimensions,))
        return l2_normalise(out)

    def stats(self) -> dict[str, Any]:
        return {
            "dimensions": self.dimensions,
            "max_input_tokens": self.max_input_tokens,
            "pooling": POOLING_NAMES.get(self.pooling, str(self.pooling)),
            "threads": self.threads,
            **self.batcher.stats(),
        }

    def _free(self) -> None:
        if self.batch is not None:
            L.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            L.llama_free(self.ctx)
            self.ctx = None
        self.model.close()

    async def close(self) -> None:
        await super().close()
        self._free()
