"""What moving a sequence's KV costs against prefilling it: the figures behind the host prompt
cache and sequence packing (src/faceplate/engines/llamacpp/prompt_cache.py, prefix.py).

    .venv/bin/python bench/kv_copy.py [--lengths 40,200,650,1000] [--threads 2] [--repeat 3]

Same model and context as a Faceplate server (--n-parallel 8, 8192 tokens per sequence, one KV
stream per sequence). For each prompt length N, medians of --repeat runs:
- prefill: decoding N prompt tokens into an empty sequence;
- save + load: ``llama_state_seq_get_data`` of the sequence into host memory, then
  ``llama_state_seq_set_data`` into another sequence (what the host prompt cache does);
- copy_sequence: Faceplate's state-API copy from one sequence to another, plus the next
  one-token decode of the copy;
- seq_cp: ``llama_memory_seq_cp`` between the two KV streams, plus the next one-token decode of
  the copy (llama.cpp copies the whole stream then).
Prints a table and saves bench/out/kv_copy.png (bench/kv_copy.png with --save).
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import llama_cpp as L  # noqa: E402
from common import LONG_SYSTEM_PROMPT, OUT_DIR, machine, model_path  # noqa: E402

from faceplate.engines.llamacpp.model import ContextSettings, LlamaModel  # noqa: E402
from faceplate.engines.llamacpp.prompt_cache import copy_sequence  # noqa: E402


def decode(ctx: Any, batch: Any, tokens: list[int], seq: int, start: int) -> None:
    for off in range(0, len(tokens), 512):
        chunk = tokens[off : off + 512]
        for i, t in enumerate(chunk):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = t, start + off + i, 1
            batch.seq_id[i][0], batch.logits[i] = seq, off + i == len(tokens) - 1
        batch.n_tokens = len(chunk)
        if L.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")


def measure(model: LlamaModel, ctx: Any, tokens: list[int], repeat: int) -> dict[str, float]:
    mem, batch = L.llama_get_memory(ctx), L.llama_batch_init(512, 0, 1)
    n, times = len(tokens), {"prefill": [], "save + load": [], "copy_sequence": [], "seq_cp": []}
    try:
        for _ in range(repeat):
            for seq in range(4):
                L.llama_memory_seq_rm(mem, seq, -1, -1)
            t = time.perf_counter()
            decode(ctx, batch, tokens, 0, 0)
            times["prefill"].append(time.perf_counter() - t)

            t = time.perf_counter()
            size = int(L.llama_state_seq_get_size(ctx, 0))
            state = (ctypes.c_uint8 * size)()
            L.llama_state_seq_get_data(ctx, state, size, 0)
            L.llama_state_seq_set_data(ctx, state, size, 1)
            times["save + load"].append(time.perf_counter() - t)

            t = time.perf_counter()
            copy_sequence(ctx, mem, 0, 2)
            decode(ctx, batch, tokens[:1], 2, n)
            times["copy_sequence"].append(time.perf_counter() - t)

            t = time.perf_counter()
            L.llama_memory_seq_cp(mem, 0, 3, -1, -1)
            decode(ctx, batch, tokens[:1], 3, n)
            times["seq_cp"].append(time.perf_counter() - t)
        one = []
        for _ in range(repeat):  # a lone one-token decode, to take out of the two copy rows
            t = time.perf_counter()
            decode(ctx, batch, tokens[:1], 2, n + 1)
            one.append(time.perf_counter() - t)
            L.llama_memory_seq_rm(mem, 2, n + 1, -1)
    finally:
        L.llama_batch_free(batch)
    out = {k: statistics.median(v) for k, v in times.items()}
    decode_one = statistics.median(one)
    out["copy_sequence"] -= decode_one
    out["seq_cp"] -= decode_one
    out["kib_per_token"] = size / n / 1024
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="40,200,650,1000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--save", action="store_true", help="write bench/kv_copy.png")
    args = ap.parse_args()
    model = LlamaModel(str(model_path()))
    ctx = model.new_context(ContextSettings(n_ctx_per_seq=8192, n_parallel=8, n_batch=512, n_threads=args.threads))
    text = LONG_SYSTEM_PROMPT * 2
    all_tokens = model.tokenize(text, add_special=True, parse_special=False)
    rows = []
    for n in [int(x) for x in args.lengths.split(",")]:
        if n > len(all_tokens):
            raise SystemExit(f"--lengths: at most {len(all_tokens)} tokens")
        rows.append((n, measure(model, ctx, all_tokens[:n], args.repeat)))
    L.llama_free(ctx)
    model.close()
    m = machine()
    print(f"{m['date']} {m['cpu']}, {m['cores']} cores, {args.threads} threads; medians of {args.repeat}")
    print(
        "| prompt tokens | prefill | save + load (host cache) | copy_sequence | seq_cp (whole stream) | KiB/token"
        " | prefill ÷ save+load |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for n, r in rows:
        print(
            f"| {n} | {r['prefill'] * 1000:.0f} ms | {r['save + load'] * 1000:.1f} ms | {r['copy_sequence'] * 1000:.1f} ms"
            f" | {r['seq_cp'] * 1000:.1f} ms | {r['kib_per_token']:.1f} | {r['prefill'] / r['save + load']:.0f}x |"
        )
    chart(rows, m, Path(__file__).resolve().parent / "kv_copy.png" if args.save else OUT_DIR / "kv_copy.png")
    return 0


def chart(rows: list[tuple[int, dict[str, float]]], m: dict[str, str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [n for n, _ in rows]
    for key in ("prefill", "save + load", "copy_sequence", "seq_cp"):
        ax.plot(xs, [max(r[key], 1e-5) * 1000 for _, r in rows], marker="o", label=key)
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("ms (log scale)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"bench/kv_copy.py: SmolLM2-135M Q4_1 - {m['cpu']}, {m['cores']} cores - {m['date']}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")


if __name__ == "__main__":
    raise SystemExit(main())
