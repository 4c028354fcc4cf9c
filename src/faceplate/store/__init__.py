"""The store: API keys, usage, stored responses and conversations, files' metadata; SQLite by
default, PostgreSQL by URL.

``Store.open(url)`` creates the engine (and the SQLite file's folder), applies pending
migrations, and hands out the per-table stores. Files' bytes live beside it, in a blob store
(``store.blobs``). Batches and their request lines too (``store.batches``).
"""

from __future__ import annotations

from sqlalchemy import Engine, text

from faceplate.store.batches import BatchRow, BatchStore, ClaimedRequest
from faceplate.store.conversations import Conversation, ConversationStore, DuplicateItem
from faceplate.store.db import normalize_url, open_engine
from faceplate.store.files import FileStore, StoredFile
from faceplate.store.keys import ApiKey, CachedKeyLookup, KeyStore, generate_secret, parse_duration, parse_time
from faceplate.store.migrations import migrate
from faceplate.store.responses import BrokenChain, ResponseStore, StoredResponse, Turn
from faceplate.store.usage import UsageStore


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.keys = KeyStore(engine)
        self.usage = UsageStore(engine)
        self.responses = ResponseStore(engine)
        self.conversations = ConversationStore(engine)
        self.files = FileStore(engine)
        self.batches = BatchStore(engine)

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True) -> Store:
        engine = open_engine(url)
        if migrate_schema:
            migrate(engine)
        return cls(engine)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def ping(self) -> None:
        """Raise if the database cannot be reached (readiness)."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


__all__ = [
    "ApiKey",
    "BatchRow",
    "BatchStore",
    "BrokenChain",
    "CachedKeyLookup",
    "ClaimedRequest",
    "Conversation",
    "ConversationStore",
    "DuplicateItem",
    "FileStore",
    "KeyStore",
    "ResponseStore",
    "Store",
    "StoredFile",
    "StoredResponse",
    "Turn",
    "UsageStore",
    "generate_secret",
    "normalize_url",
    "parse_duration",
    "parse_time",
]
