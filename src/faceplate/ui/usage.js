// Usage from GET /admin/usage grouped by key, model or UTC day: a table and a bar chart of total
// tokens. Refreshed by the button and every 5 s while the tab is visible (a hidden tab costs nothing).
import { api, clearError, el, showError } from "./common.js";
import { barChart } from "./chart.js";

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);
const fmt = (n) => Number(n || 0).toLocaleString();

// The API's `until` is exclusive; the date box means "up to and including that day".
function nextDay(date) {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

// What a row is called in the table and under its bar. Key names need not be unique, so a name
// shared by several keys is told apart by the key's redacted prefix.
function labels(by, rows) {
  if (by !== "key") return rows.map((r) => String(r[by]));
  const seen = {};
  for (const r of rows) seen[r.name] = (seen[r.name] || 0) + 1;
  return rows.map((r) => (r.key && seen[r.name] > 1 ? `${r.name} ${r.redacted_value}` : r.key ? r.name : "static/anonymous"));
}

export class UsagePanel {
  constructor(ctx) {
    this.ctx = ctx;
    this.by = "key";
    this.timer = null;
    this.running = false;
    this.ticket = 0;
    for (const tab of document.querySelectorAll("#usage-tabs button")) {
      tab.addEventListener("click", () => this.select(tab.dataset.by));
    }
    $("usage-refresh").addEventListener("click", () => this.refresh());
    $("usage-since").addEventListener("change", () => this.refresh());
    $("usage-until").addEventListener("change", () => this.refresh());
    document.addEventListener("visibilitychange", () => {
      if (this.running && !document.hidden) this.refresh();
    });
  }

  start() {
    this.stop();
    this.running = true;
    this.refresh();
    this.timer = setInterval(() => {
      if (!document.hidden) this.refresh();
    }, REFRESH_MS);
  }

  stop() {
    this.running = false;
    this.ticket++;
    clearInterval(this.timer);
    this.timer = null;
  }

  select(by) {
    this.by = by;
    for (const tab of document.querySelectorAll("#usage-tabs button")) tab.setAttribute("aria-selected", String(tab.dataset.by === by));
    $("usage-group-head").textContent = by;
    $("usage-rows").replaceChildren();
    this.refresh();
  }

  query() {
    const params = new URLSearchParams({ by: this.by });
    const since = $("usage-since").value;
    const until = $("usage-until").value;
    if (since) params.set("since", since);
    if (until) params.set("until", nextDay(until));
    return `/admin/usage?${params}`;
  }

  async refresh() {
    if (!this.running) return;
    const ticket = ++this.ticket; // an answer for an older tab or date range is dropped
    const by = this.by;
    try {
      const report = await api(this.query(), { key: this.ctx.key() });
      if (ticket !== this.ticket) return;
      clearError($("usage-error"));
      this.render(by, report.data || []);
      $("usage-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      if (this.ctx.unauthorized(err) || ticket !== this.ticket) return;
      showError($("usage-error"), err);
    }
  }

  render(by, rows) {
    const names = labels(by, rows);
    const body = rows.map((r, i) =>
      el(
        "tr",
        { dataset: { group: r[by] ?? "", label: names[i] } },
        el("td", {}, by === "key" && r.key ? [names[i], " ", el("code", { class: "muted" }, r.redacted_value || "")] : names[i]),
        el("td", { dataset: { field: "requests" } }, fmt(r.requests)),
        el("td", { dataset: { field: "errors" } }, fmt(r.errors)),
        el("td", { dataset: { field: "prompt_tokens" } }, fmt(r.prompt_tokens)),
        el("td", { dataset: { field: "completion_tokens" } }, fmt(r.completion_tokens)),
        el("td", { dataset: { field: "total_tokens", value: r.total_tokens } }, fmt(r.total_tokens)),
      ),
    );
    if (!body.length) body.push(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No requests in this range.")));
    $("usage-rows").replaceChildren(...body);
    const chart = $("usage-chart");
    if (!rows.length) chart.replaceChildren();
    else barChart(chart, { labels: names, values: rows.map((r) => r.total_tokens || 0), title: `Total tokens by ${by}` });
  }
}
