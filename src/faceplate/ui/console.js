// The operators' console: wires the admin key box to the three panels. Nothing loads, and no
// poll runs, until /admin accepts the key; a 401 at any later moment locks the page again.
import { api, ApiError, bindKey, clearError, getKey, setKey, showError } from "./common.js";
import { EnginesPanel } from "./engines.js";
import { KeysPanel } from "./keys.js";
import { UsagePanel } from "./usage.js";

const $ = (id) => document.getElementById(id);

const ctx = {
  key: () => getKey("admin"),
  // Every panel hands its errors here first: a 401 means the key is wrong (or was changed on
  // the server), so the whole console locks instead of each panel repeating the error.
  unauthorized(err) {
    if (err instanceof ApiError && err.status === 401) {
      lock(err);
      return true;
    }
    return false;
  },
};

const panels = [new EnginesPanel(ctx), new KeysPanel(ctx), new UsagePanel(ctx)];
let generation = 0; // a newer unlock() wins over a slower, older one
let probing = null; // the key being tried: Enter fires both change and submit, one probe is enough

function stopAll() {
  for (const panel of panels) panel.stop();
}

function lock(err) {
  generation++;
  stopAll();
  $("panels").hidden = true;
  $("auth").hidden = false;
  if (err) showError($("auth-error"), err);
  else clearError($("auth-error"));
}

async function unlock() {
  const key = getKey("admin");
  if (key && key === probing) return;
  const gen = ++generation;
  stopAll();
  if (!key) return lock(null);
  probing = key;
  let engines;
  try {
    // One cheap admin call proves the key before anything else is shown or polled.
    engines = await api("/admin/engines", { key });
  } catch (err) {
    if (gen === generation) lock(err);
    return;
  } finally {
    if (probing === key) probing = null;
  }
  if (gen !== generation) return;
  clearError($("auth-error"));
  $("auth").hidden = true;
  $("panels").hidden = false;
  const models = Object.entries(engines.models || {}).map(([id, stats]) => ({ id, kind: stats.kind }));
  for (const panel of panels) panel.start({ models, engines });
}

const input = $("admin-key");
bindKey(input, "admin", unlock);
$("admin-key-form").addEventListener("submit", (event) => {
  event.preventDefault(); // the CSP forbids form actions anyway; this is a key box, not a form post
  setKey("admin", input.value.trim());
  unlock();
});
unlock();
