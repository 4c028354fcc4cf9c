"""Cost of constrained decoding: JSON-schema answers vs free text, same server, same run.

    .venv/bin/python bench/structured.py [--duration 20] [--clients 1,8]

Starts one Faceplate server with the bundled chat model, then for each client count runs a
closed loop of streaming chat requests twice, interleaved in slices: once free (no
response_format) and once with a JSON schema. It reports decode speed as output tokens per
second of streaming (first token to last, so shorter constrained answers are not penalised
for their prefill) and the summed tokens/s, plus the compile time of the 20 test schemas
against the model's vocabulary (llguidance), done in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.test_structured_e2e import SCHEMAS  # noqa: E402
from tests.serverproc import start_server  # noqa: E402

from faceplate.config import bundled_chat_model_path  # noqa: E402

MODEL = "smollm2-135m-instruct"
PROMPTS = [
    "Describe a person you admire.",
    "Invent a small town and its inhabitants.",
    "List some facts about the ocean.",
    "Describe your favourite meal.",
]
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "facts": {"type": "array", "items": {"type": "string"}},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["title", "facts", "rating"],
    "additionalProperties": False,
}


async def one(client: httpx.AsyncClient, url: str, prompt: str, seed: int, constrained: bool) -> tuple[int, float, float]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 128,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "doc", "schema": SCHEMA}}
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    async with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
    return tokens, (first - start), max(last - first, 1e-6)


async def loop(url: str, clients: int, seconds: float, constrained: bool) -> dict[str, float]:
    stats: list[tuple[int, float, float]] = []
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=600) as client:

        async def worker(w: int) -> None:
            i = 0
            while time.perf_counter() < deadline:
                stats.append(await one(client, url, PROMPTS[(w + i) % len(PROMPTS)], 1000 * w + i, constrained))
                i += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        wall = time.perf_counter() - t0
    rates = [(t - 1) / span for t, _, span in stats if t > 1]
    return {
        "requests": len(stats),
        "tokens": sum(t for t, _, _ in stats),
        "sum_tok_s": sum(t for t, _, _ in stats) / wall,
        "decode_tok_s_per_stream": statistics.median(rates) if rates else 0.0,
        "ttft_p50": statistics.median(f for _, f, _ in stats),
    }


def compile_times() -> list[float]:
    from faceplate.engines.llamacpp.grammar import GrammarCompiler
    from faceplate.engines.llamacpp.model import LlamaModel
    from faceplate.structured import constraints

    model = LlamaModel(str(bundled_chat_model_path()))
    compiler = GrammarCompiler(model)
    compiler.tokenizer()
    out = []
    for schema in SCHEMAS:
        t = time.perf_counter()
        c = constraints.json_schema(schema)
        compiler.compile(c.spec)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per (clients, mode), split in two slices")
    ap.add_argument("--clients", default="1,8")
    args = ap.parse_args()
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    server = start_server(["--model", f"{MODEL}={bundled_chat_model_path()}", "--threads", "2"], log_dir=out_dir)
    url = f"{server.base_url}/chat/completions"
    rows = []
    try:
        for clients in [int(c) for c in args.clients.split(",")]:
            results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
            for _ in range(2):  # interleave so drift in machine load hits both modes alike
                for constrained in (False, True):
                    results[constrained].append(asyncio.run(loop(url, clients, args.duration / 2, constrained)))
            merged = {m: {k: statistics.fmean(r[k] for r in rs) for k in rs[0]} for m, rs in results.items()}
            rows.append((clients, merged[False], merged[True]))
    finally:
        server.stop()
    print(f"\n## Constrained (JSON schema) vs free decoding, {time.strftime('%Y-%m-%d')}\n")
    print("| clients | mode | requests | sum tok/s | decode tok/s per stream | TTFT p50 s |")
    print("|---:|---|---:|---:|---:|---:|")
    for clients, free, cons in rows:
        for name, r in (("free", free), ("json_schema", cons)):
            cells = [f"{r['requests']:.0f}", f"{r['sum_tok_s']:.1f}"]
            cells += [f"{r['decode_tok_s_per_stream']:.1f}", f"{r['ttft_p50']:.2f}"]
            print(f"| {clients} | {name} | " + " | ".join(cells) + " |")
        ratio = cons["decode_tok_s_per_stream"] / free["decode_tok_s_per_stream"]
        print(f"| {clients} | **constrained/free decode** | | | **{ratio:.2f}** (target >= 0.85) | |")
    times = compile_times()
    print(
        f"\nSchema compile (20 test schemas, tighten + llguidance against the vocabulary): "
        f"total {sum(times):.1f} ms, median {statistics.median(times):.2f} ms, max {max(times):.1f} ms"
    )


if __name__ == "__main__":
    main()
