"""The conversation bench/responses_chain.py measures: its prompts (logbook pages, unrelated notes)
and, turn by turn, the chained, full and cold requests and their time to first token."""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import MODEL_ID, cpu_busy_seconds, proc_cpu_seconds, wait_for_quiet  # noqa: E402
from openai import OpenAI  # noqa: E402
from tests.serverproc import ServerProcess  # noqa: E402

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
