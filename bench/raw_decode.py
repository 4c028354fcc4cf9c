"""The engine's ceiling: raw ``llama_decode`` throughput with N sequences in one batch, no HTTP.

    .venv/bin/python bench/raw_decode.py [--ns 1,2,4,8,16,32] [--steps 128] [--threads 2] [--json FILE]

Same model, same context settings as Faceplate (faceplate.engines.llamacpp.model: kv_unified off,
one KV stream per sequence, n_ctx_per_seq 8192, n_batch 512, use_extra_bufts off). For each N:
prefill one chat-templated prompt per sequence, then time ``--steps`` decode steps of N tokens
(one per sequence) with greedy argmax on ``llama_get_logits_ith`` in numpy. The context is made
with ``n_parallel = max(N, --n-parallel)`` streams, as a Faceplate server with --n-parallel would.

It also times Faceplate's own sampler chain (temperature 0.7 + seeded draw over the full
vocabulary), the per-token cost the server pays on top of the decode.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import llama_cpp as L  # noqa: E402
import numpy as np  # noqa: E402
from common import PROMPTS, cpu_busy_seconds, model_path  # noqa: E402

from faceplate.engines.base import SamplingParams  # noqa: E402
from faceplate.engines.chat_template import ChatTemplate  # noqa: E402
from faceplate.engines.llamacpp.model import ContextSettings, LlamaModel  # noqa: E402
from faceplate.engines.llamacpp.sampling import SamplerChain  # noqa: E402


class _DropProgressDots(logging.Filter):
    """faceplate's llama.cpp log callback reports GGML_LOG_LEVEL_CONT (the model loader's progress
    dots) as warnings; keep real messages, drop the dots."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage().strip(" .:") not in ("llama.cpp", "")


def prompt_tokens(model: LlamaModel, template: ChatTemplate, i: int) -> list[int]:
    text = template.render([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
    return model.tokenize(text, add_special=False, parse_special=True)


def new_context(model: LlamaModel, cs: ContextSettings, *, kv_unified: bool) -> Any:
    """Faceplate's context, or the same with one unified KV buffer for comparison."""
    return model.new_context(cs, kv_unified=kv_unified)


def run_one(
    model: LlamaModel,
    template: ChatTemplate,
    n: int,
    *,
    steps: int,
    threads: int,
    n_parallel: int,
    n_ctx_per_seq: int,
    kv_unified: bool = False,
) -> dict:
    n_batch = 512
    busy0, own0, wall0 = cpu_busy_seconds(), time.process_time(), time.perf_counter()
    cs = ContextSettings(n_ctx_per_seq=n_ctx_per_seq, n_parallel=max(n, n_parallel), n_batch=n_batch, n_threads=threads)
    t = time.perf_counter()
    ctx = new_context(model, cs, kv_unified=kv_unified)
    ctx_s = time.perf_counter() - t
    batch = L.llama_batch_init(n_batch, 0, 1)
    n_vocab = model.n_vocab
    try:
        prompts = [prompt_tokens(model, template, i) for i in range(n)]
        pos = [0] * n

        def put(k: int, tok: int, p: int, seq: int, logits: bool) -> None:
            batch.token[k] = tok
            batch.pos[k] = p
            batch.n_seq_id[k] = 1
            batch.seq_id[k][0] = seq
            batch.logits[k] = logits

        # Prefill: whole prompts, packed into batches of at most n_batch tokens (no logits needed:
        # the first decode step feeds each sequence's last prompt token again, which costs the same).
        t = time.perf_counter()
        prefill_tokens = 0
        k = 0
        for seq, toks in enumerate(prompts):
            if k + len(toks) > n_batch:
                batch.n_tokens = k
                assert L.llama_decode(ctx, batch) == 0
                k = 0
            for j, tok in enumerate(toks):
                put(k, tok, j, seq, False)
                k += 1
            pos[seq] = len(toks)
            prefill_tokens += len(toks)
        batch.n_tokens = k
        assert L.llama_decode(ctx, batch) == 0
        prefill_s = time.perf_counter() - t
        nxt = [toks[-1] for toks in prompts]

        decode_s = sample_s = 0.0
        warmup = 2
        for step in range(steps + warmup):
            for seq in range(n):
                put(seq, nxt[seq], pos[seq], seq, True)
                pos[seq] += 1
            batch.n_tokens = n
            t0 = time.perf_counter()
            rc = L.llama_decode(ctx, batch)
            t1 = time.perf_counter()
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc} at step {step}")
            for seq in range(n):
                logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, seq), shape=(n_vocab,))
                nxt[seq] = int(logits.argmax())
            t2 = time.perf_counter()
            if step >= warmup:
                decode_s += t1 - t0
                sample_s += t2 - t1

        # Faceplate's sampler chain on the last logits: the per-token cost it adds.
        chain = SamplerChain(model, SamplingParams(temperature=0.7, seed=1), seed=1)
        reps = 200
        t = time.perf_counter()
        for _ in range(reps):
            chain.sample(ctx, 0)
        chain_us = (time.perf_counter() - t) / reps * 1e6
        chain.close()
    finally:
        L.llama_batch_free(batch)
        L.llama_free(ctx)
    tokens = n * steps
    wall = time.perf_counter() - wall0
    other = max(0.0, (cpu_busy_seconds() - busy0 - (time.process_time() - own0)) / wall)
    return {
        "other_cpu_cores": other,
        "n": n,
        "steps": steps,
        "tok_s": tokens / (decode_s + sample_s),
        "decode_only_tok_s": tokens / decode_s,
        "ms_per_step": 1000 * (decode_s + sample_s) / steps,
        "argmax_ms_per_step": 1000 * sample_s / steps,
        "sampler_chain_us_per_token": chain_us,
        "tok_s_with_faceplate_sampler": tokens / (decode_s + tokens * chain_us / 1e6),
        "prefill_tok_s": prefill_tokens / prefill_s,
        "prefill_tokens": prefill_tokens,
        "context_s": ctx_s,
        "n_parallel_ctx": max(n, n_parallel),
        "kv_unified": kv_unified,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ns", default="1,2,4,8,16,32", help="sequence counts to measure")
    ap.add_argument("--steps", type=int, default=128, help="timed decode steps per N")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-parallel", type=int, default=8, help="KV streams in the context at least (Faceplate's --n-parallel)")
    ap.add_argument("--n-ctx-per-seq", type=int, default=8192)
    ap.add_argument("--model", default=None, help="GGUF path (default: the bundled SmolLM2-135M)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--kv-unified", action="store_true", help="diagnostic: one unified KV buffer, not one stream per sequence")
    args = ap.parse_args(argv)

    path = args.model or str(model_path())
    logging.getLogger("faceplate.llamacpp").addFilter(_DropProgressDots())
    model = LlamaModel(path)
    special = {"bos_token": model.special_piece(model.bos) if model.bos >= 0 else "", "eos_token": model.special_piece(model.eos)}
    template = ChatTemplate(model.meta("tokenizer.chat_template"), special)
    results = []
    kv = "unified KV (diagnostic)" if args.kv_unified else "one KV stream per sequence, as Faceplate"
    print(f"raw llama_decode, {args.threads} threads, {args.steps} steps, {kv}, model {Path(path).name}", flush=True)
    print(
        f"{'N':>3} {'tok/s':>8} {'decode-only':>11} {'ms/step':>8} {'+FP sampler':>11} {'prefill tok/s':>13} {'other CPU':>9}",
        flush=True,
    )
    for n in [int(x) for x in args.ns.split(",") if x]:
        r = run_one(
            model,
            template,
            n,
            steps=args.steps,
            threads=args.threads,
            n_parallel=args.n_parallel,
            n_ctx_per_seq=args.n_ctx_per_seq,
            kv_unified=args.kv_unified,
        )
        results.append(r)
        print(
            f"{n:>3} {r['tok_s']:>8.1f} {r['decode_only_tok_s']:>11.1f} {r['ms_per_step']:>8.1f} "
            f"{r['tok_s_with_faceplate_sampler']:>11.1f} {r['prefill_tok_s']:>13.1f} {r['other_cpu_cores']:>9.2f}",
            flush=True,
        )
    model.close()
    out = {"threads": args.threads, "steps": args.steps, "n_parallel": args.n_parallel, "results": results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
