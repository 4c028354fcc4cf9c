"""Start-up progress: Registry.load says which model it is loading (n of total, kind, runtime, size)
and how long each took, in text and in JSON logs. Fake engines stand in for the real ones."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from faceplate.config import ModelSpec, Settings
from faceplate.engines import registry as registry_mod
from faceplate.engines.fake import FakeEngine
from faceplate.engines.fake_embedding import FakeEmbeddingEngine
from faceplate.logs import TEXT_FORMAT, JsonFormatter


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    gguf = tmp_path / "tiny-chat.gguf"
    gguf.write_bytes(b"\0" * 3_000_000)
    folder = tmp_path / "minilm"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\0" * 2_000_000)
    (folder / "sub" / "vocab.txt").write_bytes(b"\0" * 1_000_000)

    def fake_load(spec: ModelSpec, settings: Settings) -> FakeEngine | FakeEmbeddingEngine:
        return FakeEmbeddingEngine(spec.id) if spec.resolved_format() == "sentence-transformers" else FakeEngine(spec.id)

    monkeypatch.setattr(registry_mod, "load_engine", fake_load)
    return Settings(
        models=[
            ModelSpec(id="tiny-chat", path=str(gguf)),
            ModelSpec(id="minilm", path=str(folder), kind="embedding"),
        ]
    )


async def test_one_line_before_and_after_each_model(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="faceplate.registry"):  # info: the default --log-level
        reg = await registry_mod.Registry.load(settings)
    assert reg.ids() == ["tiny-chat", "minilm"]
    lines = [r.getMessage() for r in caplog.records if r.name == "faceplate.registry"]
    assert len(lines) == 4, lines
    assert lines[0].startswith("loading model 1/2 tiny-chat (llama.cpp, 3 MB) from ")
    assert lines[1].startswith("loaded tiny-chat (chat) in ") and lines[1].endswith(" s")
    assert lines[2].startswith("loading model 2/2 minilm (embedding, sentence-transformers, 3 MB) from ")
    assert lines[3].startswith("loaded minilm (embedding) in ")


async def test_the_lines_carry_fields_in_json_and_read_plainly_in_text(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="faceplate.registry"):
        await registry_mod.Registry.load(settings)
    records = [r for r in caplog.records if r.name == "faceplate.registry"]
    first, done = (json.loads(JsonFormatter().format(r)) for r in records[:2])
    assert first["level"] == "info" and first["message"].startswith("loading model 1/2 tiny-chat")
    assert (first["model"], first["index"], first["total"]) == ("tiny-chat", 1, 2)
    assert done["model"] == "tiny-chat" and isinstance(done["seconds"], float)
    text = logging.Formatter(TEXT_FORMAT).format(records[0])
    assert " INFO faceplate.registry: loading model 1/2 tiny-chat (" in text


async def test_a_model_that_fails_to_load_is_named(
    settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(spec: ModelSpec, settings: Settings) -> FakeEngine:
        raise ValueError("not a GGUF file")

    monkeypatch.setattr(registry_mod, "load_engine", broken)
    with caplog.at_level(logging.INFO, logger="faceplate.registry"), pytest.raises(ValueError, match="not a GGUF"):
        await registry_mod.Registry.load(settings)
    assert "could not load model tiny-chat" in caplog.records[-1].getMessage()
