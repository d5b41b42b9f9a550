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
let mode = "generate";      // language models: generate | inspect
let inspected = null;       // the last inspect answer and its request: { ans, req }

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
  $("modes").hidden = m.task !== "lm";
  $("controls-translate").hidden = m.task !== "seq2seq";
  const labels = m.task === "lm" ? m.labels || [] : [];
  $("label-field").hidden = labels.length === 0;
  $("label").innerHTML = "";
  for (const l of labels) $("label").append(el("option", { value: l }, l));
  const info = [];
  if (m.task === "lm") {
    info.push(`${m.tokenizer || "char"} tokens`);
    if (m.cell) info.push(`${m.num_layers}-layer ${m.cell.toUpperCase()}, ${m.hidden_size} units`);
    if (labels.length) info.push("generates for a label; the text may be empty");
    $("layer").min = String(-(m.num_layers || 1));
    $("layer").max = String((m.num_layers || 1) - 1);
  } else if (m.task === "classify") {
    info.push(`${m.labels.length} classes: ${m.labels.join(", ")}`);
  } else if (m.task === "tag") {
    info.push(`${m.tags.length} tags${m.entity ? " (entities)" : ""}`);
  } else if (m.task === "seq2seq") {
    $("beam").placeholder = String(m.beam);
    info.push(m.attention ? "with attention" : "no attention (no heatmap)");
  }
  $("model-info").textContent = info.join(" · ");
  setMode(mode);
}

function inspecting(m) {
  return m !== undefined && m.task === "lm" && mode === "inspect";
}

function setMode(next) {
  mode = next;
  const m = current();
  for (const b of document.querySelectorAll("#modes .tab")) b.setAttribute("aria-selected", String(b.dataset.mode === mode));
  $("controls-generate").hidden = !(m && m.task === "lm" && !inspecting(m));
  $("controls-inspect").hidden = !inspecting(m);
  if (m && m.task === "lm") {
    $("text").placeholder = inspecting(m) ? "Text to read: each character is coloured by a hidden unit" : PLACEHOLDER.lm;
  }
  for (const v of [...Object.values(VIEW), "result-inspect"]) $(v).hidden = true;
  $("result").dataset.task = m ? m.task : "";
  $("result").dataset.mode = inspecting(m) ? "inspect" : "";
  inspected = null;
  setState("idle");
  showError("");
}

function numberOrNull(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

function requestBody(m, text) {
  const body = { model: m.name, text };
  if ((m.labels || []).length && m.task === "lm") body.label = $("label").value;
  if (inspecting(m)) {
    const layer = numberOrNull("layer");
    if (layer !== null) body.layer = layer;
    const units = $("units").value.split(/[\s,]+/).filter((u) => u !== "").map(Number);
    if (units.length) body.units = units;
  } else if (m.task === "lm") {
    body.length = numberOrNull("length") || 200;
    body.temperature = Number($("temperature").value);
    body.top_p = Number($("top-p").value);
    const seed = numberOrNull("seed");
    if (seed !== null) body.seed = seed;
  } else if (m.task === "seq2seq") {
    const beam = numberOrNull("beam");
    if (beam !== null) body.beam = beam;
    body.n_best = Math.min(numberOrNull("n-best") || 1, beam || m.beam || 1);
  }
  return body;
}

// POST a request; the answer, or null after showing the error
async function post(endpoint, request) {
  showError("");
  setState("loading", "running…");
  let r, body;
  try {
    r = await fetch("api/" + endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    body = await r.json();
  } catch (e) {
    showError("request failed: " + e.message);
    setState("error");
    return null;
  }
  if (!r.ok) {
    showError(body.detail || `HTTP ${r.status}`);
    setState("error", `HTTP ${r.status}`);
    return null;
  }
  return body;
}

function showView(id) {
  for (const v of [...Object.values(VIEW), "result-inspect"]) $(v).hidden = v !== id;
}

async function run() {
  const m = current();
  if (!m) return;
  const t0 = performance.now();
  const request = requestBody(m, $("text").value);
  const inspect = inspecting(m);
  const body = await post(inspect ? "inspect" : ENDPOINT[m.task], request);
  if (!body) return;
  if (inspect) {
    showView("result-inspect");
    renderInspect(body, request, m);
  } else {
    showView(VIEW[m.task]);
    ({ lm: renderGenerate, classify: renderClassify, tag: renderTag, seq2seq: renderTranslate })[m.task](body, m);
  }
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

// -- inspect: a language model's hidden units over the text ---------------------------------------

// blue (negative) - white (0) - red (positive); |v| >= 1 is full colour
function activationColour(v) {
  const a = Math.min(1, Math.abs(v));
  const [r, g, b] = v < 0 ? [59, 92, 204] : [204, 59, 52];
  const mix = (c) => Math.round(255 + (c - 255) * a);
  return `rgb(${mix(r)}, ${mix(g)}, ${mix(b)})`;
}

function fmt(v) {
  return (v >= 0 ? "+" : "−") + Math.abs(v).toFixed(3);
}

function renderInspect(ans, req, m, unit) {
  inspected = { ans, req, words: (m.tokenizer || "char") !== "char" };
  const shown = unit !== undefined ? unit : ans.units[0];
  const best = {};  // unit -> its strongest [feature, r]
  for (const [feature, pairs] of Object.entries(ans.correlations)) {
    for (const [u, r] of pairs) if (!(u in best) || Math.abs(r) > Math.abs(best[u][1])) best[u] = [feature, r];
  }
  const select = $("inspect-unit");
  select.innerHTML = "";
  for (const u of ans.units) {
    select.append(el("option", { value: String(u) }, best[u] ? `unit ${u} · ${best[u][0]} (r ${fmt(best[u][1])})` : `unit ${u}`));
  }
  select.value = String(shown);
  $("inspect-layer").textContent = `layer ${ans.layer} · ${ans.cell} · ${ans.hidden_size} units`
    + (ans.truncated ? ` · first ${ans.tokens.length} tokens` : "");
  $("result-inspect").dataset.gatesUnit = String(ans.units[0]);

  const box = $("inspect-text");
  box.innerHTML = "";
  ans.tokens.forEach((tok, i) => {
    if (i > 0 && inspected.words && tok !== "\n" && ans.tokens[i - 1] !== "\n") box.append(document.createTextNode(" "));
    const span = el("span", { class: "ch" + (tok === "\n" ? " nl" : ""), "data-i": String(i) }, tok === "\n" ? "↵" : tok);
    span.addEventListener("mouseenter", () => showHover(i));
    box.append(span);
    if (tok === "\n") box.append(document.createTextNode("\n"));
  });
  box.onmouseleave = hideHover;

  const table = $("correlations");
  table.innerHTML = "";
  for (const [feature, pairs] of Object.entries(ans.correlations)) {
    const tr = el("tr", { "data-feature": feature });
    const td = el("td");
    for (const [u, r] of pairs) {
      const chip = el("span", { class: "corr-unit", "data-unit": String(u), title: "colour by this unit" }, `unit ${u} (${fmt(r)})`);
      chip.addEventListener("click", () => selectUnit(u));
      td.append(chip);
    }
    tr.append(el("td", {}, feature), td);
    table.append(tr);
  }
  colourBy(shown);
}

function colourBy(u) {
  const { ans } = inspected;
  const values = ans.activations[String(u)];
  $("result-inspect").dataset.unit = String(u);
  for (const span of document.querySelectorAll("#inspect-text .ch")) {
    const v = values[Number(span.dataset.i)];
    span.style.background = activationColour(v);
    span.dataset.value = String(v);
  }
  for (const chip of document.querySelectorAll("#correlations .corr-unit")) {
    chip.classList.toggle("selected", chip.dataset.unit === String(u));
  }
  const hovered = document.querySelector("#inspect-text .ch.hovered");
  if (hovered) showHover(Number(hovered.dataset.i));
}

// colour by unit u; the gates are those of the request's first unit, so ask again with u first
async function selectUnit(u) {
  if (!inspected) return;
  const { ans, req } = inspected;
  if (ans.units.includes(u)) {
    $("inspect-unit").value = String(u);
    colourBy(u);
  }
  if (ans.units[0] === u) return;
  const request = { ...req, units: [u, ...ans.units.filter((x) => x !== u)].slice(0, 16) };
  const t0 = performance.now();
  const body = await post("inspect", request);
  if (!body) return;
  renderInspect(body, request, current(), u);
  setState("done", `${Math.round(performance.now() - t0)} ms`);
}

function miniBar(v, lo) {
  const track = el("div", { class: "mini-track" });
  const fill = el("div", { class: "mini-fill" });
  const frac = lo < 0 ? Math.min(1, Math.abs(v)) : Math.max(0, Math.min(1, v));
  fill.style.width = (100 * frac).toFixed(0) + "%";
  fill.style.background = lo < 0 ? activationColour(v < 0 ? -1 : 1) : "#7a8aa6";
  track.append(fill);
  return track;
}

function showHover(i) {
  if (!inspected) return;
  const { ans } = inspected;
  const unit = Number($("inspect-unit").value);
  for (const s of document.querySelectorAll("#inspect-text .ch.hovered")) s.classList.remove("hovered");
  const span = document.querySelector(`#inspect-text .ch[data-i="${i}"]`);
  span.classList.add("hovered");
  const panel = $("inspect-hover");
  panel.innerHTML = "";
  panel.dataset.index = String(i);
  panel.append(el("div", { class: "hover-title" }, `${JSON.stringify(ans.tokens[i])} · token ${i + 1} of ${ans.tokens.length}`));
  const cols = el("div", { class: "hover-cols" });
  const left = el("div"), right = el("div");
  cols.append(left, right);
  panel.append(cols);
  left.append(el("h4", {}, "most active units"));
  const top = el("table", { id: "hover-top" });
  for (const [u, v] of ans.top_units[i]) {
    const tr = el("tr", { class: "top-unit" + (u === unit ? " selected" : ""), "data-unit": String(u), "data-value": String(v) });
    const bar = el("td");
    bar.append(miniBar(v, -1));
    tr.append(el("td", {}, `unit ${u}`), bar, el("td", { class: "v" }, fmt(v)));
    top.append(tr);
  }
  left.append(top);
  right.append(el("h4", {}, `unit ${unit}` + (ans.units[0] === unit ? "" : " (gates: loading…)")));
  const own = el("table", { id: "hover-unit" });
  const rows = [["hidden state", ans.activations[String(unit)][i], -1]];
  if (ans.units[0] === unit) for (const [g, values] of Object.entries(ans.gates)) rows.push([g, values[i], 0]);
  for (const [name, v, lo] of rows) {
    const tr = el("tr", { class: lo < 0 ? "hidden-state" : "gate", "data-gate": name, "data-value": String(v) });
    const bar = el("td");
    bar.append(miniBar(v, lo));
    tr.append(el("td", {}, name), bar, el("td", { class: "v" }, lo < 0 ? fmt(v) : v.toFixed(3)));
    own.append(tr);
  }
  right.append(own);
  panel.hidden = false;
  // below the character, or above it where the window has no room below
  const box = $("result-inspect").getBoundingClientRect(), r = span.getBoundingClientRect();
  const above = r.bottom + 6 + panel.offsetHeight > window.innerHeight && r.top - 6 - panel.offsetHeight > 0;
  panel.style.left = Math.max(0, Math.min(r.left - box.left, box.width - panel.offsetWidth)) + "px";
  panel.style.top = (above ? r.top - box.top - 6 - panel.offsetHeight : r.bottom - box.top + 6) + "px";
}

function hideHover() {
  $("inspect-hover").hidden = true;
  for (const s of document.querySelectorAll("#inspect-text .ch.hovered")) s.classList.remove("hovered");
}

// -- wiring --------------------------------------------------------------------------------------

$("model").addEventListener("change", onModelChange);
for (const b of document.querySelectorAll("#modes .tab")) b.addEventListener("click", () => setMode(b.dataset.mode));
$("inspect-unit").addEventListener("change", () => selectUnit(Number($("inspect-unit").value)));
$("run").addEventListener("click", run);
$("text").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) run();
});
for (const id of ["temperature", "top-p"]) {
  $(id).addEventListener("input", () => { $(id + "-value").textContent = Number($(id).value).toFixed(2); });
}
loadModels();
