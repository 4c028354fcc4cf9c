"""The playground at /ui/ in Chromium against a real server: streamed chat, structured output,
tools, embeddings, "copy as code" and a wrong key, each through the page as a user drives it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import API_KEY, shot

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make install)")
expect = sync_api.expect

CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"
SLOW = 60_000  # model output on 2 shared CI cores


def open_playground(page: Any, key: str = API_KEY) -> None:
    page.goto("/ui/")
    box = page.locator("#api-key")
    box.fill(key)
    box.press("Tab")  # the key is taken on change
    if key == API_KEY:
        expect(page.locator("#model")).to_have_value(CHAT_MODEL)


def settings(page: Any, **values: Any) -> None:
    for name, value in values.items():
        page.fill(f"#{name}", str(value))


def snippet(page: Any, lang: str) -> str:
    page.click(f"#code-tabs button[data-lang={lang}]")
    expect(page.locator(f"#code-tabs button[data-lang={lang}]")).to_have_attribute("aria-selected", "true")
    # A function, not a bare expression: Playwright evals those, which the page's CSP forbids.
    page.wait_for_function("() => document.getElementById('code-snippet').dataset.valid === 'true'")
    return str(page.locator("#code-snippet").text_content())


def curl_body(text: str) -> Any:
    match = re.search(r"-d '(.*)'\s*$", text, re.S)
    assert match, text
    return json.loads(match.group(1).replace("'\\''", "'"))


def assistant_texts(page: Any) -> list[str]:
    return [str(t) for t in page.locator("#chat-log .msg.assistant .content").all_text_contents()]


def test_chat_streams_token_by_token_and_keeps_the_conversation(page: Any) -> None:
    open_playground(page)
    chat_options = page.locator("#model option").all_text_contents()
    assert CHAT_MODEL in chat_options and EMBED_MODEL not in chat_options
    assert EMBED_MODEL in page.locator("#emb-model option").all_text_contents()
    settings(page, temperature=0, max_tokens=48)

    # Every change of the reply's text, as the page makes it, with the length it had then.
    page.evaluate(
        """() => {
        window.lengths = [];
        const log = document.getElementById("chat-log");
        new MutationObserver(() => {
          const content = log.querySelector(".msg.assistant:last-child .content");
          if (content) window.lengths.push(content.textContent.length);
        }).observe(log, { subtree: true, childList: true, characterData: true });
      }"""
    )
    page.fill("#chat-input", "Write three sentences about the sea.")
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat-stop")).to_be_enabled()
    expect(page.locator("#chat-stats")).to_have_attribute("data-finish", re.compile(r"^(stop|length)$"), timeout=SLOW)
    final = assistant_texts(page)[0]
    assert final.strip()
    lengths = page.evaluate("window.lengths")
    intermediate = {n for n in lengths if 0 < n < len(final)}
    assert len(intermediate) >= 3, lengths
    stats = page.locator("#chat-stats")
    assert int(stats.get_attribute("data-completion-tokens")) > 0
    assert int(stats.get_attribute("data-prompt-tokens")) > 0
    assert float(stats.get_attribute("data-tokens-per-second")) > 0
    assert "prompt" in str(stats.text_content()) and "tok/s" in str(stats.text_content())
    assert page.locator("#chat-input").input_value() == ""
    expect(page.locator("#chat-send")).to_be_enabled()
    shot(page, "playground-chat")

    # The next turn carries the whole conversation: the code panel shows it before it is sent.
    page.fill("#chat-input", "Now one more.")
    body = curl_body(snippet(page, "curl"))
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == final
    settings(page, max_tokens=8)
    with page.expect_request("**/v1/chat/completions") as sent:
        page.press("#chat-input", "Enter")
    assert [m["role"] for m in sent.value.post_data_json["messages"]] == ["user", "assistant", "user"]
    expect(page.locator("#chat-log .msg")).to_have_count(4)
    expect(page.locator("#chat-log .msg.assistant").nth(1)).to_have_attribute("data-finish", re.compile(".+"), timeout=SLOW)


def test_stop_keeps_the_partial_reply_and_a_400_undoes_the_turn(page: Any) -> None:
    open_playground(page)
    settings(page, temperature=0, max_tokens=400)
    page.fill("#chat-input", "Tell me a long story about a lighthouse keeper.")
    page.click("#chat-send")
    page.wait_for_function(
        "() => (document.querySelector('#chat-log .msg.assistant .content')?.textContent.length ?? 0) > 10", timeout=SLOW
    )
    page.click("#chat-stop")
    reply = page.locator("#chat-log .msg.assistant")
    expect(reply).to_have_attribute("data-finish", "stopped")
    expect(page.locator("#chat-stats")).to_have_attribute("data-finish", "stopped")
    expect(page.locator("#chat-send")).to_be_enabled()
    expect(page.locator("#chat-stop")).to_be_disabled()
    assert str(reply.locator(".content").text_content()).strip()

    # The server refuses the next request: its 400 and param show, and the message is back to fix.
    settings(page, max_tokens=-5)
    page.fill("#chat-input", "And then?")
    page.press("#chat-input", "Enter")
    error = page.locator("#chat-error")
    expect(error).to_contain_text("400")
    expect(error.locator(".param")).to_contain_text("max_tokens")
    expect(page.locator("#chat-log .msg")).to_have_count(2)
    assert page.locator("#chat-input").input_value() == "And then?"

    page.click("#chat-clear")
    expect(page.locator("#chat-log .msg")).to_have_count(0)
    expect(error).to_be_hidden()
    assert [m["role"] for m in curl_body(snippet(page, "curl"))["messages"]] == ["user"]


def test_structured_output_shows_the_validated_object(page: Any) -> None:
    open_playground(page)
    page.click("#tab-structured")
    expect(page.locator("#pane-structured")).to_be_visible()
    expect(page.locator("#pane-chat")).to_be_hidden()
    settings(page, temperature=0)
    page.click("#so-run")
    status = page.locator("#so-status")
    expect(status).to_have_attribute("data-valid", "true", timeout=SLOW)
    assert "valid JSON" in str(status.text_content())
    shown = json.loads(str(page.locator("#so-parsed").text_content()))
    schema = json.loads(page.locator("#so-schema").input_value())
    assert set(schema["required"]) <= set(shown), shown
    assert isinstance(shown["age"], int) and isinstance(shown["name"], str)
    assert json.loads(str(page.locator("#so-raw").text_content())) == shown
    shot(page, "playground-structured")

    # A schema the server cannot compile: its 400, with the param it names, in the pane.
    page.fill("#so-schema", '{"type": "object", "properties": {"a": {"type": "no-such-type"}}}')
    page.click("#so-run")
    error = page.locator("#so-error")
    expect(error).to_be_visible(timeout=SLOW)
    expect(error).to_contain_text("400")
    expect(error.locator(".param")).to_contain_text("response_format")
    # Not JSON at all: said on this side, and the code panel says why it has no request.
    page.fill("#so-schema", "{not json")
    page.click("#so-run")
    expect(error).to_contain_text("The schema is not valid JSON")
    expect(page.locator("#code-snippet")).to_contain_text("Cannot build the request")


def test_tools_required_gives_a_get_weather_call(page: Any) -> None:
    open_playground(page)
    page.click("#tab-tools")
    page.select_option("#tools-choice", "required")
    settings(page, temperature=0, max_tokens=64)
    page.click("#tools-run")
    call = page.locator("#tools-result .tool-call").first
    expect(call).to_be_visible(timeout=SLOW)
    assert call.get_attribute("data-name") == "get_weather"
    args = json.loads(str(call.locator("pre.args").text_content()))
    assert isinstance(args.get("city"), str) and args["city"], args
    expect(page.locator("#tools-status")).to_contain_text("finish: tool_calls")
    assert curl_body(snippet(page, "curl"))["tool_choice"] == "required"


def test_embeddings_draw_a_similarity_heatmap(page: Any) -> None:
    open_playground(page)
    page.click("#tab-embeddings")
    expect(page.locator("#settings")).to_be_hidden()
    expect(page.locator("#emb-model")).to_have_value(EMBED_MODEL)
    sentences = [s for s in page.locator("#emb-input").input_value().splitlines() if s.strip()]
    n = len(sentences)
    assert n == 4
    page.click("#emb-run")
    cells = page.locator("#emb-chart rect.cell")
    expect(cells).to_have_count(n * n, timeout=SLOW)
    values = cells.evaluate_all("cells => cells.map(c => [+c.dataset.i, +c.dataset.j, +c.dataset.value])")
    m = [[0.0] * n for _ in range(n)]
    for i, j, v in values:
        m[i][j] = v
    for i in range(n):
        assert abs(m[i][i] - 1.0) < 1e-3
        for j in range(n):
            assert abs(m[i][j] - m[j][i]) < 1e-3
    # Sentences 1 and 2 say the same thing; 3 and 4 are about something else.
    assert m[0][1] > max(m[0][2], m[0][3]) and m[1][0] > max(m[1][2], m[1][3]), m
    stats = page.locator("#emb-stats")
    assert int(stats.get_attribute("data-dimensions")) == 384
    assert int(stats.get_attribute("data-prompt-tokens")) > 0
    expect(page.locator("#emb-legend li")).to_have_count(n)
    shot(page, "playground-embeddings")


def test_copy_as_code_is_the_request_the_page_sends(page: Any, tmp_path: Path) -> None:
    open_playground(page)
    settings(page, temperature=0.5, max_tokens=8, seed=7, stop="END, \\n")
    page.fill("#chat-system", "Be brief.")
    message = """Say "hi" to O'Brien\\n then stop."""
    page.fill("#chat-input", message)

    python = snippet(page, "python")
    compile(python, "snippet.py", "exec")
    node = snippet(page, "node")
    curl = snippet(page, "curl")
    for code in (python, node, curl):
        assert CHAT_MODEL in code and "FACEPLATE_API_KEY" in code and "Be brief." in code
        assert API_KEY not in code
    assert 'os.environ["FACEPLATE_API_KEY"]' in python and "from openai import OpenAI" in python
    assert json.dumps(message) in python  # the message as a Python string literal
    assert 'import OpenAI from "openai"' in node and "process.env.FACEPLATE_API_KEY" in node
    assert json.dumps(message) in node
    assert "$FACEPLATE_API_KEY" in curl
    body = curl_body(curl)
    assert body["model"] == CHAT_MODEL and body["messages"][-1] == {"role": "user", "content": message}
    assert body["temperature"] == 0.5 and body["seed"] == 7 and body["stop"] == ["END", "\n"] and body["stream"] is True
    assert "top_p" not in body  # only the fields the user set
    if shutil.which("node"):
        (tmp_path / "snippet.mjs").write_text(node)
        subprocess.run(["node", "--check", str(tmp_path / "snippet.mjs")], check=True, timeout=30)

    # The snippet is what Send posts, to the byte of its JSON.
    with page.expect_request("**/v1/chat/completions") as sent:
        page.click("#chat-send")
    assert sent.value.post_data_json == body
    expect(page.locator("#chat-stats")).to_have_attribute("data-finish", re.compile(".+"), timeout=SLOW)

    page.click("#code-copy")
    expect(page.locator("#code-copy-status")).to_contain_text(re.compile("Copied|Ctrl"))

    # Every tab has its own request, and its Python compiles.
    for tab, needle in (("structured", "response_format"), ("tools", "get_weather"), ("embeddings", "client.embeddings.create")):
        page.click(f"#tab-{tab}")
        code = snippet(page, "python")
        assert needle in code and API_KEY not in code
        compile(code, f"{tab}.py", "exec")
    assert API_KEY not in page.content()


def test_a_wrong_key_shows_401_and_the_page_recovers(page: Any) -> None:
    open_playground(page, key="sk-wrong-key-000")
    error = page.locator("#page-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("401")
    expect(error).to_contain_text("API key")
    page.fill("#chat-input", "Hello")
    page.click("#chat-send")
    expect(page.locator("#chat-error")).to_contain_text("Pick a chat model")
    box = page.locator("#api-key")
    box.fill(API_KEY)
    box.press("Tab")
    expect(page.locator("#model")).to_have_value(CHAT_MODEL)
    expect(error).to_be_hidden()
