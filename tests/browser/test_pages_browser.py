"""The pages load in Chromium under their Content-Security-Policy with no error, without a key."""

from __future__ import annotations

from typing import Any

import httpx

from tests.browser.conftest import shot
from tests.serverproc import ServerProcess


def test_the_pages_are_public_static_and_locked_down(ui_server: ServerProcess) -> None:
    for path in ("/ui/", "/ui/console", "/ui/assets/common.js", "/ui/assets/style.css"):
        r = httpx.get(f"{ui_server.root}{path}", timeout=10)
        assert r.status_code == 200, (path, r.text[:200])
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "sk-" not in r.text  # no key of the server's is ever in a page
    root = httpx.get(ui_server.root + "/", timeout=10)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    for path in ("/ui/assets/nope.js", "/ui/assets/..%2F__init__.py", "/ui/assets/%2e%2e%2fapi%2fui.py", "/ui/nope"):
        missing = httpx.get(f"{ui_server.root}{path}", timeout=10)
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error", path


def test_the_playground_loads_without_errors(page: Any) -> None:
    page.goto("/ui/")
    page.wait_for_load_state("networkidle")
    shot(page, "playground-empty")
    assert page.title()
