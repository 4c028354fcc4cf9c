// Small SVG charts drawn by hand (no library, no CDN): bars and a similarity heatmap.
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// Vertical bars: labels[i] under values[i]; each bar carries data-label and data-value for tests.
export function barChart(container, { labels, values, title = "", width = 560, height = 220 }) {
  const pad = { top: 24, right: 12, bottom: 44, left: 56 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const max = Math.max(1, ...values);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart bar-chart", role: "img" });
  root.append(svg("title", {}, title));
  if (title) root.append(svg("text", { x: pad.left, y: 16, class: "chart-title" }, title));
  root.append(svg("line", { x1: pad.left, y1: pad.top + h, x2: pad.left + w, y2: pad.top + h, class: "axis" }));
  root.append(svg("text", { x: pad.left - 6, y: pad.top + 4, class: "tick", "text-anchor": "end" }, max.toLocaleString()));
  root.append(svg("text", { x: pad.left - 6, y: pad.top + h, class: "tick", "text-anchor": "end" }, "0"));
  const step = w / Math.max(1, values.length);
  values.forEach((value, i) => {
    const bh = (value / max) * h;
    const x = pad.left + i * step + step * 0.15;
    const bar = svg("rect", { x, y: pad.top + h - bh, width: step * 0.7, height: bh, class: "bar" });
    bar.dataset.label = labels[i];
    bar.dataset.value = value;
    bar.append(svg("title", {}, `${labels[i]}: ${value.toLocaleString()}`));
    root.append(bar);
    const label = String(labels[i]);
    root.append(
      svg("text", { x: x + step * 0.35, y: pad.top + h + 16, class: "tick", "text-anchor": "middle" }, label.length > 14 ? `${label.slice(0, 13)}…` : label),
    );
  });
  container.replaceChildren(root);
  return root;
}

// An n×n matrix of values in [-1, 1] (cosine similarities) as coloured cells with their values.
export function heatmap(container, { labels, matrix, title = "", cell = 56 }) {
  const n = labels.length;
  const left = 28;
  const top = title ? 28 : 8;
  const size = left + n * cell + 8;
  const root = svg("svg", { viewBox: `0 0 ${size} ${top + n * cell + 8}`, class: "chart heatmap", role: "img" });
  root.append(svg("title", {}, title || "similarity"));
  if (title) root.append(svg("text", { x: left, y: 18, class: "chart-title" }, title));
  for (let i = 0; i < n; i++) {
    root.append(svg("text", { x: left - 6, y: top + i * cell + cell / 2 + 4, class: "tick", "text-anchor": "end" }, i + 1));
    for (let j = 0; j < n; j++) {
      const v = matrix[i][j];
      const t = Math.max(0, Math.min(1, (v + 1) / 2));
      const rect = svg("rect", { x: left + j * cell, y: top + i * cell, width: cell - 2, height: cell - 2, class: "cell" });
      rect.setAttribute("fill", `hsl(${Math.round(220 - 200 * t)}, 70%, ${Math.round(92 - 45 * t)}%)`);
      rect.dataset.i = i;
      rect.dataset.j = j;
      rect.dataset.value = v.toFixed(4);
      rect.append(svg("title", {}, `${labels[i]} ↔ ${labels[j]}: ${v.toFixed(3)}`));
      root.append(rect);
      root.append(svg("text", { x: left + j * cell + cell / 2 - 1, y: top + i * cell + cell / 2 + 4, class: "cell-value", "text-anchor": "middle" }, v.toFixed(2)));
    }
  }
  container.replaceChildren(root);
  return root;
}
