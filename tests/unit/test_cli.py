from pathlib import Path

import pytest

from faceplate.cli import _is_loopback, build_parser, main


def test_refuses_public_bind_without_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert rc == 2
    assert "refusing to serve 0.0.0.0 with no API key" in capsys.readouterr().err


def test_loopback_detection() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost") and _is_loopback("127.5.5.5")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("10.0.0.1") and not _is_loopback("example.com")


def test_help_explains_every_serve_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--model", "--api-key", "--config", "--allow-insecure", "--n-parallel", "--max-queue"):
        assert flag in out


def test_bad_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = 'eighty'\n")
    assert main(["serve", "--config", str(bad)]) == 2
    assert "port" in capsys.readouterr().err
