"""sentence-transformers embeddings: the bundled all-MiniLM-L6-v2, or any sentence-transformers folder.

The model is loaded offline from a local folder: nothing is ever downloaded. Inputs
become the exact token sequences the model sees here (strings through the model's own
tokenizer, token arrays with the tokenizer's special tokens put around them, as it puts
them around text), and the batcher's one worker thread runs the model's modules
(transformer, pooling, normalize) on each batch, split into runs of similar length so
that little work goes into padding. The vectors are those of ``SentenceTransformer.encode``
for the same text.

Over-long inputs are rejected, not truncated (sentence-transformers would cut them at
``max_seq_length`` without a word). A model's default prompt is not applied: the
OpenAI API has no prompts, so clients prepend one themselves (``"query: ..."``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from faceplate.config import ModelSpec, Settings
from faceplate.engines.embedding_inputs import (
    BatchedEmbedding,
    Input,
    check_lengths,
    check_token_ids,
    length_buckets,
    longest_first,
    special_affixes,
    unsort,
)

log = logging.getLogger("faceplate.sentence")

# The fixed cost of one forward pass (streaming the weights, Python dispatch), in tokens of
# compute: measured at about 20 for MiniLM on these CPUs; the split is not sensitive to it.
PASS_OVERHEAD_TOKENS = 16.0


def prepare_environment() -> None:
    """Set before torch and transformers are first imported (they read these once).

    - no hub access, ever;
    - OpenMP threads sleep instead of spinning between operations: the model shares the
      CPUs with the event loop and llama.cpp, and a spinning thread that loses its core
      stalls the whole pass (one short input took 40x longer on a busy 2-core machine).
      An explicit OMP_WAIT_POLICY wins.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class SentenceTransformerEngine(BatchedEmbedding):
    kind: Literal["embedding"] = "embedding"
    # Truncating to fewer dimensions and renormalising is offered for every model, as
    # sentence-transformers' own ``truncate_dim`` is; how much quality survives depends on
    # whether the model was trained for it (Matryoshka). More than the native size is a 400.
    supports_dimensions: bool = True

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        prepare_environment()
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        path = Path(spec.path)
        if not path.is_dir():
            raise FileNotFoundError(f"model {spec.id}: not a sentence-transformers folder: {spec.path}")
        self.model_id = spec.id
        self.threads = spec.n_threads or settings.threads
        torch.set_num_threads(self.threads)
        transformers.utils.logging.disable_progress_bar()
        st = SentenceTransformer(str(path), device="cpu", local_files_only=True, trust_remote_code=False)
        st.eval()
        first = st[0]
        tokenizer = getattr(first, "tokenizer", None)
        auto_model = getattr(first, "auto_model", None)
        if tokenizer is None or auto_model is None or "text" not in getattr(first, "modalities", ["text"]):
            raise ValueError(f"model {spec.id}: only text models with a Hugging Face transformer first are supported")
        self.st = st
        self.tokenizer = tokenizer
        self._tokenizer_lock = threading.Lock()  # a fast tokenizer must not be called from two threads at once
        self.dimensions = int(st.get_embedding_dimension())
        limits = [n for n in (st.max_seq_length, getattr(auto_model.config, "max_position_embeddings", None)) if n]
        self.max_input_tokens = int(min(limits)) if limits else 512
        self.n_vocab = min(len(tokenizer), int(auto_model.get_input_embeddings().num_embeddings))
        probe = "a"
        self.prefix, self.suffix = special_affixes(
            tokenizer(probe, add_special_tokens=True)["input_ids"], tokenizer(probe, add_special_tokens=False)["input_ids"]
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.left_padding = getattr(tokenizer, "padding_side", "right") == "left"
        self.token_type_ids = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        prompt_name = getattr(st, "default_prompt_name", None)
        if prompt_name and (getattr(st, "prompts", None) or {}).get(prompt_name):
            log.warning(
                "model %s declares the default prompt %r; Faceplate embeds inputs as sent (prepend it yourself)",
                spec.id,
                prompt_name,
            )
        self.batcher = self.make_batcher(spec, settings)
        self.token_ids = spec.token_ids

    # ------------------------------------------------------------------ inputs

    def token_sequences(self, inputs: Sequence[Input]) -> list[list[int]]:
        """The token sequences the model sees for ``inputs``; InvalidRequest for a bad one."""
        seqs: list[list[int]] = [[] for _ in inputs]
        text_at = [i for i, x in enumerate(inputs) if isinstance(x, str)]
        if text_at:
            texts = [inputs[i] for i in text_at]
            with self._tokenizer_lock:
                encoded = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
            for i, ids in zip(text_at, encoded, strict=True):
                seqs[i] = list(ids)
        for i, x in enumerate(inputs):
            if not isinstance(x, str):
                check_token_ids(i, x, self.n_vocab)
                seqs[i] = [*self.prefix, *x, *self.suffix]
        check_lengths(seqs, self.max_input_tokens)
        return seqs

    def count_tokens(self, inputs: Sequence[Input]) -> list[int]:
        return [len(s) for s in self.token_sequences(inputs)]

    # ------------------------------------------------------------------ model

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        """Embed a batch (runs on the batcher's worker thread): runs of similar length, each padded to its longest."""
        order = longest_first(batch)
        ordered = [batch[i] for i in order]
        runs = length_buckets([len(s) for s in ordered], PASS_OVERHEAD_TOKENS)
        rows = np.concatenate([self._run_padded(ordered[a:b]) for a, b in runs])
        return unsort(list(rows), order)

    def _run_padded(self, batch: list[list[int]]) -> np.ndarray:
        """One forward pass over ``batch`` padded to its longest sequence."""
        import torch

        width = max(len(s) for s in batch)
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            span = slice(width - len(seq), width) if self.left_padding else slice(0, len(seq))
            ids[row, span] = seq
            mask[row, span] = 1
        features: dict[str, Any] = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "modality": "text",
        }
        if self.token_type_ids:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        with torch.inference_mode():
            out = self.st(features)["sentence_embedding"]
        return out.float().cpu().numpy()

    def stats(self) -> dict[str, Any]:
        return {
            "dimensions": self.dimensions,
            "max_input_tokens": self.max_input_tokens,
            "threads": self.threads,
            **self.batcher.stats(),
        }
