// "Copy as code": the exact body the page sends, as the official Python and Node SDKs and curl.
// The key is never inlined; every snippet reads FACEPLATE_API_KEY from the environment.

const ENV = "FACEPLATE_API_KEY";

// Keyword arguments the openai Python SDK takes; anything else goes through extra_body.
const PY_KWARGS = {
  "/v1/chat/completions": new Set([
    "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop", "stream",
    "stream_options", "response_format", "tools", "tool_choice", "parallel_tool_calls", "n", "logprobs",
    "top_logprobs", "presence_penalty", "frequency_penalty", "logit_bias", "user",
  ]),
  "/v1/embeddings": new Set(["model", "input", "dimensions", "encoding_format", "user"]),
};

const WIDTH = 72; // a container that fits on one line at its indent is written on one line

// A JSON value as a literal in Python (py) or JavaScript/JSON, with small containers kept on one line.
// JSON string escapes are all valid in Python and JavaScript string literals.
function literal(value, indent, py) {
  if (value === null || value === undefined) return py ? "None" : "null";
  if (typeof value === "boolean") return py ? (value ? "True" : "False") : String(value);
  if (typeof value !== "object") return JSON.stringify(value);
  const inner = indent + (py ? "    " : "  ");
  const items = Array.isArray(value)
    ? value.map((v) => literal(v, inner, py))
    : Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${literal(v, inner, py)}`);
  const [open, close] = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  if (items.length === 0) return open + close;
  const flat = `${open}${items.join(", ")}${close}`;
  if (!flat.includes("\n") && indent.length + flat.length <= WIDTH) return flat;
  const comma = py ? "," : ""; // a trailing comma is Python style; JSON forbids it
  return `${open}\n${items.map((item) => inner + item).join(",\n")}${comma}\n${indent}${close}`;
}

export const pyLiteral = (value, indent = "") => literal(value, indent, true);
export const jsonLiteral = (value, indent = "") => literal(value, indent, false);

function pyCall(path, body) {
  const known = PY_KWARGS[path];
  const args = [];
  const extra = {};
  for (const [k, v] of Object.entries(body)) {
    if (known.has(k)) args.push(`    ${k}=${pyLiteral(v, "    ")},`);
    else extra[k] = v;
  }
  if (Object.keys(extra).length) args.push(`    extra_body=${pyLiteral(extra, "    ")},`);
  return args.join("\n");
}

export function python(path, body, origin) {
  const usesJson = path !== "/v1/embeddings" && !body.stream && Boolean(body.tools || body.response_format);
  const head = [
    ...(usesJson ? ["import json"] : []),
    "import os",
    "",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${JSON.stringify(origin + "/v1")}, api_key=os.environ[${JSON.stringify(ENV)}])`,
    "",
  ];
  if (path === "/v1/embeddings") {
    return [
      ...head,
      `response = client.embeddings.create(\n${pyCall(path, body)}\n)`,
      "vectors = [item.embedding for item in response.data]",
      'print(len(vectors), "vectors of", len(vectors[0]), "dimensions;", response.usage.prompt_tokens, "tokens")',
      "",
    ].join("\n");
  }
  if (body.stream) {
    return [
      ...head,
      `stream = client.chat.completions.create(\n${pyCall(path, body)}\n)`,
      "for chunk in stream:",
      "    if chunk.choices and chunk.choices[0].delta.content:",
      '        print(chunk.choices[0].delta.content, end="", flush=True)',
      "    if chunk.usage:",
      '        print("\\n", chunk.usage)',
      "",
    ].join("\n");
  }
  const tail = body.tools
    ? [
        "message = completion.choices[0].message",
        "for call in message.tool_calls or []:",
        "    print(call.function.name, json.loads(call.function.arguments))",
        "if message.content:",
        "    print(message.content)",
      ]
    : body.response_format
      ? ["print(json.loads(completion.choices[0].message.content))"]
      : ["print(completion.choices[0].message.content)"];
  return [...head, `completion = client.chat.completions.create(\n${pyCall(path, body)}\n)`, ...tail, ""].join("\n");
}

const jsObject = (body) => jsonLiteral(body);

export function node(path, body, origin) {
  const head = [
    'import OpenAI from "openai";',
    "",
    `const client = new OpenAI({ baseURL: ${JSON.stringify(origin + "/v1")}, apiKey: process.env.${ENV} });`,
    "",
  ];
  if (path === "/v1/embeddings") {
    return [
      ...head,
      `const response = await client.embeddings.create(${jsObject(body)});`,
      "const vectors = response.data.map((item) => item.embedding);",
      'console.log(vectors.length, "vectors of", vectors[0].length, "dimensions;", response.usage.prompt_tokens, "tokens");',
      "",
    ].join("\n");
  }
  if (body.stream) {
    return [
      ...head,
      `const stream = await client.chat.completions.create(${jsObject(body)});`,
      "for await (const chunk of stream) {",
      '  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");',
      '  if (chunk.usage) console.log("\\n", chunk.usage);',
      "}",
      "",
    ].join("\n");
  }
  const tail = body.tools
    ? [
        "const message = completion.choices[0].message;",
        "for (const call of message.tool_calls ?? []) console.log(call.function.name, JSON.parse(call.function.arguments));",
        "if (message.content) console.log(message.content);",
      ]
    : body.response_format
      ? ["console.log(JSON.parse(completion.choices[0].message.content));"]
      : ["console.log(completion.choices[0].message.content);"];
  return [...head, `const completion = await client.chat.completions.create(${jsObject(body)});`, ...tail, ""].join("\n");
}

// Single-quoted for a POSIX shell: a ' inside becomes '\''.
function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

export function curl(path, body, origin) {
  return [
    `curl ${body.stream ? "-N " : ""}${origin}${path} \\`,
    `  -H "Authorization: Bearer $${ENV}" \\`,
    '  -H "Content-Type: application/json" \\',
    `  -d ${shellQuote(jsonLiteral(body))}`,
    "",
  ].join("\n");
}

export const LANGS = { python, node, curl };
