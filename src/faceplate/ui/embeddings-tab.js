// The Embeddings tab: a few sentences, their vectors from /v1/embeddings, and cosine similarities.
import { heatmap } from "./chart.js";
import { api, el, runRequest } from "./common.js";

const PATH = "/v1/embeddings";

const EXAMPLE = [
  "The cat is sleeping on the sofa.",
  "A kitten naps on the couch.",
  "The stock market fell sharply today.",
  "I am learning to play the guitar.",
].join("\n");

export function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

export function embeddingsTab(ctx) {
  const $ = (id) => document.getElementById(id);
  const model = $("emb-model");
  const input = $("emb-input");
  const runButton = $("emb-run");
  const stats = $("emb-stats");
  const error = $("emb-error");
  const chart = $("emb-chart");
  const legend = $("emb-legend");
  input.value = EXAMPLE;

  const sentences = () =>
    input.value
      .split("\n")
      .map((s) => s.trim())
      .filter(Boolean);

  function body() {
    return { model: model.value, input: sentences() };
  }

  function build() {
    const request = body();
    if (!request.model) throw new Error("Pick an embedding model first (enter the API key if the server needs one).");
    if (request.input.length < 2) throw new Error("Enter at least two sentences, one per line.");
    return request;
  }

  function run() {
    return runRequest({ build, button: runButton, status: stats, error, busy: "computing…" }, async (request) => {
      const response = await api(PATH, { method: "POST", body: request });
      const vectors = [...response.data].sort((a, b) => a.index - b.index).map((d) => d.embedding);
      const matrix = vectors.map((a) => vectors.map((b) => cosine(a, b)));
      heatmap(chart, { labels: request.input, matrix, title: "Cosine similarity" });
      legend.replaceChildren(...request.input.map((s) => el("li", {}, s)));
      const dims = vectors[0].length;
      stats.dataset.dimensions = dims;
      stats.dataset.promptTokens = response.usage.prompt_tokens;
      stats.replaceChildren(`${vectors.length} vectors · ${dims} dimensions · ${response.usage.prompt_tokens} tokens`);
    });
  }

  runButton.addEventListener("click", () => run());
  return { request: () => ({ path: PATH, body: body() }) };
}
