// rnnkit playground: pick a model, type, run; one view per task. No dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const ENDPOINT = { lm: "generate", classify: "classify", tag: "tag", seq2seq: "translate" };
const VIEW = { lm: "result-generate", classify: "result-classify", tag: "result-tag", seq2seq: "result-translate" };
const PLACEHOLDER = {
  lm: "Text to continue (the model's characters or words)",
  classify: "A text to classify",
  tag: "Whitespace-separated tokens, one sentence per line",
  seq2seq: "A sentence to translate",
};
const PALETTE = ["#8ecae6", "#ffb703", "#90be6d", "#f4978e", "#cdb4db", "#f9c74f", "#43aa8b", "#ffafcc",
  "#a3c4f3", "#e9c46a", "#b5e48c", "#f28482", "#bde0fe", "#d4a373", "#99d98c", "#c77dff"];

let models = [];
let limits = { max_chars: 2000, max_batch: 32 };

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function current() {
  return models.find((m) => m.name === $("model").value);
}

function setState(state, message = "") {
  $("result").dataset.state = state;
  $("status").textContent = message;
  $("run").disabled = state === "loading";
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function loadModels() {
  try {
    const r = await fetch("api/models");
    const body = await r.json();
    if (!r.ok) throw new Error(body.detail || r.statusText);
    models = body.models;
    limits = body.limits;
  } catch (e) {
    showError("cannot list the models: " + e.message);
    return;
  }
  const select = $("model");
  select.innerHTML = "";
  for (const m of models) select.append(el("option", { value: m.name }, `${m.name} (${m.task})`));
  $("text").maxLength = limits.max_chars;
  onModelChange();
}

function onModelChange() {
  const m = current();
  if (!m) return;
  $("task-name").textContent = m.task;
  $("text").placeholder = PLACEHOLDER[m.task];
  $("controls-generate").hidden = m.task !== "lm";
  $("controls-translate").hidden = m.task !== "seq2seq";
  const info = [];
  if (m.task === "lm") {
    const labels = m.labels || [];
    $("label-field").hidden = labels.length === 0;
    $("label").innerHTML = "";
    for (const l of labels) $("label").append(el("option", { value: l }, l));
    info.push(`${m.tokenizer || "char"} tokens`);
    if (labels.length) info.push("generates for a label; the text may be empty");
  } else if (m.task === "classify") {
    info.push(`${m.labels.length} classes: ${m.labels.join(", ")}`);
  } else if (m.task === "tag") {
    info.push(`${m.tags.length} tags${m.entity ? " (entities)" : ""}`);
  } else if (m.task === "seq2seq") {
    $("beam").placeholder = String(m.beam);
    info.push(m.attention ? "with attention" : "no attention (no heatmap)");
  }
  $("model-info").textContent = info.join(" · ");
  for (const v of Object.values(VIEW)) $(v).hidden = true;
  $("result").dataset.task = m.task;
  setState("idle");
  showError("");
}

function numberOrNull(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

function requestBody(m, text) {
  const body = { model: m.name, text };
  if (m.task === "lm") {
    body.length = numberOrNull("length") || 200;
    body.temperature = Number($("temperature").value);
    body.top_p = Number($("top-p").value);
    const seed = numberOrNull("seed");
    if (seed !== null) body.seed = seed;
    if ((m.labels || []).length) body.label = $("label").value;
  } else if (m.task === "seq2seq") {
    const beam = numberOrNull("beam");
    if (beam !== null) body.beam = beam;
    body.n_best = Math.min(numberOrNull("n-best") || 1, beam || m.beam || 1);
  }
  return body;
}

async function run() {
  const m = current();
  if (!m) return;
  showError("");
  setState("loading", "running…");
  const t0 = performance.now();
  let r, body;
  try {
    r = await fetch("api/" + ENDPOINT[m.task], {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(requestBody(m, $("text").value)),
    });
    body = await r.json();
  } catch (e) {
    showError("request failed: " + e.message);
    setState("error");
    return;
  }
  if (!r.ok) {
    showError(body.detail || `HTTP ${r.status}`);
    setState("error", `HTTP ${r.status}`);
    return;
  }
  for (const v of Object.values(VIEW)) $(v).hidden = v !== VIEW[m.task];
  ({ lm: renderGenerate, classify: renderClassify, tag: renderTag, seq2seq: renderTranslate })[m.task](body, m);
  setState("done", `${Math.round(performance.now() - t0)} ms`);
}

// -- views ---------------------------------------------------------------------------------------

function renderGenerate(body) {
  const out = $("generated");
  out.innerHTML = "";
  for (const res of body.results) {
    for (const s of res.samples) {
      const div = el("div", { class: "sample" });
      const cut = s.startsWith(res.prime) ? res.prime.length : 0;
      div.append(el("span", { class: "prime" }, s.slice(0, cut)), document.createTextNode(s.slice(cut)));
      out.append(div);
    }
  }
}

function renderClassify(body) {
  const bars = $("bars");
  bars.innerHTML = "";
  body.results.forEach((res, i) => {
    if (i > 0) bars.append(el("div", { class: "text-sep" }));
    const entries = Object.entries(res.probs).sort((a, b) => b[1] - a[1]);
    for (const [label, p] of entries) {
      const row = el("div", { class: "bar-row" + (label === res.label ? " best" : ""), "data-label": label,
        "data-prob": String(p) });
      const track = el("div", { class: "bar-track" });
      const fill = el("div", { class: "bar-fill" });
      fill.style.width = (100 * p).toFixed(1) + "%";
      track.append(fill);
      row.append(el("span", { class: "bar-label", title: label }, label), track,
        el("span", { class: "bar-value" }, (100 * p).toFixed(1) + "%"));
      bars.append(row);
    }
  });
  $("predicted-label").textContent = body.results.map((r) => r.label).join(", ");
}

function tagType(tag) {
  return /^[BIESL]-./.test(tag) ? tag.slice(2) : tag;
}

function tagColors(tags) {
  const types = [];
  for (const t of tags) {
    const k = tagType(t);
    if (k !== "O" && !types.includes(k)) types.push(k);
  }
  const colors = {};
  types.forEach((k, i) => { colors[k] = PALETTE[i % PALETTE.length]; });
  return colors;
}

function renderTag(body) {
  const colors = tagColors(body.tags);
  const box = $("tokens");
  box.innerHTML = "";
  body.results.forEach((res, i) => {
    if (i > 0) box.append(el("div", { class: "text-sep" }));
    for (const sent of res.sentences) {
      const line = el("div", { class: "sentence" });
      sent.tokens.forEach((tok, j) => {
        const tag = sent.tags[j];
        const color = colors[tagType(tag)];
        const span = el("span", { class: "token" + (color ? "" : " plain"), "data-tag": tag, title: tag });
        if (color) span.style.background = color;
        span.append(el("span", { class: "word" }, tok), el("span", { class: "tag" }, tag));
        line.append(span);
      });
      box.append(line);
    }
  });
  const legend = $("legend");
  legend.innerHTML = "";
  const used = new Set(body.results.flatMap((r) => r.sentences.flatMap((s) => s.tags.map(tagType))));
  for (const [k, c] of Object.entries(colors)) {
    const item = el("span", { class: "legend-item" + (used.has(k) ? " used" : ""), "data-type": k });
    const sw = el("span", { class: "swatch" });
    sw.style.background = c;
    item.append(sw, document.createTextNode(k));
    if (!used.has(k)) item.style.opacity = "0.45";
    legend.append(item);
  }
}

function renderTranslate(body) {
  const res = body.results[0];
  $("translation").textContent = res.translation;
  const list = $("n-best-list");
  list.innerHTML = "";
  if (res.n_best.length > 1) {
    for (const h of res.n_best) list.append(el("li", {}, `${h.text}  (${h.score.toFixed(3)})`));
  }
  drawHeatmap(res.attention);
}

function drawHeatmap(att) {
  const canvas = $("heatmap");
  const ctx = canvas.getContext("2d");
  $("heatmap-tip").textContent = "";
  if (!att) {
    canvas.width = canvas.height = 0;
    canvas.dataset.rows = canvas.dataset.cols = "0";
    $("heatmap-note").textContent = "this model has no attention weights";
    return;
  }
  $("heatmap-note").textContent = "rows: output tokens · columns: source tokens · darker = more attention";
  const src = att.source_tokens, out = att.output_tokens, w = att.weights;
  ctx.font = "13px system-ui, sans-serif";
  const width = (s) => ctx.measureText(s).width;
  const cell = Math.max(14, Math.min(36, Math.floor(640 / Math.max(src.length, 1))));
  const left = Math.ceil(Math.max(...out.map(width), 20)) + 12;
  const top = Math.ceil(Math.max(...src.map(width), 20) * 0.75) + 16;
  const W = left + cell * src.length + 8, H = top + cell * out.length + 8;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = W * dpr;
  canvas.height = H * dpr;
  canvas.style.width = W + "px";
  canvas.style.height = H + "px";
  ctx.scale(dpr, dpr);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, W, H);
  ctx.font = "13px system-ui, sans-serif";
  for (let i = 0; i < out.length; i++) {
    for (let j = 0; j < src.length; j++) {
      const v = Math.max(0, Math.min(1, w[i][j]));
      const shade = Math.round(255 - 215 * Math.sqrt(v));
      ctx.fillStyle = `rgb(${shade}, ${Math.round(shade * 0.95 + 8)}, 255)`;
      ctx.fillRect(left + j * cell, top + i * cell, cell - 1, cell - 1);
    }
  }
  ctx.fillStyle = "#1d2430";
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  out.forEach((t, i) => ctx.fillText(t, left - 6, top + i * cell + cell / 2));
  ctx.textAlign = "left";
  src.forEach((t, j) => {
    ctx.save();
    ctx.translate(left + j * cell + cell / 2, top - 6);
    ctx.rotate(-Math.PI / 4);
    ctx.fillText(t, 0, 0);
    ctx.restore();
  });
  canvas.dataset.rows = String(out.length);
  canvas.dataset.cols = String(src.length);
  canvas.onmousemove = (ev) => {
    const r = canvas.getBoundingClientRect();
    const j = Math.floor((ev.clientX - r.left - left) / cell), i = Math.floor((ev.clientY - r.top - top) / cell);
    $("heatmap-tip").textContent = i >= 0 && j >= 0 && i < out.length && j < src.length
      ? `${out[i]} ← ${src[j]}: ${w[i][j].toFixed(3)}` : "";
  };
}

// -- wiring --------------------------------------------------------------------------------------

$("model").addEventListener("change", onModelChange);
$("run").addEventListener("click", run);
$("text").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) run();
});
for (const id of ["temperature", "top-p"]) {
  $(id).addEventListener("input", () => { $(id + "-value").textContent = Number($(id).value).toFixed(2); });
}
loadModels();
