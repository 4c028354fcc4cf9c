"""deploy/: the compose example, its gateway config and nginx.conf agree with Faceplate and each other.

Docker is not on these machines, so the compose file is checked for what can go wrong silently:
a FACEPLATE_* variable that names no setting (ignored), a config the gateway would refuse, an
nginx upstream that is not one of the replicas, a replica port nginx does not use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from faceplate.config import Settings, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _replicas(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if "faceplate" in " ".join(svc.get("command", []))}


def _resolved(env: dict[str, str]) -> dict[str, str]:
    """Compose's ${VAR:?msg} and ${VAR:-default} with a stand-in for every required secret."""
    return {k: re.sub(r"\$\{(\w+):[?-][^}]*\}", lambda m: f"test-{m.group(1).lower()}", v) for k, v in env.items()}


def test_every_faceplate_variable_names_a_setting() -> None:
    replicas = _replicas(_compose())
    assert sorted(replicas) == ["faceplate-1", "faceplate-2"]
    for svc in replicas.values():
        for name in svc["environment"]:
            assert name.startswith("FACEPLATE_") and name.removeprefix("FACEPLATE_").lower() in Settings.model_fields, name


def test_the_replicas_load_the_mounted_gateway_config(tmp_path: Path) -> None:
    for svc in _replicas(_compose()).values():
        mounted = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"] if v.startswith("./")}
        config = svc["command"][svc["command"].index("--config") + 1]
        local = DEPLOY / mounted[config]
        env = {k: v for k, v in _resolved(svc["environment"]).items() if k != "FACEPLATE_FILES_DIR"}
        settings = load_settings(str(local), environ=env)
        assert settings.host == "0.0.0.0" and settings.api_keys and settings.redis_url and settings.database_url
        pools = {u.id for u in settings.upstreams}
        assert pools == {"qwen2.5-7b-instruct", "text-embedding-3-small"}
        assert [u.url for u in settings.upstreams if u.id == "qwen2.5-7b-instruct"] == [
            "http://vllm-0:8000",
            "http://vllm-1:8000",
        ]
        hosts = {u.url.split("//")[1].split(":")[0] for u in settings.upstreams}
        assert hosts <= set(_compose()["services"]), hosts  # every engine is a service of the file
        assert settings.effective_models() == []  # a gateway loads no local model


def test_nginx_sends_to_exactly_the_replicas_on_their_port() -> None:
    compose = _compose()
    conf = (DEPLOY / "nginx.conf").read_text()
    servers = re.findall(r"^\s*server ([\w.-]+):(\d+) ", conf, flags=re.M)
    replicas = _replicas(compose)
    assert {host for host, _ in servers} == set(replicas)
    assert {port for _, port in servers} == {svc["environment"]["FACEPLATE_PORT"] for svc in replicas.values()}
    assert "proxy_buffering off;" in conf  # SSE token by token
    nginx = compose["services"]["nginx"]
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
