// Live engine state from GET /admin/engines, polled every 1.5 s while the tab is visible. The endpoint only has counters,
// so rates (tokens/s, inputs/s) are the difference between two polls over the time between them.
import { api, clearError, el, showError } from "./common.js";

const POLL_MS = 1500;
const $ = (id) => document.getElementById(id);
const fmt = (n) => (typeof n === "number" ? n.toLocaleString() : "–");

function cell(field, ...children) {
  return el("td", { dataset: { field } }, ...children);
}

export class EnginesPanel {
  constructor(ctx) {
    this.ctx = ctx;
    this.timer = null;
    this.running = false;
    this.previous = null; // {at, models} of the last poll
  }

  start({ engines }) {
    this.stop();
    this.running = true;
    this.previous = null;
    this.render(engines, performance.now());
    this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
  }

  async poll() {
    if (!this.running) return;
    if (document.hidden) {
      // A background tab polls nothing; the next rate is still per second over the real gap.
      this.timer = setTimeout(() => this.poll(), POLL_MS);
      return;
    }
    try {
      const engines = await api("/admin/engines", { key: this.ctx.key() });
      if (!this.running) return;
      clearError($("engines-error"));
      this.render(engines, performance.now());
    } catch (err) {
      if (this.ctx.unauthorized(err) || !this.running) return;
      showError($("engines-error"), err); // keep polling: a restarting server comes back
    }
    // A chain of timeouts, not setInterval: a slow answer never stacks polls on top of each other.
    if (this.running) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  rate(id, counter, stats, at) {
    const before = this.previous && this.previous.models[id];
    if (!before || typeof stats[counter] !== "number" || typeof before[counter] !== "number") return null;
    const seconds = (at - this.previous.at) / 1000;
    if (seconds <= 0) return null;
    return Math.max(0, (stats[counter] - before[counter]) / seconds);
  }

  render(engines, at) {
    const models = engines.models || {};
    const state = $("engines-state");
    state.textContent = engines.draining ? "draining" : "serving";
    state.className = engines.draining ? "badge bad" : "badge ok";
    const rows = Object.entries(models).map(([id, s]) => (s.kind === "embedding" ? this.embeddingRow(id, s, at) : this.chatRow(id, s, at)));
    $("engines-rows").replaceChildren(...rows);
    this.previous = { at, models };
  }

  chatRow(id, s, at) {
    const tps = this.rate(id, "generated_tokens", s, at);
    const reused = s.prompt_tokens ? ` (${fmt(s.prompt_tokens_reused)}, ${Math.round((100 * (s.prompt_tokens_reused || 0)) / s.prompt_tokens)}%)` : "";
    const host = s.prompt_cache_entries
      ? ` · host cache: ${fmt(s.prompt_cache_entries)} prompts, ${Math.round((s.prompt_cache_bytes || 0) / 1048576)} MiB, ${fmt(s.prompt_cache_hits)} loaded`
      : "";
    const batch = s.batch_sequences ? ` + ${fmt(s.batch_sequences)} batch` : "";
    const queuedBatch = s.queued_batch_requests ? ` + ${fmt(s.queued_batch_requests)} batch` : "";
    return el(
      "tr",
      { dataset: { model: id } },
      el("td", {}, el("code", {}, id)),
      cell("kind", s.kind || "chat"),
      cell("running", el("span", { class: "num", dataset: { value: s.running_sequences ?? 0 } }, fmt(s.running_sequences)), ` / ${fmt(s.n_parallel)}${batch}`),
      cell("queued", el("span", { class: "num", dataset: { value: s.queued_requests ?? 0 } }, fmt(s.queued_requests)), queuedBatch),
      cell("rate", el("span", { class: "num", dataset: { value: tps === null ? "" : tps.toFixed(2) } }, tps === null ? "…" : tps.toFixed(1))),
      cell("prompt", fmt(s.prompt_tokens), reused, host),
      cell("generated", fmt(s.generated_tokens)),
      cell("done", `${fmt(s.completed)} / ${fmt(s.failed)}`),
    );
  }

  // Embedding engines batch inputs instead of running sequences: show what they do have.
  embeddingRow(id, s, at) {
    const ips = this.rate(id, "inputs", s, at);
    return el(
      "tr",
      { dataset: { model: id } },
      el("td", {}, el("code", {}, id)),
      cell("kind", s.kind),
      cell("running", el("span", { class: "num", dataset: { value: s.active_requests ?? 0 } }, fmt(s.active_requests)), " requests"),
      cell("queued", el("span", { class: "num", dataset: { value: s.queued_inputs ?? 0 } }, fmt(s.queued_inputs)), " inputs"),
      cell("rate", el("span", { class: "num", dataset: { value: ips === null ? "" : ips.toFixed(2) } }, ips === null ? "…" : `${ips.toFixed(1)} inputs/s`)),
      cell("prompt", "–"),
      cell("generated", `${fmt(s.inputs)} inputs in ${fmt(s.batches)} batches`),
      cell("done", `– / ${fmt(s.failed_batches)} batches`),
    );
  }
}
