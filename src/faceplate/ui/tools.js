// The Tools tab: a tools array and tool_choice, and the calls the model makes.
import { api, el, runRequest } from "./common.js";
import { parseJson } from "./structured.js";

const PATH = "/v1/chat/completions";

const EXAMPLE = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Get the current weather in a city.",
      parameters: {
        type: "object",
        properties: { city: { type: "string", description: "The city, e.g. Paris" } },
        required: ["city"],
        additionalProperties: false,
      },
    },
  },
];

export function toolsTab(ctx) {
  const $ = (id) => document.getElementById(id);
  const tools = $("tools-json");
  const choice = $("tools-choice");
  const prompt = $("tools-prompt");
  const runButton = $("tools-run");
  const status = $("tools-status");
  const error = $("tools-error");
  const result = $("tools-result");
  tools.value = JSON.stringify(EXAMPLE, null, 2);

  function body() {
    const list = parseJson(tools.value, "The tools");
    if (!Array.isArray(list)) throw new Error("The tools must be a JSON array.");
    return {
      model: ctx.chatModel(),
      messages: [{ role: "user", content: prompt.value.trim() }],
      ...ctx.sampling(),
      tools: list,
      tool_choice: choice.value,
    };
  }

  function callView(call) {
    const fn = call.function || {};
    let args;
    try {
      args = JSON.stringify(JSON.parse(fn.arguments), null, 2);
    } catch (_) {
      args = `${fn.arguments}\n(arguments are not valid JSON)`;
    }
    return el(
      "div",
      { class: "tool-call", dataset: { name: fn.name || "" } },
      el("div", {}, el("strong", { class: "name" }, fn.name || "?"), " ", el("span", { class: "muted" }, call.id || "")),
      el("pre", { class: "args" }, args),
    );
  }

  function build() {
    const request = body();
    if (!request.model) throw new Error("Pick a chat model first (enter the API key if the server needs one).");
    result.replaceChildren();
    return request;
  }

  function run() {
    return runRequest({ build, button: runButton, status, error }, async (request) => {
      const completion = await api(PATH, { method: "POST", body: request });
      const first = completion.choices[0];
      const calls = first.message.tool_calls || [];
      status.replaceChildren(`${calls.length} tool call${calls.length === 1 ? "" : "s"} · finish: ${first.finish_reason}`);
      result.append(...calls.map(callView));
      if (first.message.content) result.append(el("h3", {}, "Text"), el("pre", { class: "tool-text" }, first.message.content));
    });
  }

  runButton.addEventListener("click", () => run());
  return { request: () => ({ path: PATH, body: body() }) };
}
