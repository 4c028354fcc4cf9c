// Shared by the Faceplate pages. They speak only the public API, with keys the user types in;
// keys stay in this tab's sessionStorage and are never written into the page.

export class ApiError extends Error {
  constructor(status, error) {
    super(error && error.message ? error.message : `HTTP ${status}`);
    this.status = status;
    this.error = error || null; // OpenAI's {message, type, param, code}
  }
}

export function getKey(kind = "api") {
  return sessionStorage.getItem(`faceplate.${kind}Key`) || "";
}

export function setKey(kind, value) {
  if (value) sessionStorage.setItem(`faceplate.${kind}Key`, value);
  else sessionStorage.removeItem(`faceplate.${kind}Key`);
}

function headers(key, json) {
  const h = {};
  if (key) h.authorization = `Bearer ${key}`;
  if (json) h["content-type"] = "application/json";
  return h;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    /* not JSON: the status says enough */
  }
  return new ApiError(response.status, body && body.error);
}

// JSON in, JSON out; a non-2xx answer throws ApiError with OpenAI's error object.
export async function api(path, { method = "GET", body, key = getKey("api"), signal } = {}) {
  const response = await fetch(path, {
    method,
    headers: headers(key, body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

// POST a streamed request and call onEvent(parsed) for every `data:` event until [DONE].
// An `error` event (OpenAI's mid-stream error) throws ApiError.
export async function stream(path, body, { key = getKey("api"), signal, onEvent }) {
  const response = await fetch(path, { method: "POST", headers: headers(key, true), body: JSON.stringify(body), signal });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = frame
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue; // a keep-alive comment
      if (data === "[DONE]") return;
      const event = JSON.parse(data);
      if (event.error && !event.type) throw new ApiError(500, event.error);
      onEvent(event);
    }
  }
}

// A DOM node without innerHTML: text is always text.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Show an error (ApiError or anything thrown) in `node`, as OpenAI's fields when there are some.
export function showError(node, err) {
  node.replaceChildren();
  node.hidden = false;
  const e = err instanceof ApiError && err.error ? err.error : null;
  node.append(el("strong", {}, e ? `${err.status} ${e.type || "error"}` : "Error"), " ", err.message || String(err));
  if (e && e.param) node.append(el("span", { class: "param" }, ` (param: ${e.param})`));
  if (e && e.code) node.append(el("code", {}, ` ${e.code}`));
}

export function clearError(node) {
  node.replaceChildren();
  node.hidden = true;
}

// The key box at the top of a page: typed once, kept for this tab.
export function bindKey(input, kind, onChange) {
  input.value = getKey(kind);
  input.addEventListener("change", () => {
    setKey(kind, input.value.trim());
    if (onChange) onChange();
  });
}

// One click of a Run button: build the request (a throw shows there and sends nothing), then
// send it with the button disabled and `status` saying so; a failure shows in `error`.
export async function runRequest({ build, button, status, error, busy = "running…" }, send) {
  clearError(error);
  let request;
  try {
    request = build();
  } catch (err) {
    showError(error, err);
    return;
  }
  button.disabled = true;
  status.replaceChildren(busy);
  try {
    await send(request);
  } catch (err) {
    status.replaceChildren();
    showError(error, err);
  } finally {
    button.disabled = false;
  }
}
