"""`faceplate keys` and `faceplate usage`, in-process against a SQLite store in a temp folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import faceplate.server
from faceplate.access.usage import UsageRecord
from faceplate.cli import main
from faceplate.store import Store


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("FACEPLATE_DATA_DIR", "FACEPLATE_DATABASE_URL", "FACEPLATE_CONFIG", "FACEPLATE_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    return str(tmp_path / "data")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_list_revoke(data_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "keys", "create", "--name", "alice", "--models", "m1,m2", "--rpm", "5", "--data-dir", data_dir)
    assert code == 0
    secret = out.strip()
    assert secret.startswith("sk-fp-") and "\n" not in secret  # stdout is only the secret: KEY=$(faceplate keys create ...)
    assert "shown only this once" in err and "rpm 5" in err

    code, out, _ = run(capsys, "keys", "create", "--name", "bob", "--expires-in", "2h", "--json", "--data-dir", data_dir)
    bob = json.loads(out)
    assert code == 0 and bob["key"].startswith("sk-fp-") and 7190 < bob["expires_at"] - time.time() <= 7200

    code, out, _ = run(capsys, "keys", "list", "--data-dir", data_dir)
    assert code == 0 and "alice" in out and "m1,m2" in out and secret not in out and secret[:10] + "..." in out
    keys = json.loads(run(capsys, "keys", "list", "--json", "--data-dir", data_dir)[1])["data"]
    assert [k["name"] for k in keys] == ["alice", "bob"] and all("key" not in k for k in keys)

    code, out, _ = run(capsys, "keys", "revoke", keys[0]["id"], "--data-dir", data_dir)
    assert code == 0 and "Revoked" in out
    active = json.loads(run(capsys, "keys", "list", "--active", "--json", "--data-dir", data_dir)[1])["data"]
    assert [k["name"] for k in active] == ["bob"]
    assert run(capsys, "keys", "revoke", "key_nope", "--data-dir", data_dir)[0] == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--rpm", "0"],
        ["--expires-in", "soon"],
        ["--expires-at", "2001-01-01"],
        ["--expires-at", "not a date"],
    ],
)
def test_bad_create_arguments(data_dir: str, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = run(capsys, "keys", "create", "--name", "x", *args, "--data-dir", data_dir)
    assert code == 2 and out == "" and err.startswith("faceplate: ")


def test_usage_report(data_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(f"sqlite:///{Path(data_dir) / 'faceplate.db'}")
    key, _ = store.keys.create("alice")
    now = time.time()
    store.usage.insert([UsageRecord(key.id, "m1", "/v1/chat/completions", 10, 5, 200, 3.0, now) for _ in range(3)])
    store.usage.insert([UsageRecord(None, "m2", "/v1/completions", 1, 1, 429, 1.0, now)])
    store.close()
    code, out, _ = run(capsys, "usage", "--data-dir", data_dir)
    assert code == 0 and "alice" in out and "TOTAL" in out
    rows = json.loads(run(capsys, "usage", "--by", "model", "--json", "--data-dir", data_dir)[1])["data"]
    assert {r["model"]: (r["requests"], r["errors"], r["total_tokens"]) for r in rows} == {"m1": (3, 0, 45), "m2": (1, 1, 2)}
    assert json.loads(run(capsys, "usage", "--since", "2999-01-01", "--json", "--data-dir", data_dir)[1])["data"] == []
    assert run(capsys, "usage", "--since", "yesterday", "--data-dir", data_dir)[0] == 2


def test_stored_keys_let_serve_bind_a_public_address(
    data_dir: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    monkeypatch.setattr(faceplate.server, "run", lambda settings: started.append(settings.host) or 0)
    code, _, err = run(capsys, "serve", "--host", "0.0.0.0", "--data-dir", data_dir)
    assert code == 2 and "refusing" in err and not started
    run(capsys, "keys", "create", "--name", "k", "--data-dir", data_dir)
    assert run(capsys, "serve", "--host", "0.0.0.0", "--data-dir", data_dir)[0] == 0
    assert started == ["0.0.0.0"]


def test_cli_groups_match_the_store() -> None:
    from faceplate import cli_keys
    from faceplate.store.usage import GROUPS

    assert cli_keys.GROUPS == GROUPS
