"""Part 1 of bench/determinism.py: which conditions change a sequence's logits row (kernel level).

Low-level llama.cpp API, no scheduler. Same model and context settings as Faceplate
(faceplate.engines.llamacpp.model: one KV stream per sequence, kv_unified off, n_batch = n_ubatch = 512,
flash attention "auto", which is on for the CPU). Every row compares the logits row of the same
sequence and token under two conditions: "identical" is bitwise equality of all n_vocab floats,
"max diff" the largest absolute difference.

What decides a row's arithmetic is which CPU flash-attention kernel computes it
(ggml-cpu/ops.cpp, ggml_compute_forward_flash_attn_ext_f16), and that depends on the shape of the
ubatch the token lands in. With kv_unified off, llama.cpp splits a batch with split_equal(sequential):
one ubatch per run of consecutive sequence ids, the same number of tokens per sequence.

- "one_chunk": one query row at a time over the whole KV range; row-local, so bitwise the same
  whatever else is in the ubatch. Used when the sequence has < 64 tokens in the ubatch.
- "tiled": when the sequence has >= 64 (GGML_FA_TILE_Q) tokens in the ubatch (a prefill chunk):
  F32 Q, K tiles of 64, F32 accumulation. Different rounding from one_chunk.
- "split-KV": when the ubatch is one token of one sequence (decoding alone, or isolated by a gap in
  the busy sequence ids) and the padded KV length n_kv >= 512, i.e. the sequence holds more than
  256 cells: the KV range is cut into n_threads chunks, combined afterwards. Different rounding;
  identical to one_chunk when that ubatch runs on one thread. A one-token ubatch runs on
  cparams.n_threads, any larger one on n_threads_batch (llama_context::graph_compute).

The matrix multiplications are not batch dependent for the bundled model: its layers are Q4_1 (ggml
vec_dot, one row at a time; tinyBLAS and the tiled K-quant matmul have no Q4_1 kernel) and its output
head is Q8_0, where llamafile's tinyBLAS (2+ output rows) and vec_dot (1 row) agree bitwise (rows
"lm_head"). Other quantizations may differ (Q4_0/Q8_0 layers take tinyBLAS from 2 rows, K-quants the
tiled matmul from 8 rows): run bench/determinism.py with --model to check a model first.

Rows "fix" apply what ``Scheduler(deterministic=True)`` does (batch.py): at most 63 tokens of a
sequence per ubatch, and one-token ubatches on one thread (llama_set_n_threads(ctx, 1, n_threads)).
"""

from __future__ import annotations

from collections.abc import Callable

import llama_cpp as L
import numpy as np

from faceplate.engines.llamacpp.model import ContextSettings, LlamaModel

FA_TILE_Q = 64  # GGML_FA_TILE_Q in ggml-cpu/common.h of the vendored llama.cpp
FIXED_CHUNK = FA_TILE_Q - 1
SPLIT_KV_POS = 256  # a lone token at this position or later has n_kv >= 512: split-KV when n_threads > 1

TEXT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWrite a long story about a lighthouse keeper, the sea, storms, ships and an old dog. "
    "Describe the village, the harbour, the weather, the people and what happens over a whole year.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
FILLER = (
    " The keeper climbed the stairs every evening to light the lamp. The sea was grey and the wind blew"
    " from the north across the rocks, and the old dog slept by the stove while the ships passed far out."
)


class Ctx:
    """A Faceplate-shaped context and one llama_batch; decode() returns copies of the wanted logits rows."""

    def __init__(self, model: LlamaModel, *, threads: int, n_parallel: int = 8, n_ctx_per_seq: int = 1024) -> None:
        self.model = model
        self.threads = threads
        self.ctx = model.new_context(ContextSettings(n_ctx_per_seq, n_parallel, 512, threads))
        self.mem = L.llama_get_memory(self.ctx)
        self.batch = L.llama_batch_init(512, 0, 1)

    def single_token_threads(self, n: int) -> None:
        L.llama_set_n_threads(self.ctx, n, self.threads)

    def clear(self) -> None:
        L.llama_memory_clear(self.mem, True)

    def decode(self, items: list[tuple[int, int, int, bool]]) -> dict[int, np.ndarray]:
        b = self.batch
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, logits
            b.seq_id[i][0] = seq
        b.n_tokens = len(items)
        rc = L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        n_vocab = self.model.n_vocab
        return {
            i: np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, i), shape=(n_vocab,)).copy()
            for i, it in enumerate(items)
            if it[3]
        }

    def prefill(
        self, seq: int, toks: list[int], *, start: int = 0, chunk: int = 512, last_logits: bool = False
    ) -> np.ndarray | None:
        out = None
        for i in range(0, len(toks), chunk):
            part = toks[i : i + chunk]
            r = self.decode([(t, start + i + j, seq, last_logits and i + j == len(toks) - 1) for j, t in enumerate(part)])
            out = next(iter(r.values()), out)
        return out

    def rm(self, seq: int, p0: int = -1) -> None:
        L.llama_memory_seq_rm(self.mem, seq, p0, -1)

    def cp(self, src: int, dst: int) -> None:
        L.llama_memory_seq_cp(self.mem, src, dst, -1, -1)

    def close(self) -> None:
        L.llama_batch_free(self.batch)
        L.llama_free(self.ctx)


def tokens(model: LlamaModel, n: int, shift: int = 0) -> list[int]:
    """n tokens of real text; ``shift`` makes a different text of the same shape (another request)."""
    toks = model.tokenize(TEXT + FILLER * (n // 30 + 2), add_special=False, parse_special=True)[:n]
    if shift:
        toks = toks[:1] + [(t + 97 * shift) % 40000 + 100 for t in toks[1:]]
    return toks


def compare(a: np.ndarray, b: np.ndarray) -> tuple[bool, float]:
    return bool(np.array_equal(a, b)), float(np.max(np.abs(a - b)))


ROWS: list[tuple[str, str, bool, float]] = []


def row(group: str, name: str, a: np.ndarray, b: np.ndarray) -> None:
    same, diff = compare(a, b)
    ROWS.append((group, name, same, diff))
    print(f"  {group:6s} {name:70s} identical: {'yes' if same else 'no '}  max diff {diff:.3g}", flush=True)


# ----------------------------------------------------------------------------------------- part 1


def part1(model: LlamaModel, threads: int, quick: bool) -> None:
    print(f"\n== Part 1: one condition changed at a time (n_threads={threads}) ==")
    c = Ctx(model, threads=threads)
    other = [tokens(model, 40 + 3 * s, shift=s) for s in range(8)]

    # (a) (b) (e): a decode token alone or in batches; short (< 256 cells) and long (> 256 cells).
    def setup(tlen: int) -> list[int]:
        c.clear()
        target = tokens(model, tlen + 1)
        c.prefill(0, target[:tlen])
        for s in range(1, 8):
            c.prefill(s, other[s])
        return target

    def decode_target(target: list[int], seq: int, others: list[int], others_logits: bool = True, prefill: int = 0) -> np.ndarray:
        tlen = len(target) - 1
        if seq != 0:  # the same history in another sequence: copy the stream
            c.rm(seq)
            c.cp(0, seq)
        length = {s: tlen if s == 0 else len(other[s]) for s in others}
        items = [(target[tlen], tlen, seq, True)] + [(7, length[s], s, others_logits) for s in others]
        items.sort(key=lambda it: it[2])  # slot order, as Batch.fill puts decoding sequences
        if prefill:  # a prompt chunk of sequence 7 (emptied first), after the decode tokens, as the scheduler builds it
            c.rm(7)
            items += [(t, j, 7, False) for j, t in enumerate(tokens(model, prefill, shift=9))]
        out = c.decode(items)[[it[2] for it in items].index(seq)]
        c.rm(seq, tlen)
        for s in others:
            c.rm(s, length[s])
        if prefill:
            c.rm(7)
            c.prefill(7, other[7])
        if seq != 0:
            c.rm(seq)
            c.prefill(seq, other[seq])
        return out

    lengths = [(100, "pos 100"), (300, "pos 300")]
    for tlen, where in lengths:
        t = setup(tlen)
        ref = decode_target(t, 0, [])
        row("(a)", f"{where}: decode alone, again", ref, decode_target(t, 0, []))
        row("(a)", f"{where}: alone vs batch of 2 (seq 0 + seq 1)", ref, decode_target(t, 0, [1]))
        row("(a)", f"{where}: alone vs batch of 8 (seqs 0-7)", ref, decode_target(t, 0, list(range(1, 8))))
        if not quick:
            eight = list(range(1, 8))
            one_row = decode_target(t, 0, eight, False)
            row(
                "lm_head",
                f"{where}: batch of 8, 1 logits row vs 8 rows (vec_dot vs tinyBLAS)",
                one_row,
                decode_target(t, 0, eight),
            )
            row("(a)", f"{where}: alone vs batch of 4 (seqs 0-3)", ref, decode_target(t, 0, [1, 2, 3]))
        row("(a)", f"{where}: alone vs seq 0 + seq 2 (gap: two ubatches, both alone)", ref, decode_target(t, 0, [2]))
        row("(b)", f"{where}: alone vs with a 128-token prefill chunk of seq 7", ref, decode_target(t, 0, [], prefill=128))
        with_chunk = decode_target(t, 0, [1], prefill=128)
        row("(b)", f"{where}: alone vs seq 0 + seq 1 decode + 128-token chunk of seq 7", ref, with_chunk)
        if not quick:
            row("(b)", f"{where}: batch of 2 vs batch of 2 + 128-token chunk of seq 7", decode_target(t, 0, [1]), with_chunk)
        row("(e)", f"{where}: alone in seq 0 vs alone in seq 5", ref, decode_target(t, 5, []))
        if not quick:
            in5 = decode_target(t, 5, [s for s in range(8) if s != 5])
            row("(e)", f"{where}: seq 0 in batch 0-7 vs seq 5 in batch 0-7", decode_target(t, 0, list(range(1, 8))), in5)

    # (c) the prompt's KV: one prefill batch vs chunks, peeled first token, reused prefix, copied stream.
    # Compared: the logits of the last prompt token (tok1) and of the next token decoded alone (tok2).
    nxt = 42

    def after(toks: list[int], first: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        assert first is not None
        return first, c.decode([(nxt, len(toks), 0, True)])[0]

    def whole(P: list[int], n: int = 512) -> tuple[np.ndarray, np.ndarray]:
        c.clear()
        return after(P, c.prefill(0, P, chunk=n, last_logits=True))

    def peeled(P: list[int], n: int = 128) -> tuple[np.ndarray, np.ndarray]:
        # the scheduler's step while seq 1 decodes: [seq 1 token, chunk of seq 2]. split_equal puts the
        # chunk's first token in the ubatch {1, 2} and the rest of the chunk in a ubatch of its own.
        c.clear()
        c.prefill(1, other[1])
        p1, first = len(other[1]), None
        for i in range(0, len(P), n):
            part = P[i : i + n]
            items = [(7, p1, 1, False)] + [(t, i + j, 2, i + j == len(P) - 1) for j, t in enumerate(part)]
            out = c.decode(items)
            p1 += 1
            first = next(iter(out.values()), first)
        c.rm(0)
        c.cp(2, 0)
        c.rm(1)
        c.rm(2)
        return after(P, first)

    def reused(P: list[int], n: int = 512) -> tuple[np.ndarray, np.ndarray]:
        # _place on a slot that holds the same prompt: keep its KV, re-decode the last prompt token alone
        c.clear()
        c.prefill(0, P, chunk=n)
        c.rm(0, len(P) - 1)
        return after(P, c.decode([(P[-1], len(P) - 1, 0, True)])[0])

    def copied(P: list[int], n: int = 512) -> tuple[np.ndarray, np.ndarray]:
        # _place with a donor: llama_memory_seq_cp of its stream, last prompt token re-decoded
        c.clear()
        c.prefill(5, P, chunk=n)
        c.cp(5, 0)
        c.rm(0, len(P) - 1)
        return after(P, c.decode([(P[-1], len(P) - 1, 0, True)])[0])

    def cached_head(P: list[int], n: int = 512) -> tuple[np.ndarray, np.ndarray]:
        # an earlier, shorter prompt P[:k] is cached; the rest prefilled after it
        c.clear()
        k = len(P) // 2
        c.prefill(0, P[:k], chunk=n)
        return after(P, c.prefill(0, P[k:], start=k, chunk=n, last_logits=True))

    plens = [40, 100, 300] if not quick else [40, 300]
    for n in plens:
        P = tokens(model, n, shift=3)
        ref = whole(P)
        cases: list[tuple[str, Callable[..., tuple[np.ndarray, np.ndarray]]]] = [
            ("chunks of 128", lambda P=P: whole(P, 128)),
            ("chunks of 64", lambda P=P: whole(P, 64)),
            ("chunks of 128, first token of each peeled by split_equal", lambda P=P: peeled(P)),
            ("prefix reuse: cached KV, last token re-decoded", lambda P=P: reused(P)),
            ("seq_cp from another sequence, last token re-decoded", lambda P=P: copied(P)),
            ("first half cached, second half one batch", lambda P=P: cached_head(P)),
        ]
        if quick:
            cases = [cs for cs in cases if cs[0] != "chunks of 64"]
        for name, f in cases:
            a, b = f()
            if not quick:
                row("(c)", f"prompt {n}: one batch vs {name}: last prompt token", ref[0], a)
            row("(c)", f"prompt {n}: one batch vs {name}: next token", ref[1], b)
        # The fix: at most 63 tokens of a sequence per ubatch, one-token ubatches on one thread.
        c.single_token_threads(1)
        ref63 = whole(P, FIXED_CHUNK)
        fixed_cases: list[tuple[str, Callable[..., tuple[np.ndarray, np.ndarray]]]] = [
            ("chunks of 32", lambda P=P: whole(P, 32)),
            ("chunks of 63, first token of each peeled by split_equal", lambda P=P: peeled(P, FIXED_CHUNK)),
            ("prefix reuse, last token re-decoded", lambda P=P: reused(P, FIXED_CHUNK)),
            ("seq_cp, last token re-decoded", lambda P=P: copied(P, FIXED_CHUNK)),
            ("first half cached, second half in chunks of 63", lambda P=P: cached_head(P, FIXED_CHUNK)),
        ]
        for name, f in fixed_cases[1:] if quick else fixed_cases:
            a, b = f()
            row("fix", f"prompt {n}: chunks of 63 vs {name}: next token", ref63[1], b)
        c.single_token_threads(threads)
    c.close()

    # (d) threads: the split-KV kernel cuts the KV range in n_threads pieces.
    for th in sorted({1, threads}):
        c = Ctx(model, threads=th)
        target = tokens(model, 301)
        c.prefill(0, target[:300])
        c.prefill(1, other[1])
        alone = c.decode([(target[300], 300, 0, True)])[0]
        c.rm(0, 300)
        pair = c.decode([(target[300], 300, 0, True), (7, len(other[1]), 1, False)])[0]
        row("(d)", f"pos 300, n_threads={th}: alone vs batch of 2", alone, pair)
        if th > 1:
            c.rm(0, 300)
            c.rm(1, len(other[1]))
            c.single_token_threads(1)
            alone1 = c.decode([(target[300], 300, 0, True)])[0]
            row("fix", f"pos 300, n_threads={th}, one-token ubatches on 1 thread: alone vs batch of 2", alone1, pair)
        c.close()
