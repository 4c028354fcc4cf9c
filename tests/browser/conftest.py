"""The web pages in a real headless Chromium (Debian's `chromium`, driven by Playwright through
``executable_path``) against a real `faceplate serve` with the bundled models, an API key and an
admin key. Each test saves screenshots of what it saw under ``build/screenshots`` (not committed)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serverproc import ServerProcess, start_server

API_KEY = "sk-browser-test-0123456789"
ADMIN_KEY = "sk-admin-browser-0123456789"
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make install)")


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(["--api-key", API_KEY, "--admin-key", ADMIN_KEY, "--threads", "1"], log_dir=tmp_path_factory.mktemp("ui"))
    yield srv
    srv.stop()


# Module scope, not session: Playwright's sync API marks an asyncio loop as running in this
# thread for as long as it is started, and every asyncio test after it would fail
# ("cannot be called from a running event loop").
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`; `make test` installs it, as root)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class PageErrors:
    """Console errors, CSP violations and uncaught exceptions of a page: a test ends with none."""

    def __init__(self, page: Any) -> None:
        self.messages: list[str] = []
        page.on("console", lambda m: self.messages.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.messages.append(f"uncaught: {e}"))


@pytest.fixture
def page(browser: Any, ui_server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(base_url=ui_server.root, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    errors = PageErrors(pg)
    pg.errors = errors
    yield pg
    context.close()
    # An API error a test provokes on purpose shows in the console as a failed fetch; those are allowed.
    unexpected = [m for m in errors.messages if "Failed to load resource" not in m]
    assert not unexpected, unexpected


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as build/screenshots/<name>.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
