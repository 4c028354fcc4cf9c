"""The llama.cpp chat engine: a loaded GGUF model, its chat template, grammars and scheduler.

Everything token-level stays in here: ``prepare_*`` plans tools and formats, renders the
template, tokenizes and compiles the grammar (in the caller's CPU pool, never on the event
loop or the scheduler thread) into a ``TokenRequest``; ``generate`` queues it and turns
tool-call markup in the output into ``ToolCallDelta`` events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

import llama_cpp as L

from faceplate.config import ModelSpec, Settings
from faceplate.engines.base import (
    ChatRequest,
    CompletionRequest,
    CpuPool,
    GenerationEvent,
    Priority,
    SamplingParams,
    chat_capabilities,
)
from faceplate.engines.chat_template import ChatTemplate
from faceplate.engines.fit import check_prompt_ids, fit
from faceplate.engines.llamacpp.grammar import GrammarCompiler
from faceplate.engines.llamacpp.model import ContextSettings, LlamaModel
from faceplate.engines.llamacpp.prompt import PromptBuilder
from faceplate.engines.llamacpp.request import TokenRequest
from faceplate.engines.llamacpp.scheduler import Scheduler
from faceplate.engines.toolcall_events import ToolCallEvents
from faceplate.structured.plan import plan

DEFAULT_CTX_CAP = 8192


class LlamaCppEngine:
    kind: Literal["chat"] = "chat"

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        self.model_id = spec.id
        self.model = LlamaModel(spec.path)
        self.n_parallel = spec.n_parallel or settings.n_parallel
        self.n_ctx = spec.n_ctx or min(self.model.n_ctx_train or DEFAULT_CTX_CAP, DEFAULT_CTX_CAP)
        n_batch = spec.n_batch or 512
        cs = ContextSettings(
            n_ctx_per_seq=self.n_ctx,
            n_parallel=self.n_parallel,
            n_batch=n_batch,
            n_threads=spec.n_threads or settings.threads,
        )
        self.ctx = self.model.new_context(cs)
        self.grammars = GrammarCompiler(self.model)
        max_queue = spec.max_queue if spec.max_queue is not None else settings.max_queue
        self.max_jobs = 4 * self.n_parallel if max_queue is None else max_queue
        self.scheduler = Scheduler(
            self.model,
            self.ctx,
            n_parallel=self.n_parallel,
            n_ctx_per_seq=self.n_ctx,
            n_batch=n_batch,
            max_queue=self.max_jobs,
            deterministic=settings.deterministic,
            batch_slots=settings.batch_slots,
            prompt_cache_bytes=settings.prompt_cache_mib << 20,
        )
        special = {
            "bos_token": self.model.special_piece(self.model.bos) if self.model.bos >= 0 else "",
            "eos_token": self.model.special_piece(self.model.eos) if self.model.eos >= 0 else "",
        }
        self.template = ChatTemplate(self.model.meta("tokenizer.chat_template"), special)
        self.prompts = PromptBuilder(self.model, self.template)
        separator = self.model.tokenize("<|endoftext|>", add_special=False, parse_special=True)
        # The token a document starts after: the GPT-style separator if the vocabulary has one.
        self._document_start = separator[0] if len(separator) == 1 else max(self.model.bos, self.model.eos)

    # -- prepare: CPU work, in the caller's pool

    async def prepare_chat(self, request: ChatRequest, cpu: CpuPool) -> TokenRequest:
        return await cpu.run(self._prepare_chat, request)

    async def prepare_completion(self, request: CompletionRequest, cpu: CpuPool) -> TokenRequest:
        return await cpu.run(self._prepare_completion, request)

    def _prepare_chat(self, request: ChatRequest) -> TokenRequest:
        p = plan(request, template_supports_tools=self.template.supports_tools)
        tokens = self.prompts.tokens(p.messages, p.template_tools)
        max_new = self._fit(request.sampling, request.n, len(tokens), param="messages")
        grammar = self.grammars.compile(p.constraint.spec, p.constraint.param) if p.constraint else None
        return TokenRequest(
            request.request_id,
            tuple(tokens),
            request.sampling,
            request.n,
            grammar,
            tool_calls=p.tool_calls,
            max_new_tokens=max_new,
        )

    def _prepare_completion(self, request: CompletionRequest) -> TokenRequest:
        if isinstance(request.prompt, str):
            tokens = self.model.tokenize(request.prompt, add_special=True, parse_special=False)
        else:
            check_prompt_ids(request.prompt, self.model.n_vocab)
            tokens = list(request.prompt)
        echo = self.detokenize(tokens) if request.echo else ""
        if not tokens:  # no prompt: generate as from the start of a new document, as OpenAI does
            tokens = [self._document_start]
        max_new = self._fit(request.sampling, request.n, len(tokens), param="prompt")
        return TokenRequest(
            request.request_id, tuple(tokens), request.sampling, request.n, echo_text=echo, max_new_tokens=max_new
        )

    def _fit(self, params: SamplingParams, n: int, prompt_len: int, *, param: str) -> int:
        return fit(params, n, prompt_len, n_ctx=self.n_ctx, n_vocab=self.model.n_vocab, max_n=self.n_parallel, param=param)

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.model.pieces[t] for t in tokens).decode(errors="replace")

    # -- generate

    def generate(self, prepared: TokenRequest, priority: Priority = "interactive") -> AsyncIterator[GenerationEvent]:  # type: ignore[override]
        events = self.scheduler.submit(prepared, priority)
        return ToolCallEvents(events, prepared.n) if prepared.tool_calls else events

    def capabilities(self) -> dict[str, Any]:
        return chat_capabilities(context_length=self.n_ctx, max_n=self.n_parallel)

    def stats(self) -> dict[str, Any]:
        return {"n_ctx": self.n_ctx, **self.scheduler.stats()}

    async def start(self) -> None:
        self.scheduler.start()

    async def close(self) -> None:
        await asyncio.to_thread(self.scheduler.stop)
        L.llama_free(self.ctx)
        self.model.close()
