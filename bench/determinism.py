"""Which batch shapes change a sequence's logits: llama.cpp's CPU backend, low-level API, no server.

    .venv/bin/python bench/determinism.py [--quick] [--threads 2] [--parts 1,2,3,4] [--model FILE]

Same model and context settings as Faceplate (faceplate.engines.llamacpp.model: one KV stream per
sequence, kv_unified off, n_batch = n_ubatch = 512, flash attention "auto", which is on for the CPU).
Every row of the table compares the logits row of the same sequence and token under two conditions:
"identical" is bitwise equality of all 49152 floats, "max diff" the largest absolute difference.

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
tiled matmul from 8 rows): run this with --model to check a model before promising determinism.

Part 2 replays Faceplate's scheduler policy (Scheduler._place, Batch.fill) with forced tokens,
the target request alone and among neighbours, for the current policy and for the fixed one:
 - prefill at most 63 tokens of one sequence per llama_decode (never the tiled kernel), also when
   nobody else is decoding;
 - one-token ubatches on one thread, llama_set_n_threads(ctx, 1, n_threads), in the steps that have a
   token at position >= 256 (never split-KV; the same arithmetic as one_chunk).
Part 3 (--parts 3) measures what the fix costs in tokens per second. Part 4 runs src/'s Scheduler
itself: the same seeded request alone, again (prefix reuse) and among neighbours; it shows "no" until
the fix is applied there, "yes" after.

n_threads >= 2 is needed to see the split-KV effect (the server default is the CPU count).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import llama_cpp as L  # noqa: E402
import numpy as np  # noqa: E402
from common import model_path  # noqa: E402

from faceplate.engines.llamacpp.model import ContextSettings, LlamaModel  # noqa: E402

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


# ----------------------------------------------------------------------------------------- part 2


@dataclass
class SimSlot:
    seq: int
    cache: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    forced: list[int] = field(default_factory=list)  # the tokens "sampled" next, in order
    next_token: int | None = None
    busy: bool = False
    record: bool = False
    batch_index: int = -1
    rows: dict[int, np.ndarray] = field(default_factory=dict)  # position -> logits row


class Sim:
    """Scheduler._place and Batch.fill (scheduler.py, batch.py) with forced tokens instead of sampling.

    policy "current": as scheduler.py is now. "fixed": prefill chunks of at most 63 tokens per
    sequence (also when nobody decodes), and one-token ubatches on one thread in any step that has
    a token at position >= 256."""

    def __init__(self, model: LlamaModel, policy: str, threads: int, n_parallel: int = 8) -> None:
        self.c = Ctx(model, threads=threads, n_parallel=n_parallel)
        self.policy = policy
        self.slots = [SimSlot(i) for i in range(n_parallel)]
        self.n_batch = 512
        self.prefill_chunk = 128 if policy == "current" else FIXED_CHUNK

    def place(self, seq: int, prompt: list[int], forced: list[int], *, record: bool = False) -> None:
        leader = self.slots[seq]
        reused = _common(leader.cache, prompt)
        donor = max(self.slots, key=lambda s: _common(s.cache, prompt))
        shared = _common(donor.cache, prompt)
        if donor is not leader and shared >= reused + 32:
            self.c.rm(leader.seq)
            self.c.cp(donor.seq, leader.seq)
            leader.cache = donor.cache[:]
            reused = shared
        reused = min(reused, len(prompt) - 1)
        self.c.rm(leader.seq, reused)
        del leader.cache[reused:]
        leader.pending, leader.forced, leader.busy, leader.record = prompt[reused:], list(forced), True, record
        leader.next_token, leader.rows = None, {}

    def step(self) -> None:
        items: list[tuple[int, int, int, bool]] = []
        decoding = [s for s in self.slots if s.busy and s.next_token is not None]
        for s in decoding:
            items.append((s.next_token, len(s.cache), s.seq, True))  # type: ignore[arg-type]
            s.cache.append(s.next_token)  # type: ignore[arg-type]
            s.next_token, s.batch_index = None, len(items) - 1
        budget = self.n_batch - len(items)
        chunk_cap = self.prefill_chunk if decoding or self.policy == "fixed" else budget
        for s in self.slots:
            if not s.busy or not s.pending or budget <= 0:
                continue
            take = s.pending[: min(budget, chunk_cap)]
            for i, tok in enumerate(take):
                last = i == len(take) - 1 and len(take) == len(s.pending)
                items.append((tok, len(s.cache), s.seq, last))
                s.cache.append(tok)
                if last:
                    s.batch_index = len(items) - 1
            del s.pending[: len(take)]
            budget -= len(take)
            chunk_cap = min(chunk_cap, budget)
        if not items:
            return
        if self.policy == "fixed":
            # one-token ubatches on one thread, only in steps where one could reach split-KV
            long = any(pos >= SPLIT_KV_POS for _, pos, _, _ in items)
            self.c.single_token_threads(1 if long else self.c.threads)
        out = self.c.decode(items)
        for s in self.slots:
            if s.batch_index < 0:
                continue
            idx, s.batch_index = s.batch_index, -1
            if s.record:
                s.rows[len(s.cache) - 1] = out[idx]
            if s.forced:
                s.next_token = s.forced.pop(0)
            else:
                s.busy = False  # finished; keeps its cache, like _release(keep_cache=True)

    def run(self, until: Callable[[], bool], events: dict[int, Callable[[], None]] | None = None, limit: int = 2000) -> None:
        for n in range(limit):
            if events and n in events:
                events[n]()
            if until():
                return
            self.step()
        raise RuntimeError("simulation did not finish")

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.step()

    def close(self) -> None:
        self.c.close()


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def part2(model: LlamaModel, threads: int, quick: bool) -> dict[str, list[tuple[str, int, int, float, int | None]]]:
    print(f"\n== Part 2: the scheduler's policy replayed, target request alone and among neighbours (n_threads={threads}) ==")
    # The target: a prompt of 180 tokens (alone: one batch, all tiled; under load: chunks of 128 + 52, the
    # tail on one_chunk) and 100 forced tokens (positions 180..279 cross 256, where a lone token switches
    # to split-KV). Quick: 150 + 20 tokens, positions stay under 256, only the prefill effects show.
    plen, glen = (150, 20) if quick else (180, 100)
    P = tokens(model, plen)
    G = tokens(model, 400, shift=4)[:glen]
    neighbours = {s: (tokens(model, 36 + 5 * s, shift=s + 10), tokens(model, 200, shift=s + 20)) for s in range(8)}
    results: dict[str, list[tuple[str, int, int, float, int | None]]] = {}

    def target_done(sim: Sim, seq: int) -> Callable[[], bool]:
        return lambda: not sim.slots[seq].busy and bool(sim.slots[seq].rows)

    for policy in ("current", "fixed"):
        print(f" policy {policy}:")
        runs: dict[str, dict[int, np.ndarray]] = {}

        sim = Sim(model, policy, threads)
        sim.place(0, P, G, record=True)
        sim.run(target_done(sim, 0))
        runs["alone (fresh context, slot 0)"] = sim.slots[0].rows
        sim.place(0, P, G, record=True)  # the same request again: prefix reuse of its own cache
        sim.run(target_done(sim, 0))
        runs["alone again (its prompt cached: prefix reuse)"] = sim.slots[0].rows
        sim.close()

        # Among neighbours: seqs 1 and 2 stream long answers; the target lands in slot 4 (a gap at 3:
        # it decodes in a ubatch of its own); a request with the same prompt and another "seed" comes
        # in at slot 5 (donor copy), a new prompt arrives in slot 3 (prefill chunks beside the target).
        sim = Sim(model, policy, threads)
        for s in (1, 2):
            p, g = neighbours[s]
            sim.place(s, p, g[: glen + 60])
        sim.steps(3)
        sim.place(4, P, G, record=True)
        events = {
            2: lambda sim=sim: sim.place(3, neighbours[3][0] + tokens(model, 150, shift=33), neighbours[3][1][:15]),
            6: lambda sim=sim: sim.place(5, P, tokens(model, 400, shift=5)[: glen // 2]),
        }
        sim.run(target_done(sim, 4), events)
        runs["among neighbours (slot 4, others in 1, 2, 3, 5)"] = sim.slots[4].rows
        sim.close()

        # The same prompt copied from another slot that served it before (another seed).
        sim = Sim(model, policy, threads)
        sim.place(6, P, G[:3])
        sim.run(lambda sim=sim: not sim.slots[6].busy)
        p, g = neighbours[2]
        sim.place(2, p, g[: glen + 20])
        sim.steps(2)
        sim.place(1, P, G, record=True)  # donor: slot 6; batched with slot 2
        sim.run(target_done(sim, 1))
        runs["prompt copied from slot 6 (seq_cp), batched with slot 2"] = sim.slots[1].rows
        sim.close()

        if not quick:
            # A real chat prompt (37 tokens: every kernel path is one_chunk) and a long answer: only the
            # decode side differs, from position 256 on, when the sequence decodes alone.
            chat = tokens(model, 37)
            answer = tokens(model, 400, shift=6)[: SPLIT_KV_POS + 12 - len(chat)]
            sim = Sim(model, policy, threads)
            sim.place(0, chat, answer, record=True)
            sim.run(target_done(sim, 0))
            chat_alone = sim.slots[0].rows
            sim.close()
            sim = Sim(model, policy, threads)
            p, g = neighbours[1]
            sim.place(1, p, g + tokens(model, 400, shift=7))
            sim.steps(2)
            sim.place(0, chat, answer, record=True)  # beside slot 1, which streams a longer answer
            sim.run(target_done(sim, 0))
            runs["chat prompt of 37 + 231 tokens, beside slot 1 (vs alone)"] = sim.slots[0].rows
            sim.close()

        ref_name = "alone (fresh context, slot 0)"
        ref = runs[ref_name]
        out = []
        for name, rows in runs.items():
            if name == ref_name:
                continue
            if name.startswith("chat prompt"):
                ref = chat_alone
            assert rows.keys() == ref.keys(), (sorted(rows)[:3], sorted(ref)[:3])
            diffs = [(pos, *compare(ref[pos], rows[pos])) for pos in sorted(ref)]
            same = sum(1 for _, eq, _ in diffs if eq)
            first = next((pos for pos, eq, _ in diffs if not eq), None)
            worst = max(d for _, _, d in diffs)
            out.append((name, same, len(diffs), worst, first))
            ROWS.append(("replay", f"{policy}: {name}", same == len(diffs), worst))
            where = f", first differing position {first}" if first is not None else ""
            verdict = "yes" if same == len(diffs) else "no "
            print(
                f"  {policy:7s} {name:58s} identical: {verdict}  {same}/{len(diffs)} rows equal, max diff {worst:.3g}{where}",
                flush=True,
            )
        results[policy] = out
    return results


# ----------------------------------------------------------------------------------------- part 3


def part3(model: LlamaModel, threads: int, quick: bool) -> None:
    print(f"\n== Part 3: cost of the fix (n_threads={threads}; median of interleaved repeats, tok/s) ==")
    reps = 3 if quick else 5
    steps = 24 if quick else 32
    c = Ctx(model, threads=threads, n_parallel=8)
    P = tokens(model, 400)

    def decode_rate(n_seq: int, start: int, mode: str) -> float:
        """mode "now": as today; "1thread": one-token ubatches on one thread; "pad": each step also
        re-decodes the sequence's previous token (a two-token ubatch on every thread, the alternative)."""
        c.clear()
        c.single_token_threads(threads)
        for s in range(n_seq):
            c.prefill(s, tokens(model, start, shift=s), chunk=FIXED_CHUNK)
        c.single_token_threads(1 if mode == "1thread" else threads)
        t = time.perf_counter()
        for k in range(steps):
            pos = start + k
            if mode == "pad":
                for s in range(n_seq):
                    c.rm(s, pos - 1)
                c.decode([it for s in range(n_seq) for it in ((P[k], pos - 1, s, False), (P[k + 1], pos, s, True))])
            else:
                c.decode([(P[k], pos, s, True) for s in range(n_seq)])
        c.single_token_threads(threads)
        return n_seq * steps / (time.perf_counter() - t)

    def prefill_rate(n_seq: int, length: int, chunk: int) -> float:
        c.clear()
        toks = [tokens(model, length, shift=s) for s in range(n_seq)]
        t = time.perf_counter()
        if chunk >= 512:  # the current policy when nobody decodes: the whole budget in one batch
            items = [(tok, j, s, j == length - 1) for s in range(n_seq) for j, tok in enumerate(toks[s])]
            for i in range(0, len(items), 512):
                c.decode(items[i : i + 512])
        else:  # every sequence advances `chunk` tokens per llama_decode
            for i in range(0, length, chunk):
                c.decode(
                    [(tok, i + j, s, i + j == length - 1) for s in range(n_seq) for j, tok in enumerate(toks[s][i : i + chunk])]
                )
        return n_seq * length / (time.perf_counter() - t)

    fc = FIXED_CHUNK
    cases: list[tuple[str, list[tuple[str, Callable[[], float]]]]] = [
        (
            "decode, 1 sequence at pos 300",
            [
                ("now", lambda: decode_rate(1, 300, "now")),
                ("1 thread", lambda: decode_rate(1, 300, "1thread")),
                ("pad", lambda: decode_rate(1, 300, "pad")),
            ],
        ),
        (
            "decode, 8 sequences (0-7) at pos 300",
            [("now", lambda: decode_rate(8, 300, "now")), ("1 thread", lambda: decode_rate(8, 300, "1thread"))],
        ),
        (
            "prefill, 1 prompt of 400 tokens",
            [("512/call", lambda: prefill_rate(1, 400, 512)), ("63/call", lambda: prefill_rate(1, 400, fc))],
        ),
        (
            "prefill, 8 prompts of 60 tokens",
            [("512/call", lambda: prefill_rate(8, 60, 512)), ("63/call", lambda: prefill_rate(8, 60, fc))],
        ),
    ]
    if not quick:
        cases.insert(
            1,
            (
                "decode, 1 sequence at pos 40 (if the switch were unconditional)",
                [("now", lambda: decode_rate(1, 40, "now")), ("1 thread", lambda: decode_rate(1, 40, "1thread"))],
            ),
        )
        cases.append(
            (
                "prefill, 4 prompts of 200 tokens",
                [("512/call", lambda: prefill_rate(4, 200, 512)), ("63/call", lambda: prefill_rate(4, 200, fc))],
            )
        )
    decode_rate(1, 40, "now")  # warm up
    for name, variants in cases:
        got: dict[str, list[float]] = {v: [] for v, _ in variants}
        for _ in range(reps):
            for v, f in variants:
                got[v].append(f())
        med = {v: float(np.median(x)) for v, x in got.items()}
        base = next(iter(med.values()))
        shown = "   ".join(f"{v} {r:6.1f}" + ("" if r == base else f" ({(r / base - 1) * 100:+.0f}%)") for v, r in med.items())
        print(f"  {name:62s} {shown}", flush=True)
    c.close()


# ----------------------------------------------------------------------------------------- part 4


def part4(model: LlamaModel, threads: int, quick: bool) -> None:
    """Faceplate's own Scheduler, as it is in src/: a seeded request alone, again, and among neighbours."""
    import asyncio

    from faceplate.engines.base import SamplingParams, TextDelta
    from faceplate.engines.chat_template import ChatTemplate
    from faceplate.engines.llamacpp.request import TokenRequest
    from faceplate.engines.llamacpp.scheduler import Scheduler

    print(
        f"\n== Part 4: src/'s Scheduler, a seeded request (temperature 0.9) alone and among neighbours (n_threads={threads}) =="
    )
    template = ChatTemplate(model.meta("tokenizer.chat_template"), {})

    def chat(text: str) -> list[int]:
        return model.tokenize(template.render([{"role": "user", "content": text}]), add_special=False, parse_special=True)

    def scheduler() -> Scheduler:
        ctx = model.new_context(ContextSettings(2048, 8, 512, threads))
        return Scheduler(model, ctx, n_parallel=8, n_ctx_per_seq=2048, n_batch=512, max_queue=32)

    async def ask(sched: Scheduler, toks: list[int], seed: int, max_tokens: int, delay: float = 0.0) -> str:
        await asyncio.sleep(delay)
        params = SamplingParams(max_tokens=max_tokens, temperature=0.9, seed=seed, ignore_eos=True)
        req = TokenRequest(f"det-{seed}-{time.monotonic()}", tuple(toks), params, max_new_tokens=max_tokens)
        text = ""
        async for ev in sched.submit(req):
            if isinstance(ev, TextDelta):
                text += ev.text
        return text

    async def run() -> None:
        sea = chat("Write a poem about the sea.")
        harbour = chat(
            "Write a poem about the sea. " + "The harbour lights, the gulls, the boats and the tide that comes and goes. " * 6
        )
        targets = [(harbour, 40 if quick else 100)] + ([] if quick else [(sea, SPLIT_KV_POS + 4 - len(sea))])
        for target, max_tokens in targets:
            sched = scheduler()
            sched.start()
            alone = await ask(sched, target, 11, max_tokens)
            again = await ask(sched, target, 11, max_tokens)  # its own prompt is cached now: prefix reuse
            sched.stop()
            sched = scheduler()
            sched.start()
            busy = await asyncio.gather(
                ask(sched, chat("Tell me a long story about a dragon."), 5, max_tokens + 60),
                ask(sched, chat("Describe a city at night in detail."), 6, max_tokens + 60),
                ask(sched, target, 99, max_tokens // 2, delay=0.3),  # the same prompt with another seed
                ask(sched, target, 11, max_tokens, delay=0.1),
            )
            sched.stop()
            for name, other in (("again (prefix reuse)", again), ("among 3 neighbours", busy[3])):
                first = next((i for i, (x, y) in enumerate(zip(alone, other, strict=False)) if x != y), None)
                same = alone == other
                where = "" if same else f", first differing character {first} of {len(alone)}"
                label = f"prompt {len(target)} + {max_tokens} tokens: alone vs {name}"
                ROWS.append(("server", label, same, float("nan")))
                print(f"  server {label:66s} identical: {'yes' if same else 'no '}{where}", flush=True)

    asyncio.run(run())


class _DropProgressDots(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage().strip(" .:") not in ("llama.cpp", "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer conditions, a shorter replay (positions under 256)")
    ap.add_argument("--model", help="a GGUF chat model (default: the bundled SmolLM2-135M Q4_1)")
    ap.add_argument("--threads", type=int, default=2, help="n_threads of the context (>= 2 to see split-KV)")
    ap.add_argument("--parts", default="1,2,4", help="1 conditions, 2 policy replay, 3 cost, 4 src's Scheduler (default 1,2,4)")
    args = ap.parse_args()
    logging.getLogger("faceplate.llamacpp").addFilter(_DropProgressDots())
    model = LlamaModel(args.model or str(model_path()))
    t0 = time.perf_counter()
    parts = {p.strip() for p in args.parts.split(",")}
    if "1" in parts:
        part1(model, args.threads, args.quick)
    if "2" in parts:
        part2(model, args.threads, args.quick)
    if "3" in parts:
        part3(model, args.threads, args.quick)
    if "4" in parts:
        part4(model, args.threads, args.quick)
    fix = [r for r in ROWS if r[0] == "fix" or r[1].startswith("fixed")]
    server = [r for r in ROWS if r[0] == "server"]
    defect = [r for r in ROWS if r not in fix and r not in server]
    print(f"\nsummary ({time.perf_counter() - t0:.0f} s):")
    print(f"  conditions as llama.cpp and scheduler.py are now: {sum(not r[2] for r in defect)} of {len(defect)} differ")
    print(f"  with the proposed fix: {sum(r[2] for r in fix)} of {len(fix)} identical")
    if server:
        print(f"  src/'s Scheduler end to end: {sum(r[2] for r in server)} of {len(server)} identical (all, once the fix is in)")
    model.close()


if __name__ == "__main__":
    main()
