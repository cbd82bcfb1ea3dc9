// diplotag web page: calls /v1/predict or /v1/extract on the same server and renders the results.
"use strict";
const $ = (id) => document.getElementById(id);
const form = $("form"), statusEl = $("status"), results = $("results");

function mode() { return document.querySelector("input[name=mode]:checked").value; }
document.querySelectorAll("input[name=mode]").forEach((r) =>
  r.addEventListener("change", () => { $("target-row").hidden = mode() !== "quote"; }));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function taskBlock(name, result) {
  const block = el("div", { class: "task", "data-task": name },
    el("h3", {}, `${name}: `, el("span", { class: "label", "data-testid": `${name}-label` }, result.label)));
  for (const [label, p] of Object.entries(result.probs)) {
    const pct = Math.round(p * 100);
    block.append(el("div", { class: "bar" },
      el("span", {}, label),
      el("span", { class: "track", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(pct), "aria-label": `${name} ${label}` },
        el("span", { class: "fill", style: `width:${pct}%; display:block` })),
      el("span", {}, `${pct}%`)));
  }
  return block;
}

function card(item, quoteText, speaker, extra) {
  const c = el("article", { class: "card", "data-testid": "result" }, el("blockquote", {}, quoteText));
  const meta = [];
  if (speaker) meta.push(`speaker: ${speaker}`);
  if (extra) meta.push(extra);
  if (item.truncated) meta.push("truncated to the model's max length");
  if (meta.length) c.append(el("div", { class: "meta", "data-testid": "speaker" }, meta.join(" · ")));
  for (const [name, result] of Object.entries(item.tasks)) c.append(taskBlock(name, result));
  for (const [name, value] of Object.entries(item.derived || {})) {
    c.append(el("div", { class: "score" }, `${name}: `, el("strong", { "data-testid": name }, typeof value === "number" ? value.toFixed(2) : value)));
  }
  return c;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  results.replaceChildren();
  statusEl.className = "";
  const text = $("text").value;
  if (!text.trim()) { statusEl.className = "error"; statusEl.textContent = "Please paste a quote or an article."; return; }
  const headers = { "Content-Type": "application/json" };
  const key = $("apikey").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const isQuote = mode() === "quote";
  const body = isQuote
    ? { quotes: [{ text, target: $("target").value.trim() || null, id: "page" }] }
    : { text };
  statusEl.textContent = "Tagging…";
  $("submit").disabled = true;
  try {
    const response = await fetch(isQuote ? "/v1/predict" : "/v1/extract", { method: "POST", headers, body: JSON.stringify(body) });
    const data = await response.json();
    if (!response.ok) {
      statusEl.className = "error";
      statusEl.textContent = `Error ${response.status}: ${data.error ? data.error.message : "request failed"}`;
      return;
    }
    if (isQuote) {
      results.append(card(data.predictions[0], text, null, body.quotes[0].target ? `target: ${body.quotes[0].target}` : "no target"));
      statusEl.textContent = `Done (model ${data.model_version}).`;
    } else {
      for (const s of data.statements) results.append(card(s, s.text, s.speaker || "unknown", `${s.kind}${s.cue ? ", " + s.cue : ""}`));
      statusEl.textContent = `${data.statements.length} statement(s) found (model ${data.model_version}).`;
    }
  } catch (err) {
    statusEl.className = "error";
    statusEl.textContent = `Could not reach the service: ${err}`;
  } finally {
    $("submit").disabled = false;
  }
});
