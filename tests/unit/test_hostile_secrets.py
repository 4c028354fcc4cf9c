"""Secrets never reach logs or error output: Redis and database passwords, API keys, the admin key."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from faceplate.access import limits
from faceplate.access.auth import Principal
from faceplate.access.limits import RedisLimiter
from faceplate.cli import main
from faceplate.config import ConfigError, Settings, load_settings
from faceplate.errors import ServiceUnavailable
from tests.serverproc import free_port

REDIS_PASSWORD = "r3dis-Pa55word"
LIMITED = Principal(key_id="key_1", name="test", rpm=100, tpm=1000)


def test_redact_url() -> None:
    from faceplate.config import redact_url

    assert redact_url("redis://user:pass@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("redis://:pass@host") == "redis://:***@host"
    assert redact_url("rediss://host/0?password=pass&db=1") == "rediss://host/0?password=***&db=1"
    assert redact_url("postgresql+psycopg://app:p%40ss@db:5432/fp") == "postgresql+psycopg://app:***@db:5432/fp"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"  # nothing to hide: unchanged


async def test_unreachable_redis_is_logged_without_its_password(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://fp:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    lim = RedisLimiter(url, timeout_s=0.3)
    try:
        with caplog.at_level(logging.WARNING, logger="faceplate"), pytest.raises(ServiceUnavailable) as info:
            await lim.admit(LIMITED, 1)
    finally:
        await lim.aclose()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "unreachable" in logged and "redis://fp:***@127.0.0.1" in logged
    assert REDIS_PASSWORD not in logged and REDIS_PASSWORD not in info.value.message
    assert REDIS_PASSWORD not in lim.url and REDIS_PASSWORD not in repr(vars(lim).get("url"))


class LeakyScripts:
    """A Redis client whose errors quote the URL, password and all (as some client errors may).

    The admit script succeeds once, then fails; the settle script always fails.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.admitted = False

    def register_script(self, source: str) -> Any:
        async def run(keys: list[str], args: list[Any]) -> Any:
            if source is limits._ADMIT_LUA and not self.admitted:
                self.admitted = True
                return [0, "99", "900", "0"]
            raise ConnectionError(f"Error connecting to {self.url}: connection reset")

        return run

    async def aclose(self) -> None:
        return None


async def test_redis_errors_quoting_the_url_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://fp:{REDIS_PASSWORD}@10.0.0.9:6379/0"
    lim = RedisLimiter(url, client=LeakyScripts(url))
    with caplog.at_level(logging.WARNING, logger="faceplate"):
        lease = await lim.admit(LIMITED, 10)
        await lease.settle(3)  # fails: logged
        lim._down_until = 0.0
        with pytest.raises(ServiceUnavailable):
            await lim.admit(LIMITED, 10)  # fails: logged
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "could not settle" in logged and "unreachable" in logged
    assert REDIS_PASSWORD not in logged


def test_config_errors_do_not_echo_api_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, overrides={"api_keys": ["sk-very-secret-1", "sk-very-secret-2", " "]})
    assert "api_keys" in str(info.value)
    assert "sk-very-secret" not in str(info.value)
    with pytest.raises(ConfigError) as env:
        load_settings(
            environ={"FACEPLATE_ADMIN_KEY": "adm-secret", "FACEPLATE_PORT": "abc", "FACEPLATE_API_KEYS": "sk-env-1,sk-env-2"}
        )
    assert "port" in str(env.value) and "sk-env" not in str(env.value)


def test_settings_repr_hides_secrets() -> None:
    s = Settings(api_keys=["sk-repr-secret"], admin_key="adm-repr-secret", redis_url=f"redis://:{REDIS_PASSWORD}@h")
    shown = repr(s) + str(s)
    assert "sk-repr-secret" not in shown and "adm-repr-secret" not in shown and REDIS_PASSWORD not in shown


def test_cli_config_errors_do_not_print_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["serve", "--api-key", "sk-cli-secret-a", "--api-key", "sk-cli-secret-b", "--api-key", " "])
    err = capsys.readouterr().err
    assert rc == 2 and "api_keys" in err and "sk-cli-secret" not in err
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'api_keys = "sk-toml-secret"\nadmin_key = ["adm-toml-secret"]\n'
        f'redis_url = ["redis://u:{REDIS_PASSWORD}@h"]\ndatabase_url = 5\nport = "abc"\n'
    )
    rc = main(["serve", "--config", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and "port" in err and "admin_key" in err
    assert "sk-toml-secret" not in err and "adm-toml-secret" not in err and REDIS_PASSWORD not in err
    rc = main(["keys", "list", "--config", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and "sk-toml-secret" not in err and REDIS_PASSWORD not in err


def test_cli_store_errors_do_not_print_the_database_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import faceplate.store

    def refuse(url: str) -> None:
        raise RuntimeError(f"could not connect with {url}")

    monkeypatch.setattr(faceplate.store.Store, "open", staticmethod(refuse))
    url = "postgresql://app:db-Pa55word@127.0.0.1:1/fp"
    rc = main(["serve", "--host", "0.0.0.0", "--database-url", url])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot open the key store" in err and "postgresql://app:***@127.0.0.1" in err
    assert "db-Pa55word" not in err
