// The Node clients people use, end to end against a running Faceplate server.
//
// Run by tests/e2e/test_node_clients_e2e.py, which starts the server with
//   --alias gpt-4o-mini=smollm2-135m-instruct --alias text-embedding-3-small=all-minilm-l6-v2
// and sets FACEPLATE_BASE_URL (…/v1) and FACEPLATE_API_KEY. By hand:
//   FACEPLATE_BASE_URL=http://127.0.0.1:8000/v1 FACEPLATE_API_KEY=... node --test tests/node/
//
// The chat model is a 135M model: these tests check the wire contract and the shapes the
// clients hand back, never the quality of the text.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { embed, embedMany, generateObject, generateText, NoObjectGeneratedError, streamText } from "ai";
import OpenAI from "openai";
import { z } from "zod";

const baseURL = process.env.FACEPLATE_BASE_URL;
const apiKey = process.env.FACEPLATE_API_KEY;
if (!baseURL || !apiKey) {
  throw new Error("set FACEPLATE_BASE_URL (…/v1) and FACEPLATE_API_KEY to a running Faceplate server");
}

const CHAT = "gpt-4o-mini";
const EMBED = "text-embedding-3-small";
const MAX_TOKENS = 24;
const HI = [{ role: "user", content: "Say hi." }];

// Every request body the clients send, so a failure says exactly what went over the wire.
const sent = [];
async function recordingFetch(url, init) {
  let body = init?.body;
  try {
    body = typeof body === "string" ? JSON.parse(body) : body;
  } catch {
    // not JSON: keep the raw text
  }
  sent.push({ url: String(url), body });
  return fetch(url, init);
}
function lastBody(path) {
  const hit = sent.findLast((r) => r.url.endsWith(path));
  return hit && hit.body;
}
function explain(err, path) {
  const details = [err?.message ?? String(err)];
  if (err?.status) details.push(`status ${err.status}`);
  if (err?.statusCode) details.push(`status ${err.statusCode}`);
  if (err?.responseBody) details.push(`response ${err.responseBody}`);
  if (err?.error) details.push(`error ${JSON.stringify(err.error)}`);
  if (err?.cause?.responseBody) details.push(`response ${err.cause.responseBody}`);
  details.push(`request ${JSON.stringify(lastBody(path))}`);
  return details.join("\n");
}
async function sendsOk(path, fn) {
  try {
    return await fn();
  } catch (err) {
    assert.fail(explain(err, path));
  }
}

describe("openai (official Node SDK)", () => {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000, fetch: recordingFetch });

  test("chat.completions.create", async () => {
    const r = await sendsOk("/chat/completions", () =>
      client.chat.completions.create({ model: CHAT, messages: HI, max_tokens: MAX_TOKENS }),
    );
    assert.equal(r.object, "chat.completion");
    assert.equal(r.model, CHAT);
    assert.ok(r.id);
    assert.equal(r.choices.length, 1);
    const [choice] = r.choices;
    assert.equal(choice.message.role, "assistant");
    assert.equal(typeof choice.message.content, "string");
    assert.ok(choice.message.content.length > 0, "empty content");
    assert.ok(["stop", "length"].includes(choice.finish_reason), `finish_reason ${choice.finish_reason}`);
    assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  });

  test("chat.completions.create with stream: true", async () => {
    const stream = await sendsOk("/chat/completions", () =>
      client.chat.completions.create({
        model: CHAT,
        messages: HI,
        max_tokens: MAX_TOKENS,
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    let text = "";
    let finish = null;
    let usage = null;
    let chunks = 0;
    const ids = new Set();
    for await (const chunk of stream) {
      chunks += 1;
      ids.add(chunk.id);
      assert.equal(chunk.object, "chat.completion.chunk");
      assert.equal(chunk.model, CHAT);
      for (const choice of chunk.choices) {
        text += choice.delta?.content ?? "";
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    assert.ok(chunks > 1, `only ${chunks} chunk(s)`);
    assert.equal(ids.size, 1, "every chunk of one completion shares its id");
    assert.ok(text.length > 0, "no content deltas");
    assert.ok(["stop", "length"].includes(finish), `finish_reason ${finish}`);
    assert.ok(usage && usage.completion_tokens > 0, "include_usage: no usage chunk");
  });

  test("embeddings.create", async () => {
    const r = await sendsOk("/embeddings", () =>
      client.embeddings.create({ model: EMBED, input: ["a cat", "a dog"] }),
    );
    assert.equal(r.object, "list");
    assert.equal(r.model, EMBED);
    assert.equal(r.data.length, 2);
    r.data.forEach((d, i) => {
      assert.equal(d.object, "embedding");
      assert.equal(d.index, i);
      assert.ok(Array.isArray(d.embedding) && d.embedding.length > 0);
      assert.ok(d.embedding.every(Number.isFinite));
    });
    assert.equal(r.data[0].embedding.length, r.data[1].embedding.length);
    assert.ok(r.usage.prompt_tokens > 0);
  });

  test("embeddings.create with a single string (the SDK asks for base64 by default)", async () => {
    const r = await sendsOk("/embeddings", () => client.embeddings.create({ model: EMBED, input: "a cat" }));
    assert.equal(r.data.length, 1);
    const [d] = r.data;
    assert.ok(Array.isArray(d.embedding) && d.embedding.length > 0, "the SDK decodes base64 into numbers");
    assert.ok(d.embedding.every(Number.isFinite));
  });
});

describe("Vercel AI SDK (ai + @ai-sdk/openai-compatible)", () => {
  const faceplate = createOpenAICompatible({ name: "faceplate", baseURL, apiKey, fetch: recordingFetch });
  const settings = { maxOutputTokens: MAX_TOKENS, maxRetries: 0 };

  test("generateText", async () => {
    const r = await sendsOk("/chat/completions", () =>
      generateText({ model: faceplate(CHAT), prompt: "Say hi.", ...settings }),
    );
    assert.equal(typeof r.text, "string");
    assert.ok(r.text.length > 0, "empty text");
    assert.ok(["stop", "length"].includes(r.finishReason), `finishReason ${r.finishReason}`);
    assert.ok(r.usage.inputTokens > 0 && r.usage.outputTokens > 0);
    assert.equal(r.response.modelId, CHAT);
  });

  test("streamText (textStream)", async () => {
    const errors = [];
    const r = streamText({ model: faceplate(CHAT), prompt: "Say hi.", ...settings, onError: ({ error }) => errors.push(error) });
    const parts = [];
    for await (const part of r.textStream) parts.push(part);
    if (errors.length) assert.fail(explain(errors[0], "/chat/completions"));
    assert.ok(parts.length > 1, `only ${parts.length} text part(s)`);
    assert.ok(parts.join("").length > 0, "no text");
    assert.equal(await r.text, parts.join(""));
    const finish = await r.finishReason;
    assert.ok(["stop", "length"].includes(finish), `finishReason ${finish}`);
    assert.equal(lastBody("/chat/completions").stream, true);
  });

  // Without supportsStructuredOutputs (the default) the provider sends
  // response_format {"type":"json_object"} with no schema, and nothing adds the word "JSON" to
  // the caller's messages: OpenAI would refuse it; Faceplate's lenient mode answers under its grammar.
  test("generateObject with a zod schema (provider defaults)", async () => {
    await person(faceplate, { type: "json_object" });
  });

  test("generateObject with a zod schema (supportsStructuredOutputs: true)", async () => {
    const structured = createOpenAICompatible({
      name: "faceplate",
      baseURL,
      apiKey,
      fetch: recordingFetch,
      supportsStructuredOutputs: true,
    });
    await person(structured, "json_schema");
  });

  async function person(provider, expectedFormat) {
    const schema = z.object({ name: z.string(), age: z.number() });
    const checkFormat = () => {
      const sentFormat = lastBody("/chat/completions").response_format;
      if (expectedFormat === "json_schema") {
        assert.equal(sentFormat.type, "json_schema");
        assert.equal(sentFormat.json_schema.schema.type, "object");
      } else {
        assert.deepEqual(sentFormat, expectedFormat, "the provider's default without structuredOutputs");
      }
    };
    let r;
    try {
      r = await generateObject({
        model: provider(CHAT),
        schema,
        prompt: "Make up a person with a name and an age.",
        ...settings,
        maxOutputTokens: 48,
      });
    } catch (err) {
      // A 135M model may write JSON that misses the schema; that is the model, not the wire.
      // Anything the server refused is a failure.
      if (NoObjectGeneratedError.isInstance(err)) {
        checkFormat();
        assert.equal(typeof err.text, "string");
        return;
      }
      assert.fail(explain(err, "/chat/completions"));
    }
    checkFormat();
    assert.deepEqual(schema.parse(r.object), r.object);
    assert.ok(["stop", "length"].includes(r.finishReason), `finishReason ${r.finishReason}`);
  }

  test("embed", async () => {
    const r = await sendsOk("/embeddings", () =>
      embed({ model: faceplate.textEmbeddingModel(EMBED), value: "a cat", maxRetries: 0 }),
    );
    assert.ok(Array.isArray(r.embedding) && r.embedding.length > 0);
    assert.ok(r.embedding.every(Number.isFinite));
    assert.ok(r.usage.tokens > 0);
  });

  test("embedMany", async () => {
    const values = ["a cat", "a dog", "a car"];
    const r = await sendsOk("/embeddings", () =>
      embedMany({ model: faceplate.textEmbeddingModel(EMBED), values, maxRetries: 0 }),
    );
    assert.equal(r.embeddings.length, values.length);
    const dim = r.embeddings[0].length;
    assert.ok(dim > 0);
    for (const e of r.embeddings) {
      assert.equal(e.length, dim);
      assert.ok(e.every(Number.isFinite));
    }
    assert.deepEqual(r.values, values);
  });
});
