"""Model id -> engine, built from settings. Knows which engine serves which kind of request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from faceplate.config import ModelSpec, Settings
from faceplate.engines.base import ChatEngine, EmbeddingEngine, embedding_capabilities
from faceplate.errors import InvalidRequest, ModelNotFound

log = logging.getLogger("faceplate.registry")

Engine = ChatEngine | EmbeddingEngine


def _size_text(path: str) -> str:
    """A model's size on disk (a file, or a folder's files) for the start-up progress lines."""
    p = Path(path)
    try:
        size = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    except OSError:
        return "size unknown"
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size} bytes"


def _load_line(spec: ModelSpec, index: int, total: int) -> str:
    fmt = spec.resolved_format()
    runtime = "llama.cpp" if fmt == "gguf" else fmt
    kind = spec.kind or ("embedding" if fmt == "sentence-transformers" else None)  # a GGUF's kind is read from it
    what = ", ".join(x for x in (kind, runtime, _size_text(spec.path)) if x)
    return f"loading model {index}/{total} {spec.id} ({what}) from {spec.path} ..."


def load_engine(spec: ModelSpec, settings: Settings) -> Engine:
    """Build the engine a spec names. Heavy imports stay inside, so the CLI starts fast."""
    fmt, kind = spec.resolved_format(), spec.resolved_kind()
    if fmt == "gguf" and spec.kind is None:
        from faceplate.engines.llamacpp.model import gguf_is_embedding_model

        kind = "embedding" if gguf_is_embedding_model(spec.path) else "chat"
    if fmt == "gguf" and kind == "chat":
        from faceplate.engines.llamacpp.engine import LlamaCppEngine

        return LlamaCppEngine(spec, settings)
    if fmt == "gguf" and kind == "embedding":
        from faceplate.engines.llamacpp.embedding import LlamaCppEmbeddingEngine

        return LlamaCppEmbeddingEngine(spec, settings)
    if fmt == "sentence-transformers" and kind == "embedding":
        from faceplate.engines.sentence import SentenceTransformerEngine

        return SentenceTransformerEngine(spec, settings)
    raise ValueError(f"model {spec.id}: a {fmt} model cannot serve {kind}")


class Registry:
    """Served models by id, and aliases: other names for them (``gpt-4o-mini`` -> a local model).

    An alias answers exactly like its model; responses carry the name the client asked for.
    """

    def __init__(self, engines: Iterable[Engine] = (), aliases: dict[str, str] | None = None) -> None:
        self._engines: dict[str, Engine] = {}
        self.created: dict[str, int] = {}
        self.aliases: dict[str, str] = {}
        for engine in engines:
            self.add(engine)
        for alias, target in (aliases or {}).items():
            self.alias(alias, target)

    def alias(self, name: str, target: str) -> None:
        if name in self._engines or name in self.aliases:
            raise ValueError(f"the alias {name!r} is already a model id or an alias")
        if target not in self._engines:
            raise ValueError(f"the alias {name!r} names {target!r}, which is not a served model")
        self.aliases[name] = target
        self.created[name] = self.created[target]

    def add(self, engine: Engine) -> None:
        if engine.model_id in self._engines:
            raise ValueError(f"two models share the id {engine.model_id!r}")
        self._engines[engine.model_id] = engine
        self.created[engine.model_id] = int(time.time())

    @classmethod
    async def load(cls, settings: Settings) -> Registry:
        """Load every configured model, one after another, with a progress line before and after each
        (loading can take seconds to minutes, and start-up is otherwise silent until "serving ...")."""
        reg = cls()
        specs = settings.effective_models()
        for i, spec in enumerate(specs, 1):
            fields = {"model": spec.id, "index": i, "total": len(specs)}
            log.info(_load_line(spec, i, len(specs)), extra={"fields": fields})
            started = time.monotonic()
            try:
                engine = await asyncio.to_thread(load_engine, spec, settings)
            except Exception:
                log.error("could not load model %s (%s)", spec.id, spec.path, extra={"fields": fields})
                raise
            seconds = round(time.monotonic() - started, 1)
            log.info("loaded %s (%s) in %.1f s", spec.id, engine.kind, seconds, extra={"fields": {**fields, "seconds": seconds}})
            reg.add(engine)
        if settings.upstreams:
            from faceplate.engines.remote.build import build_pools

            for remote in await build_pools(settings):
                reg.add(remote)
        for alias, target in settings.aliases.items():
            reg.alias(alias, target)
        return reg

    def ids(self) -> list[str]:
        """Every name a client may use: model ids, then aliases."""
        return [*self._engines, *self.aliases]

    def resolve(self, model: str) -> str:
        """The served model's id for a name (itself, or what an alias names)."""
        return self.aliases.get(model, model)

    def get(self, model: str) -> Engine:
        try:
            return self._engines[self.resolve(model)]
        except KeyError:
            raise ModelNotFound(model) from None

    def chat(self, model: str) -> ChatEngine:
        engine = self.get(model)
        if engine.kind != "chat":
            raise InvalidRequest(
                f"The model `{model}` is an embedding model and cannot generate text. Use /v1/embeddings.",
                param="model",
                code="model_not_supported",
            )
        return engine  # type: ignore[return-value]

    def embedding(self, model: str) -> EmbeddingEngine:
        engine = self.get(model)
        if engine.kind != "embedding":
            raise InvalidRequest(
                f"The model `{model}` is a chat model and does not support embeddings.",
                param="model",
                code="model_not_supported",
            )
        return engine  # type: ignore[return-value]

    async def start(self) -> None:
        for engine in self._engines.values():
            await engine.start()

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.close()

    def capabilities(self, model: str) -> dict[str, Any]:
        engine = self.get(model)
        if engine.kind == "embedding":
            return embedding_capabilities(engine)  # type: ignore[arg-type]
        return engine.capabilities()  # type: ignore[union-attr]

    def stats(self) -> dict[str, Any]:
        return {mid: {"kind": e.kind, **e.stats()} for mid, e in self._engines.items()}
