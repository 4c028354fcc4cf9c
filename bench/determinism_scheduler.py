"""Parts 2 and 3 of bench/determinism.py: src/'s real Scheduler, ``deterministic=False`` vs ``True``.

Part 2 (identity): one seeded request (temperature 0.9, ignore_eos) served alone by a fresh
scheduler, then again by the same scheduler (its prompt is cached: prefix reuse, the last prompt
token re-decoded alone), and by a fresh scheduler among 3 neighbours (two long answers and the
same prompt with another seed). Two targets: a prompt of >= 64 tokens whose answer runs past
position 256 (both kernel switches can bite), and a prompt under 64 tokens whose answer ends before
256 (neither can). "yes" is the same text, character for character.

Part 3 (cost): tokens per second of the Scheduler for decode and prefill shapes, each run on a fresh
context and scheduler, the two modes interleaved, the median of a few repeats.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import llama_cpp as L
from determinism_kernels import SPLIT_KV_POS, tokens

from faceplate.engines.base import Finished, SamplingParams, TextDelta
from faceplate.engines.chat_template import ChatTemplate
from faceplate.engines.llamacpp.model import ContextSettings, LlamaModel
from faceplate.engines.llamacpp.request import TokenRequest
from faceplate.engines.llamacpp.scheduler import Scheduler

MODES = (("default", False), ("deterministic", True))
N_PARALLEL = 8
N_CTX_PER_SEQ = 2048


@dataclass
class Answer:
    text: str = ""
    tokens: int = 0
    times: list[tuple[float, int]] | None = None  # (perf_counter, tokens) per delta
    done: float = 0.0


class Served:
    """A fresh context and Scheduler; ``async with`` starts it and frees both at the end."""

    def __init__(self, model: LlamaModel, threads: int, deterministic: bool) -> None:
        self.model, self.threads, self.deterministic = model, threads, deterministic
        self._n = 0

    async def __aenter__(self) -> Served:
        self.ctx = self.model.new_context(ContextSettings(N_CTX_PER_SEQ, N_PARALLEL, 512, self.threads))
        self.sched = Scheduler(
            self.model,
            self.ctx,
            n_parallel=N_PARALLEL,
            n_ctx_per_seq=N_CTX_PER_SEQ,
            n_batch=512,
            max_queue=64,
            deterministic=self.deterministic,
        )
        self.sched.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sched.stop()
        L.llama_free(self.ctx)

    async def ask(self, toks: list[int], seed: int, max_tokens: int, delay: float = 0.0) -> Answer:
        return (await self.ask_n(toks, seed, max_tokens, 1, delay))[0]

    async def ask_n(self, toks: list[int], seed: int, max_tokens: int, n: int, delay: float = 0.0) -> list[Answer]:
        """One request with ``n`` choices (seeds seed, seed + 1, ...): one prefill, n decoding sequences."""
        await asyncio.sleep(delay)
        self._n += 1
        params = SamplingParams(max_tokens=max_tokens, temperature=0.9, seed=seed, ignore_eos=True)
        req = TokenRequest(f"det-{self._n}", tuple(toks), params, n=n, max_new_tokens=max_tokens)
        answers = [Answer(times=[]) for _ in range(n)]
        async for ev in self.sched.submit(req):
            if isinstance(ev, TextDelta):
                a = answers[ev.index]
                a.text += ev.text
                a.tokens += ev.tokens
                a.times.append((time.perf_counter(), ev.tokens))  # type: ignore[union-attr]
            elif isinstance(ev, Finished):
                answers[ev.index].tokens = ev.completion_tokens
                answers[ev.index].done = time.perf_counter()
        return answers


# ----------------------------------------------------------------------------------------- part 2


@dataclass
class IdentityRow:
    target: str
    compared: str
    same: dict[str, bool]
    where: dict[str, str]


def identity(model: LlamaModel, threads: int, quick: bool) -> list[IdentityRow]:
    print(f"\n== Part 2: src/'s Scheduler, a seeded request alone, again and among neighbours (n_threads={threads}) ==")
    template = ChatTemplate(model.meta("tokenizer.chat_template"), {})

    def chat(text: str) -> list[int]:
        msgs = [{"role": "user", "content": text}]
        return model.tokenize(template.render(msgs), add_special=False, parse_special=True)

    harbour = " The harbour lights, the gulls, the boats and the tide that comes and goes." * 5
    long_prompt = chat("Write a poem about the sea." + harbour)
    short_prompt = chat("Write a poem about the sea.")
    assert len(long_prompt) >= 64 > len(short_prompt), (len(long_prompt), len(short_prompt))
    long_end = SPLIT_KV_POS + (24 if quick else 60)  # the answer's last position, past 256
    short_end = 140 if quick else 220  # under 256
    targets = [(long_prompt, long_end - len(long_prompt)), (short_prompt, short_end - len(short_prompt))]
    story, city = chat("Tell me a long story about a dragon."), chat("Describe a city at night in detail.")

    async def scenarios(deterministic: bool, toks: list[int], max_tokens: int) -> dict[str, Answer]:
        async with Served(model, threads, deterministic) as s:
            alone = await s.ask(toks, 11, max_tokens)
            again = await s.ask(toks, 11, max_tokens)  # its own prompt is cached now: prefix reuse
        async with Served(model, threads, deterministic) as s:
            busy = await asyncio.gather(
                s.ask(story, 5, max_tokens + 60),
                s.ask(city, 6, max_tokens + 60),
                s.ask(toks, 99, max_tokens // 2, delay=0.3),  # the same prompt with another seed
                s.ask(toks, 11, max_tokens, delay=0.1),
            )
        return {"alone": alone, "again, its prompt cached (prefix reuse)": again, "among 3 neighbours": busy[3]}

    rows: list[IdentityRow] = []
    for toks, max_tokens in targets:
        label = f"prompt {len(toks)} + {max_tokens} tokens (last position {len(toks) + max_tokens - 1})"
        got = {mode: asyncio.run(scenarios(det, toks, max_tokens)) for mode, det in MODES}
        for compared in ("again, its prompt cached (prefix reuse)", "among 3 neighbours"):
            r = IdentityRow(label, compared, {}, {})
            for mode, _ in MODES:
                a, b = got[mode]["alone"].text, got[mode][compared].text
                r.same[mode] = a == b
                first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
                r.where[mode] = "" if a == b else f"first differing character {first} of {len(a)}"
            rows.append(r)
            shown = "   ".join(f"{m}: {'yes' if r.same[m] else 'no '} {r.where[m]}" for m, _ in MODES)
            print(f"  {label:46s} vs {compared:40s} {shown}", flush=True)
    return rows


# ----------------------------------------------------------------------------------------- part 3


def decode_rate(answers: list[Answer]) -> float:
    """Tokens per second while all sequences decode: from the last first token to the first finish."""
    t0 = max(a.times[0][0] for a in answers)  # type: ignore[index]
    t1 = min(a.times[-1][0] for a in answers)  # type: ignore[index]
    n = sum(k for a in answers for t, k in a.times if t0 < t <= t1)  # type: ignore[union-attr]
    return n / (t1 - t0)


def cost_cases(quick: bool) -> list[tuple[str, str, int, int, int]]:
    """(name, kind, sequences, prompt tokens, generated tokens)."""
    gen = 24 if quick else 64
    return [
        (f"decode, 1 sequence, positions 300-{300 + gen}", "decode", 1, 300, gen),
        (f"decode, 1 sequence, positions 40-{40 + gen}", "decode", 1, 40, gen),
        (f"decode, 8 sequences (n=8), positions 300-{300 + gen}", "decode", 8, 300, gen),
        ("prefill, 1 prompt of 400 tokens", "prefill", 1, 400, 1),
        ("prefill, 4 prompts of 200 tokens", "prefill", 4, 200, 1),
    ]


@dataclass
class CostRow:
    name: str
    rates: dict[str, float]
    runs: dict[str, list[float]]

    @property
    def ratio(self) -> float:
        return self.rates["deterministic"] / self.rates["default"]


def cost(model: LlamaModel, threads: int, quick: bool) -> list[CostRow]:
    reps = 2 if quick else 4
    print(f"\n== Part 3: tok/s of src/'s Scheduler, default vs deterministic (n_threads={threads}, median of {reps}) ==")

    async def measure(deterministic: bool, kind: str, n_seq: int, plen: int, gen: int, rep: int) -> float:
        # a different text per repeat and per sequence: no prefix is ever reused
        async with Served(model, threads, deterministic) as s:
            t = time.perf_counter()
            if kind == "decode":  # one prompt, n choices: one prefill, then n sequences decode together
                return decode_rate(await s.ask_n(tokens(model, plen, shift=1 + rep), 7, gen, n_seq))
            prompts = [tokens(model, plen, shift=1 + rep * N_PARALLEL + i) for i in range(n_seq)]
            answers = await asyncio.gather(*(s.ask(p, 7 + i, gen) for i, p in enumerate(prompts)))
            return n_seq * plen / (max(a.done for a in answers) - t)

    asyncio.run(measure(False, "decode", 1, 40, 16, 99))  # warm up
    rows = []
    for name, kind, n_seq, plen, gen in cost_cases(quick):
        runs: dict[str, list[float]] = {m: [] for m, _ in MODES}
        for rep in range(reps):
            for mode, det in MODES if rep % 2 == 0 else MODES[::-1]:
                runs[mode].append(asyncio.run(measure(det, kind, n_seq, plen, gen, rep)))
        r = CostRow(name, {m: statistics.median(x) for m, x in runs.items()}, runs)
        rows.append(r)
        print(
            f"  {name:44s} default {r.rates['default']:7.1f}  deterministic {r.rates['deterministic']:7.1f}"
            f"  ratio {r.ratio:.2f}   (runs: {' '.join(f'{v:.0f}' for v in runs['default'])} |"
            f" {' '.join(f'{v:.0f}' for v in runs['deterministic'])})",
            flush=True,
        )
    return rows
