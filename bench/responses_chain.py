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
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from common import MODEL_ID, OUT_DIR, cpu_busy_seconds, machine, model_path, proc_cpu_seconds, wait_for_quiet  # noqa: E402
from openai import APIError, OpenAI  # noqa: E402
from tests.serverproc import ServerProcess, free_port, launch  # noqa: E402

MAX_OUTPUT_TOKENS = 32
QUIET = 0.5  # cores other processes may use during a measurement before it is taken again

# ---------------------------------------------------------------------------- prompts
# Deterministic sentence-like text, so the token counts are reproducible without bundling prose.

LOG_WORDS = (
    [
        "The harbour master",
        "A young engineer",
        "The night nurse",
        "Our neighbour",
        "The old librarian",
        "A travelling musician",
        "The station chief",
        "My grandmother",
        "The ferry captain",
        "A tired student",
        "The baker on the corner",
        "Two fishermen",
        "The lighthouse keeper",
        "A retired teacher",
        "The postwoman",
    ],
    [
        "counted",
        "repaired",
        "painted",
        "described",
        "carried",
        "measured",
        "forgot",
        "found",
        "sold",
        "wrote about",
        "cleaned",
        "borrowed",
        "photographed",
        "argued about",
        "waited for",
    ],
    [
        "seven wooden boats",
        "the broken lighthouse lamp",
        "a box of old letters",
        "the garden fence",
        "three loaves of bread",
        "the map of the northern coast",
        "a rusty bicycle",
        "the village clock",
        "a basket of green apples",
        "the last train timetable",
        "an umbrella with a bent handle",
        "the school roof",
        "a jar of honey",
        "the red fishing nets",
        "a letter from the city",
    ],
    [
        "before the rain started.",
        "while the radio played softly.",
        "on the first cold morning of the year.",
        "because nobody else would.",
        "just after the market closed.",
        "with great care and little patience.",
        "as the tide went out.",
        "for the third time that week.",
        "without telling anyone.",
        "in the blue light of the evening.",
        "while the dogs barked at the gulls.",
        "and then went home early.",
    ],
)
NOISE_WORDS = (
    [
        "The recipe",
        "Our chemistry teacher",
        "The museum guide",
        "A software tester",
        "The football coach",
        "The desert survey team",
        "A violin maker",
        "The city council",
        "The greenhouse robot",
        "A mountain guide",
    ],
    [
        "calibrated",
        "tasted",
        "catalogued",
        "reviewed",
        "simulated",
        "polished",
        "recorded",
        "translated",
        "rearranged",
        "inspected",
    ],
    [
        "a copper kettle",
        "the quarterly budget",
        "four glass prisms",
        "a tomato soup",
        "the penalty kicks",
        "an ancient coin",
        "the error logs",
        "a spruce soundboard",
        "the ski lift",
        "forty seedlings",
    ],
    [
        "under strict supervision.",
        "in the overheated basement.",
        "on a windless afternoon.",
        "during the long lunch break.",
        "to everyone's surprise.",
        "for the annual report.",
        "with a borrowed microscope.",
        "before the inspectors arrived.",
    ],
)


def prose(seed: int, sentences: int, words: tuple[list[str], ...]) -> str:
    rng = random.Random(seed)
    return " ".join(" ".join(rng.choice(part) for part in words) for _ in range(sentences))


def user_turn(k: int, sentences: int, tag: str = "") -> str:
    head = f"{tag} " if tag else ""
    return (
        f"{head}Here is page {k} of the harbour logbook.\n\n{prose(1000 + k, sentences, LOG_WORDS)}\n\n"
        f"In one sentence: what happened on page {k}?"
    )


def noise_prompt(i: int, sentences: int) -> str:
    return (
        f"Request {i}. These are notes from an unrelated project.\n\n{prose(5000 + i, sentences, NOISE_WORDS)}\n\n"
        "Give these notes a title."
    )


# ---------------------------------------------------------------------------- measurement


@dataclass
class Sample:
    variant: str  # chained | full | cold | canonical
    turn: int
    ttft_ms: float
    total_ms: float
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    terminal: str  # the stream's last event type
    other_cpu: float  # cores other processes used during this request (the machine is shared)
    response_id: str = ""
    text: str = field(default="", repr=False)


class Bench:
    def __init__(self, client: OpenAI, server: ServerProcess, args: argparse.Namespace) -> None:
        self.client, self.server, self.args = client, server, args
        self.noise_count = 0
        self.samples: list[Sample] = []
        self.discarded: list[Sample] = []  # measurements taken again because the machine was busy

    def noise(self) -> None:
        """An unrelated request with a prompt nothing else shares (so it takes a free or the oldest sequence)."""
        self.noise_count += 1
        self.client.chat.completions.create(
            model=MODEL_ID,
            messages=[{"role": "user", "content": noise_prompt(self.noise_count, self.args.noise_sentences)}],
            max_tokens=1,
            temperature=0,
        )

    def cpu(self) -> float:
        """CPU-seconds of this process and the server together."""
        return proc_cpu_seconds(os.getpid()) + proc_cpu_seconds(self.server.proc.pid)

    def respond(self, variant: str, turn: int, **kw: Any) -> Sample:
        busy0, ours0 = cpu_busy_seconds(), self.cpu()
        t0 = time.perf_counter()
        first: float | None = None
        final: Any = None
        terminal = ""
        stream = self.client.responses.create(
            model=MODEL_ID, stream=True, temperature=0, max_output_tokens=MAX_OUTPUT_TOKENS, **kw
        )
        with stream:
            for event in stream:
                if event.type == "response.output_text.delta" and event.delta and first is None:
                    first = time.perf_counter()
                elif event.type in ("response.completed", "response.incomplete", "response.failed"):
                    final, terminal = event.response, event.type
                elif event.type == "error":
                    raise RuntimeError(f"stream error event: {event}")
        end = time.perf_counter()
        other = max(0.0, (cpu_busy_seconds() - busy0 - (self.cpu() - ours0)) / (end - t0))
        if final is None:
            raise RuntimeError(f"{variant} turn {turn}: the stream ended without a terminal event")
        if terminal == "response.failed":
            raise RuntimeError(f"{variant} turn {turn}: response.failed: {final.error}")
        usage = final.usage
        details = usage.input_tokens_details if usage else None
        sample = Sample(
            variant=variant,
            turn=turn,
            ttft_ms=((first if first is not None else end) - t0) * 1000,
            total_ms=(end - t0) * 1000,
            input_tokens=usage.input_tokens if usage else -1,
            cached_tokens=(details.cached_tokens or 0) if details else -1,
            output_tokens=usage.output_tokens if usage else -1,
            terminal=terminal,
            other_cpu=other,
            response_id=final.id,
            text=final.output_text,
        )
        self.samples.append(sample)
        return sample

    def measure(self, variant: str, k: int, tag: str, previous: str | None, history: list[dict[str, str]]) -> None:
        """One measured turn-k request, after an unrelated request; taken again (with a new tag, so
        it finds the same cache) when other processes used more than QUIET cores during it."""
        for attempt in range(self.args.retries + 1):
            label = tag if attempt == 0 else f"(retry {attempt} {tag.strip('()')})"
            self.noise()
            if variant == "chained":
                kw: dict[str, Any] = {"previous_response_id": previous} if previous else {}
                sample = self.respond(
                    "chained", k, input=[{"role": "user", "content": user_turn(k, self.args.sentences, label)}], **kw
                )
            elif variant == "full":
                msg = {"role": "user", "content": user_turn(k, self.args.sentences, label)}
                sample = self.respond("full", k, input=[*history, msg], store=False)
            else:  # cold: the tag opens the first user message, so nothing past the system header is cached
                items = [*history, {"role": "user", "content": user_turn(k, self.args.sentences)}]
                items[0] = {"role": "user", "content": f"{label} {items[0]['content']}"}
                sample = self.respond("cold", k, input=items, store=False)
            if sample.other_cpu <= QUIET or attempt == self.args.retries:
                return
            self.samples.remove(sample)
            self.discarded.append(sample)
            print(f"  {variant} turn {k}: other processes used {sample.other_cpu:.2f} cores, again", file=sys.stderr)

    def run(self) -> None:
        a = self.args
        history: list[dict[str, str]] = []  # the conversation so far, as full-input items
        previous: str | None = None  # the conversation's last response (turn k-1)
        for k in range(1, a.turns + 1):
            if a.wait_quiet > 0:
                wait_for_quiet(max_wait=a.wait_quiet, threshold=QUIET, window=1.0)
            t_turn = time.monotonic()
            for r in range(1, a.repeats + 1):
                for variant in ("chained", "full") if r % 2 else ("full", "chained"):
                    self.measure(variant, k, f"(take {variant[0]}{r})", previous, history)
            if a.cold_every and k % a.cold_every == 0:
                self.measure("cold", k, f"(cold {k})", previous, history)
            # The conversation's own turn k (untagged), chained: what turn k+1 continues from.
            msg = user_turn(k, a.sentences)
            self.noise()
            kw = {"previous_response_id": previous} if previous else {}
            own = self.respond("canonical", k, input=[{"role": "user", "content": msg}], **kw)
            previous = own.response_id
            history += [{"role": "user", "content": msg}, {"role": "assistant", "content": own.text}]
            got = [s for s in self.samples if s.turn == k and s.variant != "canonical"]
            line = ", ".join(f"{s.variant} {s.ttft_ms:.0f}ms/{s.cached_tokens}c" for s in got)
            print(
                f"turn {k}: {own.input_tokens} prompt tokens, {time.monotonic() - t_turn:.0f}s: {line}",
                file=sys.stderr,
                flush=True,
            )


# ---------------------------------------------------------------------------- report


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rows(samples: list[Sample], turns: int) -> list[dict[str, Any]]:
    out = []
    for k in range(1, turns + 1):
        by = {v: [s for s in samples if s.turn == k and s.variant == v] for v in ("chained", "full", "cold", "canonical")}
        row: dict[str, Any] = {"turn": k}
        row["other_cpu"] = statistics.fmean([s.other_cpu for v in ("chained", "full", "cold") for s in by[v]] or [0.0])
        for v, ss in by.items():
            row[f"{v}_ttft_ms"] = med([s.ttft_ms for s in ss])
            row[f"{v}_input"] = sorted({s.input_tokens for s in ss})
            row[f"{v}_cached"] = sorted({s.cached_tokens for s in ss})
            row[f"{v}_cached_med"] = med([s.cached_tokens for s in ss])
        out.append(row)
    return out


def _tokens(values: list[int]) -> str:
    return "–".join(str(v) for v in (values if len(values) <= 1 else [values[0], values[-1]])) if values else "-"


def table(rs: list[dict[str, Any]], cold: bool) -> str:
    head = "| turn | prompt tokens | chained TTFT ms | full TTFT ms | full / chained | cached chained | cached full |"
    sep = "|--:|--:|--:|--:|--:|--:|--:|"
    if cold:
        head += " cold TTFT ms (cached) | cold / chained |"
        sep += "--:|--:|"
    head += " other CPU |"
    sep += "--:|"
    lines = [head, sep]
    for r in rs:
        prompt = _tokens(r["chained_input"])
        if r["full_input"] != r["chained_input"]:
            prompt += f" (full: {_tokens(r['full_input'])})"
        ratio = r["full_ttft_ms"] / r["chained_ttft_ms"]
        cells = [
            str(r["turn"]),
            prompt,
            f"{r['chained_ttft_ms']:.0f}",
            f"{r['full_ttft_ms']:.0f}",
            f"{ratio:.2f}",
            _tokens(r["chained_cached"]),
            _tokens(r["full_cached"]),
        ]
        if cold and r["cold_input"]:
            cells += [f"{r['cold_ttft_ms']:.0f} ({_tokens(r['cold_cached'])})", f"{r['cold_ttft_ms'] / r['chained_ttft_ms']:.2f}"]
        elif cold:
            cells += ["", ""]
        cells.append(f"{r['other_cpu']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(rs: list[dict[str, Any]], title: str, path: Path, cold: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    turns = [r["turn"] for r in rs]
    prompt = [r["chained_input"][-1] if r["chained_input"] else 0 for r in rs]
    series = [("chained", "previous_response_id", "o-"), ("full", "full input, store=false", "s--")]
    if cold:
        series.append(("cold", "full input, nothing cached (reference)", "^:"))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    for v, label, style in series:
        got = [r for r in rs if r[f"{v}_input"]]  # the cold reference is not taken at every turn
        ax1.plot([r["turn"] for r in got], [r[f"{v}_ttft_ms"] / 1000 for r in got], style, label=label)
        ax2.plot([r["turn"] for r in got], [r[f"{v}_cached_med"] for r in got], style, label=label)
    ax2.plot(turns, prompt, "k-", alpha=0.25, lw=6, label="prompt tokens")
    ticks = [f"{t}\n{p} tok" for t, p in zip(turns, prompt, strict=True)]
    for ax in (ax1, ax2):
        ax.set_xticks(turns, ticks, fontsize=8)
        ax.set_xlabel("turn (prompt tokens)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylabel("time to first token, s (median)")
    ax1.set_ylim(bottom=0)
    ax2.set_ylabel("cached prompt tokens (usage)")
    ax2.set_ylim(bottom=0)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
