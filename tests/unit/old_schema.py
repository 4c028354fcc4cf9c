"""Rows written the way an older schema holds them: migration tests run the current store code only
once the database is at the current version."""

from __future__ import annotations

from sqlalchemy import Engine, text


def insert_key(engine: Engine, key_id: str, name: str = "alice") -> None:
    """An api_keys row with the columns of migration 1 only."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO api_keys (id, name, key_hash, prefix, models, rpm, tpm, created_at, expires_at, revoked_at) "
                "VALUES (:id, :name, :hash, 'sk-fp-xxxx', NULL, NULL, NULL, 1700000000, NULL, NULL)"
            ),
            {"id": key_id, "name": name, "hash": key_id.rjust(64, "0")},
        )


def key_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT id FROM api_keys ORDER BY id")))
