"""Does ``previous_response_id`` chaining hit the prefix cache? Time to first token, chained vs full input.

    .venv/bin/python bench/responses_chain.py --save   # 6-8 minutes on the shared 2-core machine; redraws the chart
    .venv/bin/python bench/responses_chain.py          # the same, without touching bench/responses_chain.png
    .venv/bin/python bench/responses_chain.py --turns 3 --repeats 1   # smoke run, about a minute

Starts one real ``faceplate serve`` (the bundled SmolLM2-135M-Instruct GGUF, ``--threads 1``,
``--n-parallel 8``, a fresh temporary ``FACEPLATE_DATA_DIR``) and builds one conversation on
``/v1/responses`` that grows by ~355 tokens a turn (a ~320-token user passage, ``max_output_tokens`` 32,
temperature 0), to about 2.2k prompt tokens at turn 6. At every turn k it measures, with the
official ``openai`` SDK (``client.responses.create(..., stream=True)``), the time from the call
to the first ``response.output_text.delta`` event of:

- **chained**: only the new user message, ``previous_response_id`` = the conversation's turn k-1
  (``store`` true, the default); the server renders the stored turns plus the new message;
- **full**: every earlier user message and the assistant's earlier output texts as input items
  (``{"role": "user", ...}``, ``{"role": "assistant", ...}``) plus the new message, ``store``
  false: the same prompt, sent in full;
- **cold** (reference, every ``--cold-every`` 2nd turn): the full input again, with a unique tag
  at the start of the first user message, so no cached prefix matches past the chat template's
  system header: what a prompt of that length costs without the cache.

Each chained and full measurement is repeated ``--repeats`` times (3), interleaved (a, b then b, a),
and the table shows medians. Before every measured request an unrelated request with a different
~200-token prompt (chat completions, ``max_tokens`` 1, a unique tag so it matches nothing cached)
goes first, so the cache always holds something else too. Usage (``input_tokens`` and
``input_tokens_details.cached_tokens``) is read from the stream's terminal event
(``response.incomplete`` here, as the answers are cut at 32 tokens; ``response.completed`` when
the model stops first).

Fairness. The prefix cache is keyed on tokens, not on response ids: chained and full render to
the same prompt tokens, so whichever ran first would leave the whole prompt cached for the other.
So each measured request's new user message starts with its own tag (``(take c1)``, ``(take f2)``,
...): every measurement finds turns 1..k-1 cached and nothing of turn k (the conversation's own
turn k, untagged, is sent last, chained, and is what turn k+1 continues from). The unrelated
requests go to free sequences, then to the least recently used one, and a request reuses the
sequence holding its longest prefix; with ``--n-parallel`` 8 (the default) the conversation's
prefix survives the unrelated requests in its own sequence, which is the realistic case for a
server with spare sequences. ``--n-parallel 1`` makes every unrelated request evict it.

One llama.cpp thread, not two: the machines here are 2-core and shared, and llama.cpp with 2
threads on 2 cores slows down many times over (not twice) as soon as another process takes a
core, because every operation's thread barrier waits for the descheduled thread. With one thread
a busy neighbour costs a share of a core. The "other CPU" column says how busy the rest of the
machine was; ``--retries N`` takes a measurement again (with a new tag) when that exceeded 0.5 cores.

Tables go to stdout and bench/out/responses_chain.md, raw numbers to bench/out/responses_chain.json;
``--save`` also draws bench/responses_chain.png (TTFT and cached tokens per turn, all variants).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from common import MODEL_ID, OUT_DIR, cpu_busy_seconds, machine, model_path, proc_cpu_seconds  # noqa: E402
from openai import APIError, OpenAI  # noqa: E402
from responses_chain_conversation import MAX_OUTPUT_TOKENS, QUIET, Bench, noise_prompt  # noqa: E402
from responses_chain_report import _tokens, chart, rows, table  # noqa: E402
from tests.serverproc import ServerProcess, free_port, launch  # noqa: E402

# ---------------------------------------------------------------------------- main


def start_server(args: argparse.Namespace, data_dir: Path) -> ServerProcess:
    port = free_port()
    cmd = [
        sys.executable, "-m", "faceplate", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--model", f"{MODEL_ID}={model_path()}", "--threads", str(args.threads),
        "--n-parallel", str(args.n_parallel), "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "FACEPLATE_DATA_DIR": str(data_dir)}
    return launch(cmd, port, OUT_DIR / "responses_chain-server.log", env=env, cwd=ROOT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3, help="measurements per variant and turn (median)")
    ap.add_argument("--sentences", type=int, default=20, help="sentences per user passage (~16 tokens each)")
    ap.add_argument("--noise-sentences", type=int, default=12, help="sentences in each unrelated prompt (~15 tokens each)")
    ap.add_argument("--cold-every", type=int, default=2, help="the uncached reference at every n-th turn (0: never)")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads (1: see the docstring; 2 on an idle machine)")
    ap.add_argument("--n-parallel", type=int, default=8)
    ap.add_argument(
        "--wait-quiet", type=float, default=20, help="before each turn, wait up to this many s for other load to stop"
    )
    ap.add_argument("--retries", type=int, default=0, help="times a measurement is taken again when the machine was busy")
    ap.add_argument("--save", action="store_true", help="draw bench/responses_chain.png")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on kill, too
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    facts = machine()
    data_dir = Path(tempfile.mkdtemp(prefix="faceplate-responses-chain-"))
    started = time.monotonic()
    server = start_server(args, data_dir)
    print(f"server up in {time.monotonic() - started:.0f}s (log {server.log_path})", file=sys.stderr)
    client = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)
    bench = Bench(client, server, args)
    busy0, own0, srv0, t0 = cpu_busy_seconds(), proc_cpu_seconds(os.getpid()), proc_cpu_seconds(server.proc.pid), time.monotonic()
    try:
        # Warm-up: chat, then a Responses turn of ~600 tokens (a full 512-token batch), then one chained to it.
        bench.noise()
        first = client.responses.create(model=MODEL_ID, input=noise_prompt(-1, 40), max_output_tokens=16)
        client.responses.create(model=MODEL_ID, input="And now?", previous_response_id=first.id, max_output_tokens=16)
        bench.run()
    except (APIError, RuntimeError) as exc:
        body = getattr(exc, "body", None)
        tail = server.log()[-4000:]
        print(f"\nFAILED: {type(exc).__name__}: {exc}\nbody: {body}\n--- server log tail ---\n{tail}", file=sys.stderr)
        server.stop()
        raise SystemExit(1) from None
    finally:
        wall = time.monotonic() - t0
        busy = cpu_busy_seconds() - busy0
        ours = proc_cpu_seconds(os.getpid()) - own0 + proc_cpu_seconds(server.proc.pid) - srv0
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    other = max(0.0, (busy - ours) / wall)

    rs = rows(bench.samples, args.turns)
    measured = [s for s in bench.samples if s.variant != "canonical"]
    busy_runs = sum(1 for s in measured if s.other_cpu > QUIET)
    title = (
        f"{facts['date']}, {facts['cpu']}, {facts['cores']} cores; SmolLM2-135M Q4_1, --threads {args.threads}, "
        f"--n-parallel {args.n_parallel}; max_output_tokens {MAX_OUTPUT_TOKENS}, temperature 0; "
        f"median of {args.repeats}"
    )
    text = [
        f"Measured {facts['date']} on {facts['cpu']}, {facts['cores']} cores ({facts['flags']}), {facts['memory']}, "
        f"Python {facts['python']}; `bench/responses_chain.py` (--turns {args.turns} --repeats {args.repeats} "
        f"--sentences {args.sentences} --n-parallel {args.n_parallel}), total {wall / 60:.1f} min; other processes "
        f"used {other:.2f} cores on average ({busy_runs} of {len(measured)} measured requests ran while they used more "
        f"than {QUIET} cores; {len(bench.discarded)} taken again, --retries {args.retries}).",
        "",
        table(rs, args.cold_every > 0),
        "",
        "The conversation's own (untagged) chained turns: "
        + ", ".join(f"turn {r['turn']} {_tokens(r['canonical_input'])} tok, {_tokens(r['canonical_cached'])} cached" for r in rs)
        + ".",
    ]
    report = "\n".join(text)
    print("\n" + report)
    (OUT_DIR / "responses_chain.md").write_text(report + "\n")
    raw = {"machine": facts, "args": vars(args), "wall_s": wall, "other_cpu": other, "rows": rs}
    raw["samples"] = [asdict(s) for s in bench.samples]
    raw["discarded"] = [asdict(s) for s in bench.discarded]
    (OUT_DIR / "responses_chain.json").write_text(json.dumps(raw, indent=1, default=str))
    if args.save:
        chart(rs, title, BENCH / "responses_chain.png", args.cold_every > 0)
        print(f"\nchart: {BENCH / 'responses_chain.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
