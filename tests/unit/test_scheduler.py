"""The continuous-batching scheduler, driven directly with the bundled SmolLM2-135M GGUF.

Each test builds its scheduler the way the engine does (LlamaModel -> new_context -> Scheduler)
over a small context, and generates a handful of tokens. Where a test needs the model's own
numbers it decodes with a separate plain llama.cpp context as the reference.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import json
import math
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from faceplate.config import bundled_chat_model_path
from faceplate.engines.base import Finished, SamplingParams, TextDelta, TokenLogprob
from faceplate.errors import EngineFailure, InvalidRequest

if TYPE_CHECKING:
    from faceplate.engines.llamacpp.model import LlamaModel
    from faceplate.engines.llamacpp.scheduler import Scheduler

MODEL_PATH = bundled_chat_model_path()
pytestmark = [
    pytest.mark.skipif(MODEL_PATH is None, reason="the bundled SmolLM2 GGUF is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"),
]

N_CTX = 256
N_BATCH = 256
THREADS = max(1, min(4, os.cpu_count() or 1))
TIMEOUT_S = 120  # a stuck job fails the test instead of hanging the run

REPETITIVE = "I like apples. I like apples. I like"
# Long enough (>= prompt_cache.MIN_TOKENS tokens) for the host prompt cache to take it.
LONG_PROMPT = (
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step. "
    "All that glitters is not gold. Once upon a time, in a land far away, there lived"
)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def compiler(model: LlamaModel) -> Any:
    from faceplate.engines.llamacpp.grammar import GrammarCompiler

    return GrammarCompiler(model)


def request(tokens: list[int] | tuple[int, ...], *, n: int = 1, grammar: Any = None, **params: Any) -> Any:
    from faceplate.engines.llamacpp.request import TokenRequest

    sampling = {"temperature": 0.0, "max_tokens": 8, **params}
    return TokenRequest(request_id="req", tokens=tuple(tokens), params=SamplingParams(**sampling), n=n, grammar=grammar)


@dataclass
class Output:
    text: dict[int, str] = field(default_factory=dict)
    logprobs: dict[int, list[TokenLogprob]] = field(default_factory=dict)
    finished: dict[int, Finished] = field(default_factory=dict)


async def collect(stream: AsyncIterator[Any]) -> Output:
    async def run() -> Output:
        out = Output()
        async for ev in stream:
            if isinstance(ev, TextDelta):
                out.text[ev.index] = out.text.get(ev.index, "") + ev.text
                out.logprobs.setdefault(ev.index, []).extend(ev.logprobs)
            elif isinstance(ev, Finished):
                out.finished[ev.index] = ev
        return out

    return await asyncio.wait_for(run(), TIMEOUT_S)


def tokenize(model: LlamaModel, text: str) -> list[int]:
    return model.tokenize(text, add_special=True, parse_special=False)


def reference_logits(
    model: LlamaModel, tokens: list[int], steps: int, pick: Callable[[np.ndarray, list[int]], int]
) -> list[tuple[int, np.ndarray]]:
    """Decode ``tokens`` in a fresh one-sequence context, then ``steps`` tokens chosen by ``pick(logits, so_far)``.

    Returns each chosen token with the (float64) logits it was chosen from.
    """
    import llama_cpp as L

    from faceplate.engines.llamacpp.model import ContextSettings

    ctx = model.new_context(ContextSettings(n_ctx_per_seq=N_CTX, n_parallel=1, n_batch=N_BATCH, n_threads=THREADS))
    try:
        out: list[tuple[int, np.ndarray]] = []
        feed = list(tokens)
        for _ in range(steps):
            arr = (L.llama_token * len(feed))(*feed)
            assert L.llama_decode(ctx, L.llama_batch_get_one(arr, len(feed))) == 0
            row = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(model.n_vocab,)).astype(np.float64)
            token = pick(row, [t for t, _ in out])
            out.append((token, row))
            if token in model.eog:
                break
            feed = [token]
        return out
    finally:
        L.llama_free(ctx)


def log_softmax(row: np.ndarray) -> np.ndarray:
    m = row.max()
    return row - (m + math.log(np.exp(row - m).sum()))


def detok(model: LlamaModel, tokens: list[int]) -> str:
    return b"".join(model.pieces[t] for t in tokens if t not in model.eog).decode(errors="replace")


# ---------------------------------------------------------------- 1. presence / frequency penalties


def _penalised_greedy(presence: float, frequency: float) -> Callable[[np.ndarray, list[int]], int]:
    """OpenAI's penalties over the generated tokens only, then argmax."""

    def pick(row: np.ndarray, generated: list[int]) -> int:
        row = row.copy()
        for token, count in Counter(generated).items():
            row[token] -= count * frequency + presence
        return int(np.argmax(row))

    return pick


@pytest.mark.parametrize(("presence", "frequency"), [(1.5, 0.0), (0.0, 0.8)], ids=["presence", "frequency"])
async def test_scheduler_penalties_follow_openai_semantics(
    model: LlamaModel, make_scheduler: Callable[..., Scheduler], presence: float, frequency: float
) -> None:
    """Defect 1: penalties used to crash (wrong llama_sampler_init_penalties arity); now they apply
    OpenAI's rule over generated tokens only, and change a repetitive greedy continuation."""
    prompt = tokenize(model, REPETITIVE)
    steps = 16
    # A fresh scheduler each, so neither run starts from the other's cached prefix.
    plain = await collect(make_scheduler(n_parallel=1).submit(request(prompt, max_tokens=steps)))
    penalised = await collect(
        make_scheduler(n_parallel=1).submit(
            request(prompt, max_tokens=steps, presence_penalty=presence, frequency_penalty=frequency)
        )
    )
    assert penalised.finished[0].completion_tokens > 0

    unpenalised_ref = reference_logits(model, prompt, steps, _penalised_greedy(0.0, 0.0))
    penalised_ref = reference_logits(model, prompt, steps, _penalised_greedy(presence, frequency))
    # Without penalties greedy repeats itself here (so the penalties have something to do) ...
    assert plain.text[0] == detok(model, [t for t, _ in unpenalised_ref])
    assert max(Counter(t for t, _ in unpenalised_ref).values()) >= 3
    # ... and the penalised output is exactly the reference rule's, which differs from it.
    assert penalised.text[0] == detok(model, [t for t, _ in penalised_ref])
    assert penalised.text[0] != plain.text[0]
    # The prompt is not penalised: the first token (nothing generated yet) is the plain one.
    assert penalised_ref[0][0] == unpenalised_ref[0][0]


# ---------------------------------------------------------------- 2. failure isolation


class _FakeMatcher:
    """Quacks like an llguidance LLMatcher: allows every token; consuming token ``fail_at`` raises."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.consumed = 0

    def deep_copy(self) -> _FakeMatcher:
        return _FakeMatcher(self.fail_at)

    def unsafe_compute_mask_ptr(self, ptr: int, nbytes: int) -> None:
        ctypes.memset(ptr, 0xFF, nbytes)

    def consume_token(self, token: int) -> bool:
        self.consumed += 1
        if self.consumed >= self.fail_at:
            raise RuntimeError("injected grammar failure")
        return True

    def is_stopped(self) -> bool:
        return False


class _UncopyableGrammar:
    def deep_copy(self) -> Any:
        raise RuntimeError("injected placement failure")


@pytest.fixture
def failing_sampler(monkeypatch: pytest.MonkeyPatch) -> int:
    """SamplerChain raises on its 3rd draw for any job whose seed is the returned value."""
    from faceplate.engines.llamacpp import scheduler as scheduler_module

    marker = 666_013
    real = scheduler_module.SamplerChain

    class Failing(real):  # type: ignore[misc, valid-type]
        def __init__(self, model: Any, params: SamplingParams, *, seed: int, **kw: Any) -> None:
            super().__init__(model, params, seed=seed, **kw)
            self.fails = params.seed == marker
            self.draws = 0

        def sample(self, ctx: Any, idx: int) -> int:
            self.draws += 1
            if self.fails and self.draws >= 3:
                raise RuntimeError("injected sampling failure")
            return super().sample(ctx, idx)

    monkeypatch.setattr(scheduler_module, "SamplerChain", Failing)
    return marker


@pytest.mark.parametrize("where", ["grammar", "placement", "sampling"])
async def test_scheduler_failure_of_one_job_spares_the_others(
    model: LlamaModel, make_scheduler: Callable[..., Scheduler], failing_sampler: int, where: str
) -> None:
    """Defect 2: an exception while placing, constraining or sampling one job fails that job only."""
    bystander = request(tokenize(model, LONG_PROMPT), max_tokens=12, ignore_eos=True)
    alone = await collect(make_scheduler(n_parallel=2).submit(bystander))

    faulty_tokens = tokenize(model, "Write a poem about the sea:")
    faulty = {
        "grammar": request(faulty_tokens, max_tokens=12, grammar=_FakeMatcher(fail_at=3), ignore_eos=True),
        "placement": request(faulty_tokens, max_tokens=12, grammar=_UncopyableGrammar(), ignore_eos=True),
        "sampling": request(faulty_tokens, max_tokens=12, seed=failing_sampler, ignore_eos=True),
    }[where]
    scheduler = make_scheduler(n_parallel=2, start=False)
    # Queued before the thread starts: both are admitted in the same step and run side by side.
    ok_stream = scheduler.submit(bystander)
    bad_stream = scheduler.submit(faulty)
    scheduler.start()
    ok, bad = await asyncio.gather(collect(ok_stream), collect(bad_stream), return_exceptions=True)

    assert isinstance(bad, EngineFailure), bad
    assert isinstance(ok, Output), ok
    assert ok.text == alone.text
    assert ok.finished[0].reason == "length" and ok.finished[0].completion_tokens == 12
    # The failed job's sequences are free and empty; the scheduler keeps serving.
    assert [bool(s.cache) for s in scheduler.slots].count(False) == 1, "the failed job's sequence keeps no KV"
    stats = scheduler.stats()
    assert stats["failed"] == 1 and stats["running_sequences"] == 0
    again = await collect(scheduler.submit(request(faulty_tokens, max_tokens=4)))
    assert again.finished[0].completion_tokens == 4


async def test_scheduler_decode_failure_fails_the_batch_not_the_queue(
    model: LlamaModel, make_scheduler: Callable[..., Scheduler], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 2: a failed llama_decode fails the jobs in that batch; a job still queued runs afterwards."""
    import llama_cpp as L

    real = L.llama_decode
    calls = {"n": 0}

    def decode_failing_once(ctx: Any, batch: Any) -> int:
        calls["n"] += 1
        return 1 if calls["n"] == 1 else real(ctx, batch)

    monkeypatch.setattr(L, "llama_decode", decode_failing_once)
    scheduler = make_scheduler(n_parallel=1, start=False)
    running = scheduler.submit(request(tokenize(model, "Hello"), max_tokens=3))
    queued = scheduler.submit(request(tokenize(model, "Hello there"), max_tokens=3))  # waits: one sequence only
    scheduler.start()
    first, second = await asyncio.gather(collect(running), collect(queued), return_exceptions=True)
    assert isinstance(first, EngineFailure), first
    assert isinstance(second, Output), second
    assert second.finished[0].completion_tokens == 3 and second.finished[0].cached_tokens == 0


# ---------------------------------------------------------------- 3. logprobs under a grammar


@pytest.mark.parametrize("n", [1, 2])
async def test_scheduler_logprobs_under_grammar_are_the_unmasked_ones(
    model: LlamaModel, compiler: Any, make_scheduler: Callable[..., Scheduler], n: int
) -> None:
    """Defect 3: logprobs came from the grammar-masked row (-inf alternatives, renormalised chosen token).

    With n=2 both choices start from one logits row, which each choice's grammar masks in place.
    """
    from faceplate.structured.constraints import json_schema

    spec = json_schema({"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]})
    grammar = compiler.compile(spec.spec, spec.param)
    prompt = tokenize(model, "Is the sky blue? Answer in JSON.")
    params: dict[str, Any] = {"temperature": 1.0, "seed": 7} if n > 1 else {}
    job = request(prompt, n=n, grammar=grammar, max_tokens=16, top_logprobs=5, **params)
    out = await collect(make_scheduler(n_parallel=n).submit(job))

    # The first token's numbers are the model's own, unconstrained log-softmax at the prompt's end.
    (_, row), *_ = reference_logits(model, prompt, 1, lambda r, _: int(np.argmax(r)))
    expected = log_softmax(row)
    best = np.sort(expected)[::-1][:5]
    for choice in range(n):
        assert json.loads(out.text[choice])["answer"] in ("yes", "no")
        lps = out.logprobs[choice]
        assert lps
        for lp in lps:
            assert math.isfinite(lp.logprob) and lp.logprob >= -9999.0
            assert len(lp.top) == 5
            assert all(math.isfinite(t.logprob) and t.logprob >= -9999.0 for t in lp.top)
            assert json.dumps([lp.logprob, *(t.logprob for t in lp.top)], allow_nan=False)
        first = lps[0]
        candidates = [t for t in range(model.n_vocab) if model.pieces[t] == bytes(first.bytes)]
        assert any(abs(first.logprob - expected[t]) < 1e-3 for t in candidates), (first, [expected[t] for t in candidates])
        assert [t.logprob for t in first.top] == pytest.approx(list(best), abs=1e-3)


async def test_scheduler_logprob_floor(model: LlamaModel) -> None:
    """Defect 3: a non-finite logprob (a -inf logit) is floored at OpenAI's -9999.0."""
    from faceplate.engines.llamacpp.logprobs import token_logprob

    row = np.full(model.n_vocab, -np.inf, dtype=np.float32)
    row[10], row[11] = 5.0, 4.0
    lp = token_logprob(model.pieces, row, 3, 5)
    assert lp.logprob == -9999.0
    assert [t.logprob for t in lp.top] == pytest.approx(
        [-math.log1p(math.exp(-1)), -1 - math.log1p(math.exp(-1))] + [-9999.0] * 3
    )
    assert token_logprob(model.pieces, row, 10, 0).logprob == pytest.approx(-math.log1p(math.exp(-1)))


# ---------------------------------------------------------------- 4. requests that could never run


async def test_scheduler_rejects_requests_that_would_wait_forever(
    model: LlamaModel, make_scheduler: Callable[..., Scheduler]
) -> None:
    """Defect 4: an empty prompt (and n < 1) used to be queued and never finish."""
    scheduler = make_scheduler(n_parallel=2)
    for bad, param in [(request(()), "prompt"), (request([1, 2], n=0), "n"), (request([1, 2], n=3), "n")]:
        with pytest.raises(InvalidRequest) as info:
            scheduler.check_admission(bad)
        assert info.value.param == param
        with pytest.raises(InvalidRequest) as info:
            scheduler.submit(bad)
        assert info.value.param == param
    with pytest.raises(InvalidRequest) as info:
        scheduler.submit(request([model.n_vocab + 5]))
    assert info.value.param == "prompt"
    assert scheduler.stats()["queued_requests"] == 0
    out = await collect(scheduler.submit(request(tokenize(model, "Hello"), max_tokens=3)))
    assert out.finished[0].completion_tokens <= 3


# ---------------------------------------------------------------- 5. cached tokens


async def test_scheduler_reports_cached_prompt_tokens(model: LlamaModel, make_scheduler: Callable[..., Scheduler]) -> None:
    """Defect 5: Finished.cached_tokens was always 0; it is the prompt tokens reused from the prefix cache."""
    prompt = tokenize(model, LONG_PROMPT)
    scheduler = make_scheduler(n_parallel=2)
    first = await collect(scheduler.submit(request(prompt, max_tokens=2)))
    second = await collect(scheduler.submit(request(prompt, max_tokens=2, n=2, temperature=1.0, seed=1)))
    assert first.finished[0].cached_tokens == 0
    assert second.finished[0].cached_tokens == len(prompt) - 1  # the last prompt token is always decoded
    assert second.finished[1].cached_tokens == second.finished[0].cached_tokens
    assert scheduler.stats()["prompt_tokens_reused"] == len(prompt) - 1
