// The Structured output tab: a JSON schema as response_format, and the object that comes back.
import { api, el, runRequest } from "./common.js";

const PATH = "/v1/chat/completions";

const EXAMPLE = {
  type: "object",
  properties: {
    name: { type: "string", description: "Full name", maxLength: 40 },
    age: { type: "integer", minimum: 0, maximum: 120 },
    city: { type: "string", maxLength: 40 },
  },
  required: ["name", "age", "city"],
  additionalProperties: false,
};

// Parse a textarea's JSON, or throw an error that names the field.
export function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${err.message}`);
  }
}

export function structuredTab(ctx) {
  const $ = (id) => document.getElementById(id);
  const name = $("so-name");
  const schema = $("so-schema");
  const prompt = $("so-prompt");
  const runButton = $("so-run");
  const status = $("so-status");
  const error = $("so-error");
  const parsed = $("so-parsed");
  const raw = $("so-raw");
  schema.value = JSON.stringify(EXAMPLE, null, 2);

  function body() {
    return {
      model: ctx.chatModel(),
      messages: [{ role: "user", content: prompt.value.trim() }],
      ...ctx.sampling(),
      response_format: {
        type: "json_schema",
        json_schema: { name: name.value.trim() || "output", schema: parseJson(schema.value, "The schema"), strict: true },
      },
    };
  }

  function setStatus(ok, text) {
    status.dataset.valid = String(ok);
    status.className = `status ${ok ? "ok" : "bad"}`;
    status.replaceChildren(text);
  }

  // The server constrains decoding to the schema; this small check shows it held on this side too.
  function check(object, request) {
    const sch = request.response_format.json_schema.schema;
    const required = Array.isArray(sch.required) ? sch.required : [];
    const isObject = object !== null && typeof object === "object" && !Array.isArray(object);
    const missing = isObject ? required.filter((k) => !(k in object)) : required;
    if (sch.type === "object" && !isObject) return [false, "✗ valid JSON, but not an object"];
    if (missing.length) return [false, `✗ valid JSON, missing required keys: ${missing.join(", ")}`];
    return [true, `✓ valid JSON${required.length ? `; required keys present: ${required.join(", ")}` : ""}`];
  }

  function build() {
    const request = body();
    if (!request.model) throw new Error("Pick a chat model first (enter the API key if the server needs one).");
    parsed.replaceChildren();
    raw.replaceChildren();
    delete status.dataset.valid;
    return request;
  }

  function run() {
    return runRequest({ build, button: runButton, status, error }, async (request) => {
      const completion = await api(PATH, { method: "POST", body: request });
      const choice = completion.choices[0];
      const content = choice.message.content || "";
      raw.replaceChildren(content);
      if (choice.message.refusal) raw.append(el("div", { class: "muted" }, `refusal: ${choice.message.refusal}`));
      let object;
      try {
        object = JSON.parse(content);
      } catch (err) {
        const hint = choice.finish_reason === "length" ? " (cut off by max_tokens: raise it)" : "";
        setStatus(false, `✗ not valid JSON: ${err.message}${hint}`);
        return;
      }
      parsed.replaceChildren(JSON.stringify(object, null, 2));
      const [ok, text] = check(object, request);
      setStatus(ok, `${text} · finish: ${choice.finish_reason}`);
    });
  }

  runButton.addEventListener("click", () => run());
  return { request: () => ({ path: PATH, body: body() }) };
}
