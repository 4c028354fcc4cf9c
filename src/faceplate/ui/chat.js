// The Chat tab: a multi-turn conversation streamed token by token from /v1/chat/completions.
import { clearError, el, showError, stream } from "./common.js";

const PATH = "/v1/chat/completions";

export function chatTab(ctx) {
  const $ = (id) => document.getElementById(id);
  const log = $("chat-log");
  const system = $("chat-system");
  const input = $("chat-input");
  const send = $("chat-send");
  const stop = $("chat-stop");
  const clear = $("chat-clear");
  const stats = $("chat-stats");
  const error = $("chat-error");
  const placeholder = log.firstElementChild;
  let turns = []; // the conversation so far, as sent: {role, content}
  let controller = null; // set while a reply streams
  let epoch = 0; // bumped by Clear: a reply that ends after it belongs to no conversation

  function messages(draft) {
    const out = [];
    const sys = system.value.trim();
    if (sys) out.push({ role: "system", content: sys });
    out.push(...turns);
    if (draft) out.push({ role: "user", content: draft });
    return out;
  }

  // The one builder of the request body: what Send posts and what "copy as code" shows.
  function body(draft) {
    return {
      model: ctx.chatModel(),
      messages: messages(draft),
      ...ctx.sampling(),
      stream: true,
      stream_options: { include_usage: true },
    };
  }

  function bubble(role, text) {
    const content = el("div", { class: "content" }, text);
    const node = el("div", { class: `msg ${role}`, dataset: { role } }, el("div", { class: "role" }, role), content);
    log.append(node);
    log.scrollTop = log.scrollHeight;
    return { node, content };
  }

  function setBusy(busy) {
    send.disabled = busy;
    stop.disabled = !busy;
  }

  function stat(key, value, text) {
    stats.dataset[key] = value;
    return el("span", { class: "stat" }, text);
  }

  function showStats({ finish, usage, t0, tFirst, tEnd }) {
    stats.replaceChildren();
    for (const k of Object.keys(stats.dataset)) delete stats.dataset[k];
    const parts = [stat("finish", finish || "", `finish: ${finish || "—"}`)];
    if (usage) {
      parts.push(stat("promptTokens", usage.prompt_tokens, `${usage.prompt_tokens} prompt`));
      parts.push(stat("completionTokens", usage.completion_tokens, `${usage.completion_tokens} completion tokens`));
    }
    if (tFirst !== null) {
      parts.push(stat("ttftMs", Math.round(tFirst - t0), `first token ${Math.round(tFirst - t0)} ms`));
      // Decode speed: tokens after the first over the time they took.
      const n = usage ? usage.completion_tokens : 0;
      if (n > 1 && tEnd > tFirst) {
        const rate = ((n - 1) * 1000) / (tEnd - tFirst);
        parts.push(stat("tokensPerSecond", rate.toFixed(1), `${rate.toFixed(1)} tok/s`));
      }
    }
    parts.forEach((p, i) => stats.append(i ? " · " : "", p));
  }

  async function run() {
    if (controller) return;
    const text = input.value.trim();
    if (!text) return;
    if (!ctx.chatModel()) {
      showError(error, new Error("Pick a chat model first (enter the API key if the server needs one)."));
      return;
    }
    const request = body(text);
    clearError(error);
    placeholder.remove();
    const user = bubble("user", text);
    turns.push({ role: "user", content: text });
    input.value = "";
    const reply = bubble("assistant", "");
    reply.node.classList.add("streaming");
    const replyText = document.createTextNode("");
    reply.content.append(replyText);

    controller = new AbortController();
    setBusy(true);
    stats.replaceChildren("waiting for the first token…");
    const mine = epoch;
    const timing = { t0: performance.now(), tFirst: null, tEnd: null, finish: null, usage: null };
    let failed = null;
    try {
      await stream(PATH, request, {
        signal: controller.signal,
        onEvent: (event) => {
          if (event.usage) timing.usage = event.usage;
          const choice = event.choices && event.choices[0];
          if (!choice) return;
          const content = choice.delta && choice.delta.content;
          if (content) {
            if (timing.tFirst === null) timing.tFirst = performance.now();
            replyText.appendData(content);
            log.scrollTop = log.scrollHeight;
          }
          if (choice.finish_reason) timing.finish = choice.finish_reason;
        },
      });
    } catch (err) {
      if (err && err.name === "AbortError") timing.finish = "stopped";
      else failed = err;
    } finally {
      timing.tEnd = performance.now();
      controller = null;
      setBusy(false);
      reply.node.classList.remove("streaming");
    }
    if (mine !== epoch) return;
    if (failed && !replyText.data) {
      // Nothing came back: undo the turn so the user can fix the cause and send it again.
      turns.pop();
      user.node.remove();
      reply.node.remove();
      input.value = text;
      stats.replaceChildren();
      showError(error, failed);
    } else {
      turns.push({ role: "assistant", content: replyText.data });
      if (failed) showError(error, failed);
      if (timing.finish) reply.node.dataset.finish = timing.finish;
      showStats(timing);
    }
    ctx.changed();
    input.focus();
  }

  function reset() {
    if (controller) controller.abort();
    epoch += 1;
    turns = [];
    log.replaceChildren(placeholder);
    stats.replaceChildren();
    clearError(error);
    ctx.changed();
  }

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      run();
    }
  });
  send.addEventListener("click", () => run());
  stop.addEventListener("click", () => controller && controller.abort());
  clear.addEventListener("click", reset);

  return {
    request: () => ({ path: PATH, body: body(input.value.trim()) }),
  };
}
