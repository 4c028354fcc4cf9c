// The playground page: key, model pickers, shared sampling settings, tabs and "copy as code".
// Each tab module owns its pane and exposes request() -> {path, body}: the body it sends.
import { chatTab } from "./chat.js";
import { LANGS } from "./codegen.js";
import { api, bindKey, clearError, el, showError } from "./common.js";
import { embeddingsTab } from "./embeddings-tab.js";
import { structuredTab } from "./structured.js";
import { toolsTab } from "./tools.js";

const $ = (id) => document.getElementById(id);
const pageError = $("page-error");
const chatModel = $("model");
const embModel = $("emb-model");
const snippet = $("code-snippet");
const copyStatus = $("code-copy-status");
let tab = "chat";
let lang = "python";

function number(id, parse) {
  const text = $(id).value.trim();
  if (text === "") return undefined;
  const value = parse(text);
  return Number.isFinite(value) ? value : undefined;
}

// Only what the user set: an empty field is left to the server's default.
function sampling() {
  const out = {};
  const fields = { temperature: parseFloat, top_p: parseFloat, max_tokens: (t) => parseInt(t, 10), seed: (t) => parseInt(t, 10) };
  for (const [id, parse] of Object.entries(fields)) {
    const value = number(id, parse);
    if (value !== undefined) out[id] = value;
  }
  // Comma-separated and trimmed; "\n" typed as two characters means a newline.
  const stop = $("stop")
    .value.split(",")
    .map((s) => s.trim().replaceAll("\\n", "\n"))
    .filter(Boolean);
  if (stop.length) out.stop = stop;
  return out;
}

let pending = false;
function changed() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    renderCode();
  });
}

const ctx = { chatModel: () => chatModel.value, sampling, changed };
const tabs = { chat: chatTab(ctx), structured: structuredTab(ctx), tools: toolsTab(ctx), embeddings: embeddingsTab(ctx) };

function renderCode() {
  copyStatus.replaceChildren();
  try {
    const { path, body } = tabs[tab].request();
    snippet.dataset.valid = "true";
    snippet.textContent = LANGS[lang](path, body, location.origin);
  } catch (err) {
    snippet.dataset.valid = "false";
    snippet.textContent = `Cannot build the request: ${err.message}`;
  }
}

function selectTab(name) {
  tab = name;
  for (const button of $("tabs").querySelectorAll("button[data-tab]")) {
    const on = button.dataset.tab === name;
    button.setAttribute("aria-selected", String(on));
    button.tabIndex = on ? 0 : -1;
    $(button.getAttribute("aria-controls")).hidden = !on;
  }
  // Sampling settings and the chat model apply to every tab but Embeddings.
  $("settings").hidden = name === "embeddings";
  renderCode();
}

function fill(select, ids, what) {
  const previous = select.value;
  select.replaceChildren(...ids.map((id) => el("option", { value: id }, id)));
  if (!ids.length) select.append(el("option", { value: "", disabled: true, selected: true }, `(no ${what} models)`));
  else if (ids.includes(previous)) select.value = previous;
}

// Chat or embedding? /v1/models/{id} says so in `capabilities`; without it, guess from the name.
async function kindOf(id) {
  try {
    const model = await api(`/v1/models/${encodeURIComponent(id)}`);
    const caps = model.capabilities || {};
    if (caps.embeddings === true) return "embedding";
    if (caps.chat_completions === true) return "chat";
  } catch (_) {
    /* fall through to the name */
  }
  return /embed|minilm|bge|e5-|gte/i.test(id) ? "embedding" : "chat";
}

let generation = 0;
async function loadModels() {
  const mine = ++generation; // a newer key's answer wins over a slower older one
  try {
    const list = await api("/v1/models");
    const ids = list.data.map((m) => m.id);
    const kinds = await Promise.all(ids.map(kindOf));
    if (mine !== generation) return;
    clearError(pageError);
    fill(chatModel, ids.filter((_, i) => kinds[i] === "chat"), "chat");
    fill(embModel, ids.filter((_, i) => kinds[i] === "embedding"), "embedding");
  } catch (err) {
    if (mine !== generation) return;
    fill(chatModel, [], "chat");
    fill(embModel, [], "embedding");
    showError(pageError, err);
    if (err.status === 401) pageError.append(el("div", {}, "Enter a valid API key in the box at the top right."));
  }
  renderCode();
}

async function copy() {
  const text = snippet.textContent;
  try {
    await navigator.clipboard.writeText(text);
    copyStatus.replaceChildren("Copied.");
    return;
  } catch (_) {
    /* no clipboard API (plain http) or no permission: select the text instead */
  }
  const range = document.createRange();
  range.selectNodeContents(snippet);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (_) {
    ok = false;
  }
  copyStatus.replaceChildren(ok ? "Copied." : "Copying is blocked here: the text is selected, press Ctrl+C.");
}

$("tabs").addEventListener("click", (e) => {
  const button = e.target.closest("button[data-tab]");
  if (button) selectTab(button.dataset.tab);
});
$("tabs").addEventListener("keydown", (e) => {
  if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
  const names = Object.keys(tabs);
  const next = names[(names.indexOf(tab) + (e.key === "ArrowRight" ? 1 : names.length - 1)) % names.length];
  selectTab(next);
  $(`tab-${next}`).focus();
});
$("code-tabs").addEventListener("click", (e) => {
  const button = e.target.closest("button[data-lang]");
  if (!button) return;
  lang = button.dataset.lang;
  for (const b of $("code-tabs").querySelectorAll("button")) b.setAttribute("aria-selected", String(b === button));
  renderCode();
});
$("code-copy").addEventListener("click", () => copy());
// Any edit anywhere on the page may change the request: redraw the code on the next frame.
document.querySelector("main").addEventListener("input", changed);
document.querySelector("main").addEventListener("change", changed);

bindKey($("api-key"), "api", loadModels);
selectTab("chat");
loadModels();
