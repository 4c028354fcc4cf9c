"""Upstreams in the settings: ``ID=[KIND+]URL`` on the command line and in FACEPLATE_UPSTREAMS, ``[[upstreams]]`` in TOML."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from faceplate.config import DEFAULT_CHAT_MODEL_ID, ConfigError, bundled_chat_model_path, load_settings, upstream_from_cli
from faceplate.config_upstreams import RoutingSettings, UpstreamSpec

SECRET = "sk-upstream-SECRET-0123456789"


# ---------------------------------------------------------------- ID=[KIND+]URL


@pytest.mark.parametrize(
    ("text", "ident", "kind", "url"),
    [
        ("llama=http://h:1", "llama", "auto", "http://h:1"),
        ("llama=vllm+http://h:1/v1/", "llama", "vllm", "http://h:1"),
        ("llama=http://h:1/v1", "llama", "auto", "http://h:1"),
        ("llama=http://h:1/", "llama", "auto", "http://h:1"),
        ("big=llama-server+https://gpu.example:8443/base/v1", "big", "llama-server", "https://gpu.example:8443/base"),
        (" spaced = ollama+http://h:11434 ", "spaced", "ollama", "http://h:11434"),
        ("r=router+http://gw:80", "r", "router", "http://gw:80"),
        ("a=auto+http://h:1", "a", "auto", "http://h:1"),
        ("gpt=http://h:1/v1x", "gpt", "auto", "http://h:1/v1x"),  # only a whole /v1 segment goes
    ],
)
def test_parse_cli(text: str, ident: str, kind: str, url: str) -> None:
    spec = UpstreamSpec.parse_cli(text)
    assert (spec.id, spec.kind, spec.url) == (ident, kind, url)
    assert (spec.api_key, spec.model, spec.serves, spec.weight, spec.max_inflight) == (None, None, None, 1.0, 64)


@pytest.mark.parametrize(
    "text",
    [
        "http://h:1",  # no id
        "=http://h:1",
        "llama=",
        "llama=  ",
        "llama=h:1",  # no scheme
        "llama=ftp://h:1",
        "llama=bogus+http://h:1",  # not a kind
        "llama=vllm+",
        "llama=vllm+h:1",
    ],
)
def test_parse_cli_refuses_bad_forms(text: str) -> None:
    with pytest.raises(ValueError):
        UpstreamSpec.parse_cli(text)
    with pytest.raises(ConfigError):
        upstream_from_cli(text)


def test_upstream_from_cli_names_the_id_and_drops_unset_fields() -> None:
    assert upstream_from_cli("llama=vllm+http://h:1/v1") == {
        "id": "llama",
        "url": "http://h:1",
        "kind": "vllm",
        "weight": 1.0,
        "max_inflight": 64,
        "connect_timeout_s": 2.0,
        "first_byte_timeout_s": 60.0,
        "idle_timeout_s": 60.0,
    }
    with pytest.raises(ConfigError, match="'llama'"):
        upstream_from_cli("llama=ftp://h")


@pytest.mark.parametrize(
    "fields",
    [{"weight": 0}, {"weight": -1}, {"max_inflight": 0}, {"connect_timeout_s": 0}, {"serves": "audio"}, {"bogus": 1}, {"id": ""}],
)
def test_spec_bounds(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        UpstreamSpec.model_validate({"id": "m", "url": "http://h:1", **fields})


@pytest.mark.parametrize("fields", [{"retries": 6}, {"retries": -1}, {"affinity_rel": 0.5}, {"queue_timeout_s": 0}, {"x": 1}])
def test_routing_bounds(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RoutingSettings.model_validate(fields)


# ---------------------------------------------------------------- the environment


def test_upstreams_from_the_environment() -> None:
    s = load_settings(environ={"FACEPLATE_UPSTREAMS": "llama=http://a:1, llama=vllm+http://b:2/v1/ ,emb=tgi+http://c:3"})
    assert [(u.id, u.kind, u.url) for u in s.upstreams] == [
        ("llama", "auto", "http://a:1"),
        ("llama", "vllm", "http://b:2"),
        ("emb", "tgi", "http://c:3"),
    ]
    assert s.effective_models() == []  # a gateway: the bundled models are not loaded


def test_bad_upstream_in_the_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'llama'"):
        load_settings(environ={"FACEPLATE_UPSTREAMS": "llama=ftp://a:1"})


@pytest.mark.parametrize("env", [{}, {"FACEPLATE_UPSTREAMS": " , "}])
def test_no_upstreams_keeps_the_bundled_models(env: dict[str, str]) -> None:
    s = load_settings(environ=env)
    assert s.upstreams == []
    assert (DEFAULT_CHAT_MODEL_ID in [m.id for m in s.effective_models()]) == (bundled_chat_model_path() is not None)


# ---------------------------------------------------------------- TOML


POOL_TOML = f"""
[[upstreams]]
id = "llama"
url = "http://10.0.0.5:8080/v1/"
kind = "llama-server"
api_key = "{SECRET}"
model = "Llama-3.1-8B-Instruct"
weight = 2
max_inflight = 8

[[upstreams]]
id = "llama"
url = "http://10.0.0.6:8080"

[[upstreams]]
id = "emb"
url = "http://10.0.0.7:8000"
serves = "embedding"

[routing]
retries = 1
affinity_abs = 2
breaker_open_s = 10

[aliases]
gpt-4o-mini = "llama"
text-embedding-3-small = "emb"
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "faceplate.toml"
    path.write_text(text)
    return str(path)


def test_upstream_tables_with_a_shared_id_form_a_pool(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, POOL_TOML), environ={})
    first, second, emb = s.upstreams
    assert (first.id, second.id, emb.id) == ("llama", "llama", "emb")
    assert (first.kind, first.url, first.model, first.weight, first.max_inflight) == (
        "llama-server",
        "http://10.0.0.5:8080",
        "Llama-3.1-8B-Instruct",
        2.0,
        8,
    )
    assert first.api_key == SECRET and second.api_key is None
    assert (second.kind, second.weight, emb.serves) == ("auto", 1.0, "embedding")
    assert (s.routing.retries, s.routing.affinity_abs, s.routing.breaker_open_s, s.routing.affinity_rel) == (1, 2, 10.0, 1.5)
    assert s.aliases == {"gpt-4o-mini": "llama", "text-embedding-3-small": "emb"}
    assert s.effective_models() == []


def test_the_environment_replaces_the_files_upstreams(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, POOL_TOML.split("[aliases]")[0]), environ={"FACEPLATE_UPSTREAMS": "other=http://x:1"})
    assert [u.id for u in s.upstreams] == ["other"]


def test_an_alias_may_name_an_upstream_id() -> None:
    s = load_settings(environ={"FACEPLATE_UPSTREAMS": "llama=http://a:1", "FACEPLATE_ALIASES": "gpt-4o=llama"})
    assert s.aliases == {"gpt-4o": "llama"}
    with pytest.raises(ConfigError, match="not a served model"):
        load_settings(environ={"FACEPLATE_UPSTREAMS": "llama=http://a:1", "FACEPLATE_ALIASES": "gpt-4o=nobody"})
    with pytest.raises(ConfigError, match="already a model id"):
        load_settings(environ={"FACEPLATE_UPSTREAMS": "llama=http://a:1,gpt=http://b:1", "FACEPLATE_ALIASES": "gpt=llama"})


def test_an_upstream_id_clashing_with_a_local_model_is_refused() -> None:
    env = {"FACEPLATE_MODELS": "llama=/m/x.gguf", "FACEPLATE_UPSTREAMS": "llama=http://a:1"}
    with pytest.raises(ConfigError, match="both a local model and an upstream id"):
        load_settings(environ=env)
    mixed = load_settings(environ={"FACEPLATE_MODELS": "local=/m/x.gguf", "FACEPLATE_UPSTREAMS": "llama=http://a:1"})
    assert [m.id for m in mixed.effective_models()] == ["local"] and [u.id for u in mixed.upstreams] == ["llama"]


def test_an_upstream_may_take_a_bundled_models_name() -> None:
    """With upstreams set the bundled models are not served, so their ids are free."""
    s = load_settings(environ={"FACEPLATE_UPSTREAMS": f"{DEFAULT_CHAT_MODEL_ID}=http://a:1"})
    assert [u.id for u in s.upstreams] == [DEFAULT_CHAT_MODEL_ID] and s.effective_models() == []


# ---------------------------------------------------------------- the key stays secret


def test_api_key_never_in_repr(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, POOL_TOML), environ={})
    spec = s.upstreams[0]
    for text in (repr(spec), str(spec), repr(s), str(s), repr(s.upstreams)):
        assert SECRET not in text
    assert "api_key" not in repr(spec)
    assert spec.model_dump()["api_key"] == SECRET  # still there for the client to send


def test_api_key_never_in_a_config_error(tmp_path: Path) -> None:
    bad = f'[[upstreams]]\nid = "llama"\napi_key = "{SECRET}"\nweight = 0\n'  # no url, a bad weight
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, bad), environ={})
    assert "url" in str(info.value) and "weight" in str(info.value)
    assert SECRET not in str(info.value)
