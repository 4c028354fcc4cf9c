"""Write a BERT sentence-transformers folder (the bundled all-MiniLM-L6-v2) as a GGUF file.

No GGUF embedding model ships in a registry package, so the tests make one: the same
weights in float32, with the metadata llama.cpp's ``bert`` architecture reads (mean
pooling, non-causal attention, WordPiece vocabulary in llama.cpp's "phantom space" form).
A minimal GGUF v3 writer, following llama.cpp's ``convert_hf_to_gguf.py`` for BERT.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from safetensors.numpy import load_file

ALIGN = 32
U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
GGML_F32 = 0
NORMAL, CONTROL = 1, 3
POOLING_MEAN = 1

_LAYER = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
_TOP = {
    "embeddings.word_embeddings": "token_embd",
    "embeddings.position_embeddings": "position_embd",
    "embeddings.token_type_embeddings": "token_types",
    "embeddings.LayerNorm": "token_embd_norm",
}


def _gguf_name(name: str) -> str | None:
    name = name.removeprefix("bert.")
    stem, _, leaf = name.rpartition(".")
    leaf = {"gamma": "weight", "beta": "bias"}.get(leaf, leaf)
    if stem in _TOP:
        return f"{_TOP[stem]}.{leaf}"
    if stem.startswith("encoder.layer."):
        rest = stem.removeprefix("encoder.layer.")
        block, _, part = rest.partition(".")
        if part in _LAYER:
            return f"blk.{block}.{_LAYER[part]}.{leaf}"
    return None  # position_ids, pooler: not used


def _string(out: BinaryIO, text: str) -> None:
    data = text.encode()
    out.write(struct.pack("<Q", len(data)) + data)


def _value(out: BinaryIO, kind: int, value: Any) -> None:
    if kind == U32:
        out.write(struct.pack("<I", value))
    elif kind == I32:
        out.write(struct.pack("<i", value))
    elif kind == F32:
        out.write(struct.pack("<f", value))
    elif kind == BOOL:
        out.write(struct.pack("<?", value))
    elif kind == STRING:
        _string(out, value)
    else:
        raise ValueError(kind)


def _kv(out: BinaryIO, key: str, kind: int, value: Any, item_kind: int | None = None) -> None:
    _string(out, key)
    out.write(struct.pack("<I", kind))
    if kind == ARRAY:
        assert item_kind is not None
        out.write(struct.pack("<IQ", item_kind, len(value)))
        for v in value:
            _value(out, item_kind, v)
    else:
        _value(out, kind, value)


def write_bert_gguf(folder: Path, out_path: Path) -> Path:
    config = json.loads((folder / "config.json").read_text())
    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    specials = {tok_config[k] for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")}
    tokens = [t if t in specials else (t[2:] if t.startswith("##") else "\u2581" + t) for t in vocab]
    types = [CONTROL if t in specials else NORMAL for t in vocab]

    weights = {}
    for name, array in load_file(str(folder / "model.safetensors")).items():
        target = _gguf_name(name)
        if target is not None:
            weights[target] = np.ascontiguousarray(array, dtype=np.float32)

    arch = "bert"
    kvs: list[tuple[str, int, Any, int | None]] = [
        ("general.architecture", STRING, arch, None),
        ("general.name", STRING, folder.name, None),
        (f"{arch}.context_length", U32, int(config["max_position_embeddings"]), None),
        (f"{arch}.embedding_length", U32, int(config["hidden_size"]), None),
        (f"{arch}.feed_forward_length", U32, int(config["intermediate_size"]), None),
        (f"{arch}.block_count", U32, int(config["num_hidden_layers"]), None),
        (f"{arch}.attention.head_count", U32, int(config["num_attention_heads"]), None),
        (f"{arch}.attention.layer_norm_epsilon", F32, float(config["layer_norm_eps"]), None),
        (f"{arch}.attention.causal", BOOL, False, None),
        (f"{arch}.pooling_type", U32, POOLING_MEAN, None),
        ("tokenizer.ggml.model", STRING, "bert", None),
        ("tokenizer.ggml.pre", STRING, "default", None),
        ("tokenizer.ggml.token_type_count", U32, int(config.get("type_vocab_size", 2)), None),
        ("tokenizer.ggml.tokens", ARRAY, tokens, STRING),
        ("tokenizer.ggml.token_type", ARRAY, types, I32),
    ]
    for key, tok in (("unknown", "unk_token"), ("seperator", "sep_token"), ("padding", "pad_token"), ("mask", "mask_token")):
        kvs.append((f"tokenizer.ggml.{key}_token_id", U32, vocab.index(tok_config[tok]), None))
    kvs.append(("tokenizer.ggml.bos_token_id", U32, vocab.index(tok_config["cls_token"]), None))

    with open(out_path, "wb") as out:
        out.write(b"GGUF" + struct.pack("<IQQ", 3, len(weights), len(kvs)))
        for key, kind, value, item_kind in kvs:
            _kv(out, key, kind, value, item_kind)
        offset = 0
        offsets = []
        for name, array in weights.items():
            _string(out, name)
            out.write(struct.pack("<I", array.ndim))
            for dim in reversed(array.shape):  # GGUF lists the fastest-moving dimension first
                out.write(struct.pack("<Q", dim))
            out.write(struct.pack("<IQ", GGML_F32, offset))
            offsets.append(offset)
            offset += -(-array.nbytes // ALIGN) * ALIGN
        out.write(b"\0" * (-out.tell() % ALIGN))
        start = out.tell()
        for (_, array), rel in zip(weights.items(), offsets, strict=True):
            out.write(b"\0" * (start + rel - out.tell()))
            out.write(array.tobytes())
        out.write(b"\0" * (-out.tell() % ALIGN))
    return out_path
