// Control Tower dashboards: the time scrubber, the live tail (Server-Sent Events) and the
// trigger and approval forms. No library; every request goes to this server only.
"use strict";

function scrubber() {
  const form = document.querySelector("form.scrubber");
  if (!form) return;
  const range = form.querySelector("input.scrub");
  const field = form.querySelector("input[name=as_of]");
  const label = form.querySelector(".scrub-label");
  const base = new Date(form.dataset.asOf);
  const local = (d) => d.toISOString().slice(0, 16);
  range.addEventListener("input", () => {
    const at = new Date(base.getTime() + Number(range.value) * 60000);
    field.value = local(at);
    label.textContent = Number(range.value) === 0 ? "" : `${(-Number(range.value) / 60).toFixed(1)} h earlier`;
  });
  range.addEventListener("change", () => form.submit());
}

function cell(row, text, href) {
  const td = row.insertCell();
  if (href) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
  } else {
    td.textContent = text;
  }
}

function liveTail() {
  const section = document.querySelector("section.tail");
  if (!section || !window.EventSource) return;
  const rows = section.querySelector(".tail-rows");
  const state = section.querySelector(".tail-state");
  const source = new EventSource(section.dataset.tail);
  source.onopen = () => { state.textContent = "live"; section.dataset.state = "open"; };
  source.onerror = () => { state.textContent = "reconnecting…"; section.dataset.state = "retrying"; };
  source.addEventListener("event", (message) => {
    const e = JSON.parse(message.data);
    const row = rows.insertRow(0);
    row.className = "fresh";
    row.dataset.event = e.eventId;
    cell(row, e.ts);
    cell(row, e.type);
    cell(row, e.source);
    cell(row, e.eventId, "/ui/events/" + encodeURIComponent(e.eventId));
    cell(row, e.correlationId || "");
    while (rows.rows.length > 200) rows.deleteRow(rows.rows.length - 1);
  });
  source.addEventListener("lagged", (message) => {
    state.textContent = `live (skipped ${message.data} events while behind)`;
  });
}

async function post(path, body, reason) {
  const headers = { "content-type": "application/json", "x-ct-csrf": "1" };
  if (reason) headers["x-ct-reason"] = reason;
  const response = await fetch(path, { method: "POST", headers, body, credentials: "same-origin" });
  let answer = {};
  try { answer = await response.json(); } catch (_) { /* no body */ }
  return { ok: response.ok, status: response.status, answer };
}

// The API's error body: {"error": {"code", "message", "field"?}}.
function refusal(result) {
  const error = result.answer.error || {};
  return `${result.status} ${error.code || ""}: ${error.message || ""}${error.field ? " (" + error.field + ")" : ""}`;
}

function show(output, result, success) {
  output.className = "result " + (result.ok ? "ok" : "refused");
  output.textContent = result.ok
    ? success(result.answer)
    : refusal(result);
}

function forms() {
  for (const form of document.querySelectorAll("form.trigger")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const output = form.querySelector("output");
      const inputs = form.querySelector("textarea[name=inputs]").value || "{}";
      const reason = form.querySelector("input[name=reason]").value;
      const result = await post("/triggers/" + encodeURIComponent(form.dataset.trigger), inputs, reason);
      show(output, result, (a) => `run ${a.runId}: ${a.status}`);
    });
  }
  for (const form of document.querySelectorAll("form.decide")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const decision = event.submitter ? event.submitter.value : "approve";
      const reason = form.querySelector("input[name=reason]").value;
      const path = `/runs/${encodeURIComponent(form.dataset.run)}/${decision}`;
      const result = await post(path, JSON.stringify({ reason }));
      show(form.querySelector("output"), result, (a) => `${a.decision || decision} written`);
    });
  }
}

document.addEventListener("DOMContentLoaded", () => { scrubber(); liveTail(); forms(); });
