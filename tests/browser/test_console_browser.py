"""The operators' console in Chromium against a real server: the admin key gate, creating a key
whose secret is shown once and then works with the official SDK, usage that follows requests,
revoking, and live engine state while a request streams."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import openai
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ADMIN_KEY, API_KEY, shot
from tests.serverproc import ServerProcess

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}

# The machines running CI are shared and slow: assertions retry for up to 30 s, not 5.
expect.set_options(timeout=30_000)


def unlock(page: Any, key: str = ADMIN_KEY) -> None:
    page.fill("#admin-key", key)
    page.press("#admin-key", "Enter")


def open_console(page: Any) -> None:
    page.goto("/ui/console")
    unlock(page)
    expect(page.locator(f'#engines-rows tr[data-model="{CHAT}"]')).to_be_visible()


def api_key(ui_server: ServerProcess, **fields: Any) -> dict[str, Any]:
    """A key made through the admin API (the console's own create form is test 2's subject)."""
    r = httpx.post(
        f"{ui_server.root}/admin/keys", json={"name": f"t-{uuid.uuid4().hex[:8]}", **fields}, headers=ADMIN, timeout=30
    )
    assert r.status_code == 201, r.text
    return r.json()


def chat(ui_server: ServerProcess, key: str, max_tokens: int = 8) -> httpx.Response:
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": max_tokens}
    return httpx.post(f"{ui_server.base_url}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60)


def test_the_console_needs_the_admin_key(page: Any) -> None:
    page.goto("/ui/console")
    expect(page.locator("#auth-prompt")).to_be_visible()
    expect(page.locator("#panels")).to_be_hidden()
    unlock(page, "sk-wrong-admin-key")
    error = page.locator("#auth-error")
    expect(error).to_contain_text("401")
    expect(error).to_contain_text("invalid_api_key")
    expect(page.locator("#panels")).to_be_hidden()

    unlock(page)
    expect(page.locator("#auth")).to_be_hidden()
    for model in (CHAT, EMBED):
        expect(page.locator(f'#engines-rows tr[data-model="{model}"]')).to_be_visible()
    expect(page.locator(f'#engines-rows tr[data-model="{CHAT}"] td[data-field="kind"]')).to_have_text("chat")
    expect(page.locator("#keys-rows tr").first).to_be_visible()  # a key or the "no keys yet" line
    expect(page.locator("#usage-updated")).to_contain_text("updated")
    expect(page.locator(f'#key-models input[value="{CHAT}"]')).to_be_visible()
    shot(page, "console")


def test_a_key_made_in_the_console_is_shown_once_and_works(page: Any, ui_server: ServerProcess) -> None:
    open_console(page)
    name = f"console-{uuid.uuid4().hex[:8]}"
    page.fill("#key-name", name)
    page.fill("#key-rpm", "0")  # the server's validation answers, naming the field
    page.click("#key-create")
    expect(page.locator("#keys-error")).to_contain_text("param: rpm")
    expect(page.locator("#key-rpm")).to_have_attribute("aria-invalid", "true")

    page.fill("#key-rpm", "30")
    page.check(f'#key-models input[value="{CHAT}"]')
    page.click("#key-create")
    secret = page.locator("#new-key-secret").inner_text().strip()
    assert secret.startswith("sk-fp-"), secret
    expect(page.locator("#keys-error")).to_be_hidden()
    row = page.locator("#keys-rows tr", has=page.locator(f'td[data-field="name"]:text-is("{name}")'))
    expect(row).to_have_attribute("data-status", "active")
    expect(row.locator('td[data-field="models"]')).to_have_text(CHAT)
    assert secret not in row.inner_text()

    client = openai.OpenAI(api_key=secret, base_url=ui_server.base_url, max_retries=0, timeout=60)
    done = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8)
    assert done.usage is not None and done.usage.completion_tokens > 0
    # The key may use the chat model only: any other model is "not found" to it, as with OpenAI.
    with pytest.raises(openai.NotFoundError) as refused:
        client.embeddings.create(model=EMBED, input="hello")
    assert refused.value.code == "model_not_found"

    page.click("#dismiss-secret")
    assert secret not in page.content()
    page.reload()
    expect(row).to_have_attribute("data-status", "active")  # the admin key stayed in the tab
    assert secret not in page.content()
    assert secret not in page.evaluate("JSON.stringify(Object.entries(sessionStorage))")


def test_usage_follows_a_keys_requests(page: Any, ui_server: ServerProcess) -> None:
    key = api_key(ui_server, models=[CHAT])
    open_console(page)
    expect(page.locator("#usage-updated")).to_contain_text("updated")
    bar = page.locator(f'#usage-chart rect.bar[data-label="{key["name"]}"]')
    row = page.locator(f'#usage-rows tr[data-group="{key["id"]}"]')
    assert bar.count() == 0 and row.count() == 0  # a new key has no usage yet

    r = chat(ui_server, key["key"])
    assert r.status_code == 200, r.text
    total = r.json()["usage"]["total_tokens"]
    assert total > 0
    page.click("#usage-refresh")
    expect(row.locator('td[data-field="total_tokens"]')).to_have_attribute("data-value", str(total))
    expect(row.locator('td[data-field="requests"]')).to_have_text("1")
    expect(bar).to_have_attribute("data-value", str(total))

    # A second request grows the same bar (the 5 s auto refresh or the button, whichever is first).
    second = chat(ui_server, key["key"])
    assert second.status_code == 200, second.text
    grown = total + second.json()["usage"]["total_tokens"]
    page.click("#usage-refresh")
    expect(bar).to_have_attribute("data-value", str(grown))
    shot(page, "console-usage")

    page.click('#usage-tabs button[data-by="model"]')
    expect(page.locator("#usage-group-head")).to_have_text("model")
    model_bar = page.locator(f'#usage-chart rect.bar[data-label="{CHAT}"]')
    expect(model_bar).to_be_visible()
    assert int(model_bar.get_attribute("data-value")) >= grown
    page.click('#usage-tabs button[data-by="day"]')
    day = time.strftime("%Y-%m-%d", time.gmtime())
    expect(page.locator(f'#usage-rows tr[data-group="{day}"]')).to_be_visible()
    # A range that ends before today has none of it.
    page.fill("#usage-until", "2000-01-01")
    expect(page.locator("#usage-rows")).to_contain_text("No requests in this range")


def test_revoking_in_the_console_locks_the_key_out(page: Any, ui_server: ServerProcess) -> None:
    key = api_key(ui_server)
    assert chat(ui_server, key["key"]).status_code == 200  # now in the server's key cache
    open_console(page)
    row = page.locator(f'#keys-rows tr[data-key-id="{key["id"]}"]')
    expect(row).to_have_attribute("data-status", "active")
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    row.locator("button.revoke").click()
    expect(row).to_have_attribute("data-status", "revoked")
    expect(row.locator('td[data-field="status"]')).to_have_text("revoked")
    expect(row.locator("button.revoke")).to_have_count(0)
    assert dialogs and key["name"] in dialogs[0]

    deadline = time.monotonic() + 15  # other processes may cache a key up to key_cache_ttl_s (5 s)
    status = chat(ui_server, key["key"], max_tokens=1).status_code
    while status != 401 and time.monotonic() < deadline:
        time.sleep(0.5)
        status = chat(ui_server, key["key"], max_tokens=1).status_code
    assert status == 401


def test_engines_show_a_running_request(page: Any, ui_server: ServerProcess) -> None:
    open_console(page)
    chat_row = f'#engines-rows tr[data-model="{CHAT}"]'
    running = f'{chat_row} td[data-field="running"] .num'
    rate = f'{chat_row} td[data-field="rate"] .num'
    expect(page.locator(running)).to_have_attribute("data-value", "0")
    expect(page.locator(rate)).not_to_have_attribute("data-value", "")  # two polls seen: a rate exists

    result: dict[str, Any] = {}

    def stream() -> None:
        body = {
            "model": CHAT,
            "messages": [{"role": "user", "content": "Tell a long story about a lighthouse keeper."}],
            "max_tokens": 80,  # long enough for several polls at a few tokens/s on a shared core
            "stream": True,
        }
        try:
            with httpx.stream(
                "POST",
                f"{ui_server.base_url}/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {API_KEY}"},
                timeout=120,
            ) as r:
                result["status"] = r.status_code
                result["chunks"] = sum(1 for line in r.iter_lines() if line.startswith("data:"))
        except Exception as exc:  # reported by the assertion below, not lost in the thread
            result["error"] = repr(exc)

    worker = threading.Thread(target=stream, daemon=True)
    worker.start()
    # Busy at some moment: a running sequence, or a tokens/s above zero from the counters' change.
    page.wait_for_function(
        """([running, rate]) => {
            const r = document.querySelector(running), t = document.querySelector(rate);
            return (r && Number(r.dataset.value) >= 1) || (t && Number(t.dataset.value) > 0);
        }""",
        arg=[running, rate],
        timeout=60_000,
    )
    worker.join(timeout=120)
    assert not worker.is_alive() and result.get("status") == 200 and result.get("chunks", 0) > 1, result
    expect(page.locator(running)).to_have_attribute("data-value", "0")
    expect(page.locator(rate)).to_have_attribute("data-value", "0.00")  # idle again: nothing generated
