"""Continuous batching over one llama.cpp context, owned by one thread.

Each step the thread
1. takes new jobs and cancellations from the asyncio side,
2. admits waiting jobs into free slots (one slot = one llama.cpp sequence = one choice),
   reusing the longest cached prefix it can find (a slot's, or the host prompt cache's):
   interactive jobs first, in arrival order; a batch job only while no interactive job waits
   and batch work holds fewer than ``batch_slots`` slots (so a client never waits behind a
   Batch API line for a slot),
3. builds one ``llama_batch``: one token for every decoding sequence, then prompt
   chunks for prefilling ones (bounded, so a long prompt does not freeze streams;
   interactive prompts first, batch prompts only in a step with none),
4. decodes, samples each sequence with its own sampler chain, and
5. hands each job its new text in one ``call_soon_threadsafe`` per step.

A failure while placing, sampling or constraining one job fails that job alone (its stream
raises EngineFailure, its sequences are freed and their KV cleared); only a failed
``llama_decode``, which concerns the whole batch, fails every running job.

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
from typing import Any

import llama_cpp as L
import numpy as np

from faceplate.engines.base import Finished, GenerationEvent, Priority, TextDelta
from faceplate.engines.llamacpp.batch import Batch
from faceplate.engines.llamacpp.grammar import SequenceGrammar
from faceplate.engines.llamacpp.job import Job, JobStream
from faceplate.engines.llamacpp.logprobs import token_logprob
from faceplate.engines.llamacpp.model import LlamaModel
from faceplate.engines.llamacpp.prefix import pack, take_prefix
from faceplate.engines.llamacpp.prompt_cache import HostPromptCache, copy_sequence
from faceplate.engines.llamacpp.request import TokenRequest
from faceplate.engines.llamacpp.sampling import SamplerChain
from faceplate.engines.llamacpp.slot import Counters, Slot
from faceplate.engines.textstream import TextStream
from faceplate.errors import ContextLengthExceeded, EngineFailure, InvalidRequest, Overloaded, ServiceUnavailable

log = logging.getLogger("faceplate.scheduler")

Outbox = dict[Job, list[GenerationEvent]]


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
        deterministic: bool = False,
        batch_slots: int | None = None,
        prompt_cache_bytes: int = 0,
    ) -> None:
        self.model = model
        self.ctx = ctx
        self.mem = L.llama_get_memory(ctx)
        self.n_parallel = n_parallel
        self.n_ctx_per_seq = n_ctx_per_seq
        self.n_batch = n_batch
        self.max_queue = max_queue
        # most slots batch jobs hold at once (a lone batch job may exceed it, or it could never run)
        self.batch_slots = max(1, min(n_parallel, batch_slots if batch_slots is not None else n_parallel // 2))
        self.slots = [Slot(seq=i) for i in range(n_parallel)]
        self.batch = Batch(n_batch, prefill_chunk, deterministic=deterministic)
        self._threads = (int(L.llama_n_threads(ctx)), int(L.llama_n_threads_batch(ctx)))
        self._lone_threads = self._threads[0]
        self.counters = Counters()
        self.host_cache = HostPromptCache(prompt_cache_bytes)
        self._cond = threading.Condition()
        self._inbox: deque[Job] = deque()
        self._waiting: deque[Job] = deque()
        # jobs not yet admitted (inbox + waiting) by priority, guarded by _cond: each has its own
        # max_queue, so queued batch lines never make a client's request a 503
        self._queued: dict[str, int] = {"interactive": 0, "batch": 0}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"scheduler-{id(self):x}", daemon=True)

    # ------------------------------------------------------------------ asyncio side

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        else:  # never started: nobody else will tell the queued jobs
            self._fail_all(ServiceUnavailable("The model is shutting down."))
        self.batch.free()

    def check_admission(self, request: TokenRequest) -> None:
        """Raise now what ``submit`` would raise: a request that can never run, or a full queue."""
        self._validate(request)
        with self._cond:
            self._check_capacity("interactive")

    def submit(self, request: TokenRequest, priority: Priority = "interactive") -> AsyncIterator[GenerationEvent]:
        """Queue a job now (raising Overloaded if the queue is full) and return its event stream."""
        self._validate(request)
        job = Job(request, asyncio.get_running_loop(), priority)
        with self._cond:
            self._check_capacity(priority)
            self._inbox.append(job)
            self._queued[priority] += 1
            self.counters.submitted += 1
            self._cond.notify()
        return JobStream(job, self.cancel)

    def _validate(self, request: TokenRequest) -> None:
        # Every check here stands for a job that would otherwise wait forever or break the batch.
        tokens = request.tokens
        if not tokens:
            raise InvalidRequest("The prompt is empty: it must have at least one token.", param="prompt")
        if request.n < 1:
            raise InvalidRequest(f"n={request.n} must be at least 1.", param="n")
        if request.n > self.n_parallel:
            raise InvalidRequest(f"n={request.n} is more than this model can generate at once ({self.n_parallel}).", param="n")
        if len(tokens) > self.n_ctx_per_seq:
            raise ContextLengthExceeded(len(tokens), self.n_ctx_per_seq, param="prompt")
        if min(tokens) < 0 or max(tokens) >= self.model.n_vocab:
            raise InvalidRequest(
                f"The prompt has a token id outside the vocabulary (0..{self.model.n_vocab - 1}).", param="prompt"
            )

    def _check_capacity(self, priority: Priority) -> None:  # holds _cond
        if self._stopping:
            raise ServiceUnavailable("The model is shutting down.")
        if self._queued[priority] >= self.max_queue:
            self.counters.rejected += 1
            raise Overloaded("The model is at capacity and its queue is full. Please retry shortly.", retry_after_s=1)

    def cancel(self, job: Job) -> None:
        with self._cond:
            job.cancelled = True
            self._cond.notify()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            queued = dict(self._queued)
        return {
            "running_sequences": sum(1 for s in self.slots if s.job is not None),
            "batch_sequences": self._batch_held(),
            "queued_requests": queued["interactive"] + queued["batch"],
            "queued_batch_requests": queued["batch"],
            "n_parallel": self.n_parallel,
            "batch_slots": self.batch_slots,
            "max_queue": self.max_queue,
            **self.counters.__dict__,
            **self.host_cache.stats(),
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
            except Exception:  # a fault outside any one job: fail what was running, keep serving
                log.exception("scheduler step failed")
                self._fail_running(EngineFailure("The model failed while generating this response."))
        self._fail_all(ServiceUnavailable("The model is shutting down."))

    def _busy(self) -> bool:
        return bool(self._waiting) or any(s.job is not None for s in self.slots)

    def _step(self) -> None:
        self._drop_cancelled()
        outbox: Outbox = {}
        try:
            self._admit(outbox)
            if pack(self.ctx, self.mem, self.slots, self.host_cache):
                self.counters.sequences_moved += 1
            if self.batch.fill(self.slots):
                self._set_threads(self.batch.threads_for_lone_tokens(self._threads[0]))
                began = time.perf_counter()
                rc = L.llama_decode(self.ctx, self.batch.batch)
                self.counters.steps += 1
                if rc != 0:  # the whole batch: no sequence in it can be trusted to hold its state
                    log.error("llama_decode returned %d", rc)
                    self._fail_running(EngineFailure("The model failed while generating this response."))
                    return
                self._sample(outbox)
                self.counters.step_seconds += time.perf_counter() - began
        finally:
            for job, events in outbox.items():
                if events and not job.failed:
                    job.post(events)

    def _set_threads(self, lone: int) -> None:
        if lone != self._lone_threads:
            L.llama_set_n_threads(self.ctx, lone, self._threads[1])
            self._lone_threads = lone

    def _drop_cancelled(self) -> None:
        kept: deque[Job] = deque()
        dropped: list[Job] = []
        for job in self._waiting:
            if job.cancelled:
                dropped.append(job)
                self.counters.cancelled += 1
            else:
                kept.append(job)
        self._waiting = kept
        if dropped:
            with self._cond:
                for job in dropped:
                    self._queued[job.priority] -= 1
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled:
                if slot.choice == 0:
                    self.counters.cancelled += 1
                self._release(slot, keep_cache=False)

    # -- failures

    def _fail_job(self, job: Job, exc: BaseException, outbox: Outbox) -> None:
        """One job broke: fail it alone, free its sequences and clear their KV."""
        log.error("request %s failed", job.request.request_id, exc_info=exc)
        outbox.pop(job, None)
        self._fail(job, EngineFailure("The model failed while generating this response."))

    def _fail_running(self, exc: BaseException) -> None:
        for job in {s.job for s in self.slots if s.job is not None}:
            self._fail(job, exc)

    def _fail_all(self, exc: BaseException) -> None:
        self._fail_running(exc)
        with self._cond:
            waiting = [*self._waiting, *self._inbox]
            self._inbox.clear()
            self._waiting.clear()
            self._queued = {"interactive": 0, "batch": 0}
        for job in waiting:
            self._fail(job, exc)

    def _fail(self, job: Job, exc: BaseException) -> None:
        job.failed = True
        for s in self.slots:
            if s.job is job:
                self._release(s, keep_cache=False)
        self.counters.failed += 1
        job.post(exc)

    # -- admission and prefix reuse

    def _admit(self, outbox: Outbox) -> None:
        while (job := self._next_job()) is not None:
            self._waiting.remove(job)
            with self._cond:
                self._queued[job.priority] -= 1
            try:
                self._place(job, [s for s in self.slots if s.job is None])
            except Exception as exc:
                self._fail_job(job, exc, outbox)

    def _next_job(self) -> Job | None:
        """The job to admit now, if any: the oldest interactive job when its slots are free (nothing
        jumps it, so a job with n > 1 is not starved by smaller ones); else, with no interactive job
        waiting, the oldest batch job when it fits and batch work stays within ``batch_slots``."""
        free = sum(1 for s in self.slots if s.job is None)
        first_batch: Job | None = None
        for job in self._waiting:
            if job.priority == "interactive":
                return job if free >= job.request.n else None
            if first_batch is None:
                first_batch = job
        if first_batch is None or free < first_batch.request.n:
            return None
        held = self._batch_held()
        return first_batch if held == 0 or held + first_batch.request.n <= self.batch_slots else None

    def _batch_held(self) -> int:
        return sum(1 for s in self.slots if s.job is not None and s.job.priority == "batch")

    def _place(self, job: Job, free: list[Slot]) -> None:
        prompt = list(job.request.tokens)
        leader, reused = take_prefix(self.ctx, self.mem, self.slots, free, prompt, self.host_cache)
        self.counters.prompt_tokens += len(prompt)
        self.counters.prompt_tokens_reused += reused
        job.cached_tokens = reused
        slots = [leader, *[s for s in free if s is not leader][: job.request.n - 1]]
        for choice, slot in enumerate(slots):  # claim every slot first, so a failure below frees them all
            slot.job, slot.choice = job, choice
            slot.pending = prompt[reused:] if slot is leader else []
            slot.follower_of = None if slot is leader else leader
            slot.next_token, slot.generated, slot.reported, slot.batch_index = None, 0, 0, -1
            job.slots.append(slot)
        params = job.request.params
        for slot in slots:
            seed = params.seed + slot.choice if params.seed is not None else random.getrandbits(32)
            slot.sampler = SamplerChain(self.model, params, seed=seed, history=self.n_ctx_per_seq)
            if job.request.grammar is not None:  # compiled by prepare: never compiled on this thread
                slot.grammar = SequenceGrammar(job.request.grammar.deep_copy(), self.model.n_vocab)
            slot.text = TextStream(params.stop)

    def _release(self, slot: Slot, *, keep_cache: bool) -> None:
        if not keep_cache:
            L.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
            slot.cache = []
        slot.reset()

    # -- sampling

    def _sample(self, outbox: Outbox) -> None:
        for s in self.slots:
            job = s.job
            if job is None or s.batch_index < 0:
                continue
            idx, s.batch_index = s.batch_index, -1
            followers = [f for f in self.slots if f.follower_of is s]
            for f in followers:
                # n > 1: the prompt was prefilled once, in the leader's stream; copy it over.
                copy_sequence(self.ctx, self.mem, s.seq, f.seq)
                f.cache, f.follower_of = s.cache[:], None
            try:
                # Logprobs come from the model's own distribution: a grammar masks the row in place,
                # so a constrained job that wants them gets a copy taken before any mask.
                raw: np.ndarray | None = None
                if job.request.params.top_logprobs is not None:
                    raw = self._logits(idx)
                    if s.grammar is not None:
                        raw = raw.copy()
                for slot in (s, *followers):
                    self._sample_one(slot, idx, raw, outbox)
            except Exception as exc:
                self._fail_job(job, exc, outbox)

    def _sample_one(self, s: Slot, idx: int, raw: np.ndarray | None, outbox: Outbox) -> None:
        job = s.job
        assert job is not None and s.sampler is not None and s.text is not None
        if s.grammar is not None:
            s.grammar.apply(self._logits(idx))
        token = s.sampler.sample(self.ctx, idx)
        s.generated += 1
        self.counters.generated_tokens += 1
        params = job.request.params
        limit = job.request.max_new_tokens or params.max_tokens  # prepare sets the first: max_tokens or the room left
        events = outbox.setdefault(job, [])
        reason: str | None = None
        if token in self.model.eog and not params.ignore_eos:
            out = s.text.flush()
            reason = "stop"
        else:
            lp = token_logprob(self.model.pieces, raw, token, params.top_logprobs or 0) if raw is not None else None
            out = s.text.feed(self.model.pieces[token], lp)
            grammar_done = s.grammar is not None and (not s.grammar.accept(token) or s.grammar.finished)
            if out.stopped or grammar_done:
                reason = "stop"
            elif limit is not None and s.generated >= limit or len(s.cache) + 1 >= self.n_ctx_per_seq:
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
        events.append(Finished(s.choice, reason, s.generated, job.cached_tokens))  # type: ignore[arg-type]
        job.finished += 1
        if job.finished == job.request.n:
            self.counters.completed += 1
        self._release(s, keep_cache=True)

    def _logits(self, idx: int) -> np.ndarray:
        """The logits row of batch position ``idx``, as a writable view of llama.cpp's buffer."""
        return np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, idx), shape=(self.model.n_vocab,))
