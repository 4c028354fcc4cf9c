"""Continuous batching over one llama.cpp context, owned by one thread.

Each step the thread
1. takes new jobs and cancellations from the asyncio side,
2. admits waiting jobs into free slots (one slot = one llama.cpp sequence = one choice),
   reusing the longest cached prefix it can find,
3. builds one ``llama_batch``: one token for every decoding sequence, then prompt
   chunks for prefilling ones (bounded, so a long prompt does not freeze streams),
4. decodes, samples each sequence with its own sampler chain, and
5. hands each job its new text in one ``call_soon_threadsafe`` per step.

ctypes releases the GIL inside ``llama_decode``, so the event loop keeps serving HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as L
import numpy as np

from faceplate.engines.base import Finished, GenerationEvent, TextDelta, TokenLogprob, TopLogprob
from faceplate.engines.llamacpp.grammar import SequenceGrammar
from faceplate.engines.llamacpp.model import LlamaModel
from faceplate.engines.llamacpp.request import TokenRequest
from faceplate.engines.llamacpp.sampling import SamplerChain
from faceplate.engines.textstream import TextStream
from faceplate.errors import EngineFailure, InvalidRequest, Overloaded

log = logging.getLogger("faceplate.scheduler")

# Copying another sequence's KV stream costs a memcpy of the whole stream; only worth it
# when it saves a real amount of prefill.
MIN_SHARED_PREFIX_TO_COPY = 32


@dataclass(eq=False)
class Job:
    request: TokenRequest
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[list[GenerationEvent] | BaseException]
    cancelled: bool = False
    slots: list[Slot] = field(default_factory=list)
    finished: int = 0
    submitted: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class Slot:
    seq: int
    cache: list[int] = field(default_factory=list)  # tokens whose KV sits in this sequence, positions 0..
    job: Job | None = None
    choice: int = 0
    pending: list[int] = field(default_factory=list)  # prompt tokens still to prefill
    follower_of: Slot | None = None  # n > 1: waits for the leader's prefill, then copies it
    next_token: int | None = None  # sampled, to be decoded next step
    generated: int = 0
    reported: int = 0  # tokens already accounted for in a TextDelta
    sampler: SamplerChain | None = None
    grammar: SequenceGrammar | None = None
    text: TextStream | None = None
    batch_index: int = -1
    last_used: float = 0.0


@dataclass
class Counters:
    submitted: int = 0
    completed: int = 0
    cancelled: int = 0
    rejected: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    prompt_tokens_reused: int = 0
    generated_tokens: int = 0
    steps: int = 0


class JobStream:
    """A job's events. Closing it cancels the job, even if it was never iterated."""

    def __init__(self, scheduler: Scheduler, job: Job) -> None:
        self._scheduler = scheduler
        self._job = job
        self._events = scheduler._events(job)

    def __aiter__(self) -> JobStream:
        return self

    async def __anext__(self) -> GenerationEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        if self._job.finished < self._job.request.n:
            self._scheduler.cancel(self._job)
        await self._events.aclose()


class Scheduler:
    def __init__(
        self,
        model: LlamaModel,
        ctx: Any,
        *,
        n_parallel: int,
        n_ctx_per_seq: int,
        n_batch: int,
        max_queue: int,
        prefill_chunk: int = 128,
    ) -> None:
        self.model = model
        self.ctx = ctx
        self.mem = L.llama_get_memory(ctx)
        self.n_parallel = n_parallel
        self.n_ctx_per_seq = n_ctx_per_seq
        self.n_batch = n_batch
        self.max_queue = max_queue
        self.prefill_chunk = min(prefill_chunk, n_batch)
        self.slots = [Slot(seq=i) for i in range(n_parallel)]
        self.batch = L.llama_batch_init(n_batch, 0, 1)
        self.counters = Counters()
        self._cond = threading.Condition()
        self._inbox: deque[Job] = deque()
        self._waiting: deque[Job] = deque()
        self._queued = 0  # jobs not yet admitted (inbox + waiting), guarded by _cond
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"scheduler-{id(self):x}", daemon=True)

    # ------------------------------------------------------------------ asyncio side

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=30)
        L.llama_batch_free(self.batch)

    def check_admission(self, request: TokenRequest) -> None:
        if request.n > self.n_parallel:
            raise InvalidRequest(f"n={request.n} is more than this model can generate at once ({self.n_parallel}).", param="n")
        with self._cond:
            if self._queued >= self.max_queue:
                self.counters.rejected += 1
                raise Overloaded("The model is at capacity and its queue is full. Please retry shortly.", retry_after_s=1)

    def submit(self, request: TokenRequest) -> AsyncIterator[GenerationEvent]:
        """Queue a job now (raising Overloaded if the queue is full) and return its event stream."""
        self.check_admission(request)
        job = Job(request=request, loop=asyncio.get_running_loop(), queue=asyncio.Queue())
        with self._cond:
            self._inbox.append(job)
            self._queued += 1
            self.counters.submitted += 1
            self._cond.notify()
        return JobStream(self, job)

    async def _events(self, job: Job) -> AsyncIterator[GenerationEvent]:
        remaining = job.request.n
        try:
            while remaining:
                item = await job.queue.get()
                if isinstance(item, BaseException):
                    raise item
                for ev in item:
                    yield ev
                    if isinstance(ev, Finished):
                        remaining -= 1
        finally:
            if remaining:
                self.cancel(job)

    def cancel(self, job: Job) -> None:
        with self._cond:
            job.cancelled = True
            self._cond.notify()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            queued = self._queued
        return {
            "running_sequences": sum(1 for s in self.slots if s.job is not None),
            "queued_requests": queued,
            "n_parallel": self.n_parallel,
            "max_queue": self.max_queue,
            **self.counters.__dict__,
        }

    # ------------------------------------------------------------------ scheduler thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._inbox and not self._busy():
                    self._cond.wait()
                if self._stopping:
                    break
                self._waiting.extend(self._inbox)
                self._inbox.clear()
            try:
                self._step()
            except Exception as exc:  # keep serving: fail what was running, not the process
                log.exception("scheduler step failed")
                self._fail_all(EngineFailure(f"The engine failed: {exc}"))
        self._fail_all(EngineFailure("The server is shutting down."))

    def _busy(self) -> bool:
        return bool(self._waiting) or any(s.job is not None for s in self.slots)

    def _step(self) -> None:
        self._drop_cancelled()
        self._admit()
        outbox: dict[Job, list[GenerationEvent]] = {}
        if self._build_batch():
            rc = L.llama_decode(self.ctx, self.batch)
            self.counters.steps += 1
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            self._sample(outbox)
        for job, events in outbox.items():
            if events:
                job.loop.call_soon_threadsafe(job.queue.put_nowait, events)

    def _drop_cancelled(self) -> None:
        kept: deque[Job] = deque()
        dropped = 0
        for job in self._waiting:
            if job.cancelled:
                dropped += 1
                self.counters.cancelled += 1
            else:
                kept.append(job)
        self._waiting = kept
        if dropped:
            with self._cond:
                self._queued -= dropped
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled:
                if slot.choice == 0:
                    self.counters.cancelled += 1
                self._release(slot, keep_cache=False)

    # -- admission and prefix reuse

    def _admit(self) -> None:
        while self._waiting:
            job = self._waiting[0]
            free = [s for s in self.slots if s.job is None]
            if len(free) < job.request.n:
                return
            self._waiting.popleft()
            with self._cond:
                self._queued -= 1
            self._place(job, free)

    def _place(self, job: Job, free: list[Slot]) -> None:
        prompt = list(job.request.tokens)

        # Reuse a free sequence's cache only for a real shared prefix: a chat template's few
        # header tokens must not pull every request into one slot and evict a long cached
        # prefix (a shared system prompt). Otherwise take an empty slot, then the least recent.
        def fit(slot: Slot) -> tuple[int, bool, float]:
            shared = _common(slot.cache, prompt)
            return (shared if shared >= MIN_SHARED_PREFIX_TO_COPY else 0, not slot.cache, -slot.last_used)

        leader = max(free, key=fit)
        reused = _common(leader.cache, prompt)
        donor = max(self.slots, key=lambda s: _common(s.cache, prompt))
        shared = _common(donor.cache, prompt)
        if donor is not leader and shared >= reused + MIN_SHARED_PREFIX_TO_COPY:
            # Another sequence already holds a longer prefix (same system prompt, say): copy its stream.
            L.llama_memory_seq_rm(self.mem, leader.seq, -1, -1)
            L.llama_memory_seq_cp(self.mem, donor.seq, leader.seq, -1, -1)
            leader.cache = donor.cache[:]
            reused = shared
        reused = min(reused, len(prompt) - 1)  # the last prompt token is always decoded, for its logits
        L.llama_memory_seq_rm(self.mem, leader.seq, reused, -1)
        del leader.cache[reused:]
        self.counters.prompt_tokens += len(prompt)
        self.counters.prompt_tokens_reused += reused
        others = [s for s in free if s is not leader][: job.request.n - 1]
        for choice, slot in enumerate([leader, *others]):
            slot.job, slot.choice = job, choice
            slot.pending = prompt[reused:] if slot is leader else []
            slot.follower_of = None if slot is leader else leader
            slot.next_token, slot.generated, slot.reported, slot.batch_index = None, 0, 0, -1
            params = job.request.params
            seed = params.seed + choice if params.seed is not None else random.getrandbits(32)
            slot.sampler = SamplerChain(self.model, params, seed=seed)
            if job.request.grammar is not None:  # compiled by prepare: never compiled on this thread
                slot.grammar = SequenceGrammar(job.request.grammar.deep_copy(), self.model.n_vocab)
            slot.text = TextStream(params.stop)
            job.slots.append(slot)

    def _release(self, slot: Slot, *, keep_cache: bool) -> None:
        if not keep_cache:
            L.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
            slot.cache = []
        if slot.sampler is not None:
            slot.sampler.close()
        slot.job, slot.sampler, slot.text, slot.follower_of, slot.grammar = None, None, None, None, None
        slot.pending, slot.next_token, slot.batch_index = [], None, -1
        slot.last_used = time.monotonic()

    # -- one batch

    def _build_batch(self) -> bool:
        b = self.batch
        n = 0
        budget = self.n_batch
        decoding = [s for s in self.slots if s.job is not None and s.next_token is not None]
        for s in decoding:
            self._put(n, s.next_token, len(s.cache), s.seq, True)  # type: ignore[arg-type]
            s.cache.append(s.next_token)  # type: ignore[arg-type]
            s.next_token, s.batch_index = None, n
            n += 1
        budget -= n
        chunk_cap = self.prefill_chunk if decoding else budget
        for s in self.slots:
            if s.job is None or not s.pending or budget <= 0:
                continue
            take = s.pending[: min(budget, chunk_cap)]
            for i, tok in enumerate(take):
                last = i == len(take) - 1 and len(take) == len(s.pending)
                self._put(n, tok, len(s.cache), s.seq, last)
                s.cache.append(tok)
                if last:
                    s.batch_index = n
                n += 1
            del s.pending[: len(take)]
            budget -= len(take)
            chunk_cap = min(chunk_cap, budget)
        b.n_tokens = n
        return n > 0

    def _put(self, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        b = self.batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits

    # -- sampling

    def _sample(self, outbox: dict[Job, list[GenerationEvent]]) -> None:
        for s in self.slots:
            if s.job is None or s.batch_index < 0:
                continue
            idx, s.batch_index = s.batch_index, -1
            followers = [f for f in self.slots if f.follower_of is s]
            for f in followers:
                # n > 1: the prompt was prefilled once, in the leader's stream; copy it over.
                L.llama_memory_seq_rm(self.mem, f.seq, -1, -1)
                L.llama_memory_seq_cp(self.mem, s.seq, f.seq, -1, -1)
                f.cache, f.follower_of = s.cache[:], None
            for slot in (s, *followers):
                self._sample_one(slot, idx, outbox)

    def _sample_one(self, s: Slot, idx: int, outbox: dict[Job, list[GenerationEvent]]) -> None:
        job = s.job
        assert job is not None and s.sampler is not None and s.text is not None
        if s.grammar is not None:
            s.grammar.apply(self._logits(idx))
        token = s.sampler.sample(self.ctx, idx)
        s.generated += 1
        self.counters.generated_tokens += 1
        params = job.request.params
        events = outbox.setdefault(job, [])
        reason: str | None = None
        if token in self.model.eog and not params.ignore_eos:
            out = s.text.flush()
            reason = "stop"
        else:
            lp = self._logprob(idx, token, params.top_logprobs) if params.top_logprobs is not None else None
            out = s.text.feed(self.model.pieces[token], lp)
            grammar_done = s.grammar is not None and (not s.grammar.accept(token) or s.grammar.finished)
            if out.stopped or grammar_done:
                reason = "stop"
            elif params.max_tokens is not None and s.generated >= params.max_tokens or len(s.cache) + 1 >= self.n_ctx_per_seq:
                reason = "length"
            if reason is not None and not out.stopped:  # the held-back text is final now
                tail = s.text.flush()
                out.text += tail.text
                out.logprobs += tail.logprobs
        if out.text or out.logprobs:
            events.append(TextDelta(s.choice, out.text, tuple(out.logprobs), s.generated - s.reported))
            s.reported = s.generated
        if reason is None:
            s.next_token = token
            return
        events.append(Finished(s.choice, reason, s.generated))  # type: ignore[arg-type]
        job.finished += 1
        if job.finished == job.request.n:
            self.counters.completed += 1
        self._release(s, keep_cache=True)

    def _logits(self, idx: int) -> np.ndarray:
        """The logits row of batch position ``idx``, as a writable view of llama.cpp's buffer."""
        return np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, idx), shape=(self.model.n_vocab,))

    def _logprob(self, idx: int, token: int, top: int) -> TokenLogprob:
        logits = self._logits(idx)
        m = float(logits.max())
        lse = m + float(np.log(np.exp(logits - m).sum()))
        alts: tuple[TopLogprob, ...] = ()
        if top:
            best = np.argpartition(-logits, top)[:top]
            best = best[np.argsort(-logits[best])]
            alts = tuple(self._top(int(t), float(logits[t]) - lse) for t in best)
        piece = self.model.pieces[token]
        return TokenLogprob(piece.decode(errors="replace"), float(logits[token]) - lse, tuple(piece), alts)

    def _top(self, token: int, logprob: float) -> TopLogprob:
        piece = self.model.pieces[token]
        return TopLogprob(piece.decode(errors="replace"), logprob, tuple(piece))

    def _fail_all(self, exc: BaseException) -> None:
        jobs = {s.job for s in self.slots if s.job is not None} | set(self._waiting)
        with self._cond:
            jobs |= set(self._inbox)
            self._inbox.clear()
            self._queued = 0
        self._waiting.clear()
        for s in self.slots:
            if s.job is not None:
                self._release(s, keep_cache=False)
        for job in jobs:
            self.counters.failed += 1
            job.loop.call_soon_threadsafe(job.queue.put_nowait, exc)


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
