"""The llama.cpp chat engine: a loaded GGUF model, its chat template and its scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

import llama_cpp as L

from faceplate.config import ModelSpec, Settings
from faceplate.engines.base import GenerationEvent, GenerationRequest
from faceplate.engines.chat_template import ChatTemplate
from faceplate.engines.llamacpp.grammar import GrammarCompiler
from faceplate.engines.llamacpp.model import ContextSettings, LlamaModel
from faceplate.engines.llamacpp.scheduler import Scheduler

DEFAULT_CTX_CAP = 8192


class LlamaCppEngine:
    kind: Literal["chat"] = "chat"

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        self.model_id = spec.id
        self.model = LlamaModel(spec.path)
        n_parallel = spec.n_parallel or settings.n_parallel
        self.n_ctx = spec.n_ctx or min(self.model.n_ctx_train or DEFAULT_CTX_CAP, DEFAULT_CTX_CAP)
        self.vocab_size = self.model.n_vocab
        n_batch = spec.n_batch or 512
        cs = ContextSettings(
            n_ctx_per_seq=self.n_ctx,
            n_parallel=n_parallel,
            n_batch=n_batch,
            n_threads=spec.n_threads or settings.threads,
        )
        self.context_settings = cs
        self.ctx = self.model.new_context(cs)
        self.grammars = GrammarCompiler(self.model)
        max_queue = spec.max_queue if spec.max_queue is not None else settings.max_queue
        self.scheduler = Scheduler(
            self.model,
            self.ctx,
            n_parallel=n_parallel,
            n_ctx_per_seq=self.n_ctx,
            n_batch=n_batch,
            max_queue=4 * n_parallel if max_queue is None else max_queue,
            grammars=self.grammars,
        )
        special = {
            "bos_token": self.model.special_piece(self.model.bos) if self.model.bos >= 0 else "",
            "eos_token": self.model.special_piece(self.model.eos) if self.model.eos >= 0 else "",
        }
        self.template = ChatTemplate(self.model.meta("tokenizer.chat_template"), special)

    @property
    def template_supports_tools(self) -> bool:
        return self.template.supports_tools

    def render_chat(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None) -> str:
        return self.template.render(messages, tools=tools)

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> list[int]:
        return self.model.tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.model.pieces[t] for t in tokens).decode(errors="replace")

    def token_bytes(self, token: int) -> bytes:
        return self.model.pieces[token]

    async def prepare(self, request: GenerationRequest) -> None:
        """Compile the request's grammar against this vocabulary (off the event loop); a bad one is a 400."""
        c = request.params.constraint
        if c is not None:
            await asyncio.to_thread(self.grammars.compile, c.spec, c.param)

    def check_admission(self, request: GenerationRequest) -> None:
        self.scheduler.check_admission(request)

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        return self.scheduler.submit(request)

    def stats(self) -> dict[str, Any]:
        return {"n_ctx": self.n_ctx, **self.scheduler.stats()}

    async def start(self) -> None:
        self.scheduler.start()

    async def close(self) -> None:
        await asyncio.to_thread(self.scheduler.stop)
        L.llama_free(self.ctx)
        self.model.close()
