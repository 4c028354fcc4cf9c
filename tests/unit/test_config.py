from pathlib import Path

import pytest

from faceplate.config import ConfigError, ModelSpec, load_settings


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text('port = 9000\nhost = "127.0.0.2"\nthreads = 3\n')
    s = load_settings(str(cfg), environ={"FACEPLATE_PORT": "9100", "FACEPLATE_API_KEYS": "a, b"}, overrides={"threads": 1})
    assert (s.host, s.port, s.threads, s.api_keys) == ("127.0.0.2", 9100, 1, ["a", "b"])


def test_models_from_env_and_cli_forms() -> None:
    s = load_settings(environ={"FACEPLATE_MODELS": "mine=/m/x.gguf,/m/Other-Model.gguf"})
    assert [(m.id, m.path) for m in s.models] == [("mine", "/m/x.gguf"), ("other-model", "/m/Other-Model.gguf")]
    assert ModelSpec.parse_cli("/models/emb").resolved_kind() == "embedding"
    assert ModelSpec.parse_cli("a=/x.gguf").resolved_kind() == "chat"


def test_bad_values_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(environ={"FACEPLATE_PORT": "not-a-port"})
    with pytest.raises(ConfigError):
        load_settings(str(tmp_path / "missing.toml"), environ={})
    with pytest.raises(ConfigError):
        load_settings(environ={}, overrides={"bogus": 1})


def test_bundled_models_are_defaults() -> None:
    ids = [m.id for m in load_settings(environ={}).effective_models()]
    assert "all-minilm-l6-v2" in ids
