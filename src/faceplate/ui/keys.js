// API keys: list, create, revoke through /admin/keys. A new key's secret is shown once, in a box
// that is removed from the page when dismissed; it is never stored, and the list never has it.
import { ApiError, api, clearError, el, showError } from "./common.js";

const $ = (id) => document.getElementById(id);
const FIELDS = ["name", "rpm", "tpm", "batch_token_limit", "expires_in"];

export function utc(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ") : "–";
}

export class KeysPanel {
  constructor(ctx) {
    this.ctx = ctx;
    this.loaded = 0; // newer list answers win
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.create();
    });
  }

  start({ models }) {
    this.renderModels(models);
    this.refresh();
  }

  stop() {
    this.loaded++;
  }

  renderModels(models) {
    const boxes = models.map(({ id, kind }) =>
      el("label", { class: "check" }, el("input", { type: "checkbox", name: "models", value: id }), ` ${id} `, el("span", { class: "muted" }, kind || "")),
    );
    $("key-models").replaceChildren(...(boxes.length ? boxes : [el("span", { class: "muted" }, "no models served")]));
  }

  async refresh() {
    const ticket = ++this.loaded;
    try {
      const list = await api("/admin/keys", { key: this.ctx.key() });
      if (ticket !== this.loaded) return;
      this.render(list.data || []);
    } catch (err) {
      if (!this.ctx.unauthorized(err) && ticket === this.loaded) showError($("keys-error"), err);
    }
  }

  render(keys) {
    const rows = keys.map((k) =>
      el(
        "tr",
        { dataset: { keyId: k.id, status: k.status } },
        el("td", {}, el("code", {}, k.id)),
        el("td", { dataset: { field: "name" } }, k.name),
        el("td", {}, el("code", {}, k.redacted_value)),
        el("td", { dataset: { field: "models" } }, k.models ? k.models.join(", ") : el("span", { class: "muted" }, "all")),
        el("td", {}, k.rpm ?? "–"),
        el("td", {}, k.tpm ?? "–"),
        el("td", {}, k.batch_token_limit ?? "–"),
        el("td", {}, utc(k.created_at)),
        el("td", {}, k.expires_at ? utc(k.expires_at) : "never"),
        el("td", { dataset: { field: "status" } }, el("span", { class: `status status-${k.status}` }, k.status)),
        el("td", {}, k.status === "active" ? el("button", { type: "button", class: "secondary revoke", onclick: () => this.revoke(k) }, "Revoke") : ""),
      ),
    );
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 11, class: "muted" }, "No keys yet (static keys from the configuration are not listed).")));
    $("keys-rows").replaceChildren(...rows);
  }

  body() {
    const form = $("key-form");
    const body = { name: form.elements.namedItem("name").value.trim() };
    for (const field of ["rpm", "tpm", "batch_token_limit"]) {
      const raw = form.elements.namedItem(field).value.trim();
      // A number the browser cannot read stays text, so the server names the field in its 400.
      if (raw) body[field] = Number.isFinite(Number(raw)) ? Number(raw) : raw;
    }
    const expires = form.elements.namedItem("expires_in").value.trim();
    if (expires && !/^(never|none)$/i.test(expires)) body.expires_in = /^\d+$/.test(expires) ? Number(expires) : expires;
    const models = [...form.querySelectorAll('input[name="models"]:checked')].map((box) => box.value);
    if (models.length) body.models = models; // none ticked: the key may use every model
    return body;
  }

  markInvalid(param) {
    const form = $("key-form");
    for (const field of FIELDS) form.elements.namedItem(field).removeAttribute("aria-invalid");
    const name = param && param.split(".")[0];
    if (name && FIELDS.includes(name)) form.elements.namedItem(name).setAttribute("aria-invalid", "true");
  }

  async create() {
    const button = $("key-create");
    button.disabled = true;
    clearError($("keys-error"));
    this.markInvalid(null);
    try {
      const created = await api("/admin/keys", { method: "POST", body: this.body(), key: this.ctx.key() });
      $("key-form").reset();
      this.showSecret(created);
      await this.refresh();
    } catch (err) {
      if (this.ctx.unauthorized(err)) return;
      showError($("keys-error"), err);
      if (err instanceof ApiError && err.error) this.markInvalid(err.error.param);
    } finally {
      button.disabled = false;
    }
  }

  showSecret(created) {
    const box = $("key-secret");
    const note = el("span", { class: "muted copy-note" });
    const secret = el("code", { class: "secret", id: "new-key-secret" }, created.key);
    const copy = async () => {
      try {
        await navigator.clipboard.writeText(created.key);
        note.textContent = "copied";
      } catch (_) {
        note.textContent = "copy failed: select the key and copy it by hand";
      }
    };
    const dismiss = () => box.replaceChildren(); // the secret leaves the page with the box
    box.replaceChildren(
      el(
        "div",
        { class: "secret-box", role: "status" },
        el("strong", {}, `New key "${created.name}" (${created.id})`),
        el("p", { class: "warn" }, "Copy it now: this is the only time the secret is shown. It is not stored anywhere this page can read again."),
        el("div", { class: "secret-line" }, secret, el("button", { type: "button", class: "secondary", id: "copy-secret", onclick: copy }, "Copy"), note),
        el("button", { type: "button", id: "dismiss-secret", onclick: dismiss }, "I have copied it"),
      ),
    );
  }

  async revoke(k) {
    if (!window.confirm(`Revoke key "${k.name}" (${k.redacted_value})? Requests with it will be refused.`)) return;
    clearError($("keys-error"));
    try {
      await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: "DELETE", key: this.ctx.key() });
    } catch (err) {
      if (this.ctx.unauthorized(err)) return;
      showError($("keys-error"), err);
    }
    await this.refresh();
  }
}
