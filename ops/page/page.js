// The status page. Everything the server sends is data: it only ever goes
// into the page as text (textContent), never as markup, since agent URIs and
// activities come from users.
"use strict";

// At most this many rows are in the table: a filter finds the others.
const MAX_SHOWN = 500;
const AVAILABILITIES = new Set(["Available", "AvailableIdle", "Busy", "BusyIdle", "DoNotDisturb",
  "BeRightBack", "Away", "Offline", "Unknown"]);
const STATES = new Set(["pending", "active", "retrying", "failed", "unsupported"]);

const agents = new Map(); // key -> row
let sorted = null;        // keys by URI; null when agents were added or removed
let selected = null;      // the key whose explanation is open
let renderQueued = false;

const $ = (id) => document.getElementById(id);

// Each cell carries its column's name, which a narrow window shows beside
// the value (page.css) when the table is laid out as one card a row.
const columns = (table) => Array.from(document.querySelectorAll(`#${table} thead th`), (th) => th.textContent);
const AGENT_COLUMNS = columns("agents");
const SOURCE_COLUMNS = columns("sources");

function label(tr, names) {
  tr.childNodes.forEach((td, i) => { td.dataset.label = names[i] || ""; });
}

// iso writes a time as everything else the provider shows it: ISO 8601 in
// UTC, to the second, whatever the browser's locale.
function iso(t) {
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString().replace(/\.\d+Z$/, "Z");
}

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

function apply(rows, reset) {
  if (reset) {
    agents.clear();
    sorted = null;
  }
  for (const r of rows) {
    if (r.gone) {
      if (agents.delete(r.key)) sorted = null;
      continue;
    }
    if (!agents.has(r.key)) sorted = null;
    // What the filter searches, made once per change rather than per render.
    r.hay = [r.uri, r.availability, r.activity, r.source, r.state, r.holder].join("\u0000").toLowerCase();
    agents.set(r.key, r);
  }
  scheduleRender();
}

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; renderAgents(); });
}

function matches(r, words) {
  return words.every((w) => r.hay.includes(w));
}

function renderAgents() {
  if (sorted === null) {
    sorted = Array.from(agents.keys());
    sorted.sort((a, b) => {
      const x = agents.get(a).uri, y = agents.get(b).uri;
      return x < y ? -1 : x > y ? 1 : 0;
    });
  }
  const words = $("filter").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const body = document.createDocumentFragment();
  let matching = 0;
  for (const key of sorted) {
    const r = agents.get(key);
    if (words.length && !matches(r, words)) continue;
    matching++;
    if (matching <= MAX_SHOWN) body.appendChild(agentRow(r));
  }
  $("agents").tBodies[0].replaceChildren(body);
  let shown = `${Math.min(matching, MAX_SHOWN)} shown`;
  if (words.length) shown += ` of ${matching} matching`;
  shown += `, ${agents.size} agents`;
  if (matching > MAX_SHOWN) shown += " (filter to see the others)";
  $("shown").textContent = shown;
}

function agentRow(r) {
  const tr = document.createElement("tr");
  tr.dataset.key = r.key;
  if (r.key === selected) tr.className = "selected";
  const name = el("button", r.uri, "agent");
  name.type = "button";
  name.title = "explain";
  name.addEventListener("click", () => explain(r.key, r.uri));
  const first = el("td");
  first.appendChild(name);
  tr.appendChild(first);
  const avail = r.availability ? `${r.availability} (${r.value})` : "none";
  tr.appendChild(el("td", avail, "avail " + (AVAILABILITIES.has(r.availability) ? r.availability : "")));
  tr.appendChild(el("td", r.activity || "", "words"));
  tr.appendChild(el("td", r.source || ""));
  tr.appendChild(el("td", r.state || "", "state " + (STATES.has(r.state) ? r.state : "")));
  tr.appendChild(el("td", r.uccs || 0, "num"));
  tr.appendChild(el("td", r.holder || "", "words"));
  tr.appendChild(el("td", r.seq || "", "num"));
  label(tr, AGENT_COLUMNS);
  return tr;
}

function badge(text, kind) {
  return el("span", text, "badge " + kind);
}

function renderSummary(s) {
  $("worker").textContent = s.worker ? `worker ${s.worker}` : "";
  const err = $("summary-error");
  err.hidden = !s.error;
  err.textContent = s.error ? `status: ${s.error}` : "";

  const sources = document.createDocumentFragment();
  for (const name of Object.keys(s.sources || {}).sort()) {
    const src = s.sources[name];
    const tr = document.createElement("tr");
    tr.appendChild(el("td", name));
    const health = el("td");
    if (name === "none") health.appendChild(badge("no source", ""));
    else if (!src.enabled) health.appendChild(badge("off", ""));
    else health.appendChild(badge(src.healthy ? "healthy" : "unhealthy", src.healthy ? "ok" : "bad"));
    tr.appendChild(health);
    const counts = Object.entries(src.states || {}).filter(([, n]) => n > 0).map(([st, n]) => `${st} ${n}`);
    tr.appendChild(el("td", counts.join(", ") || "0"));
    // In words, made by the server as presencectl status tells them.
    tr.appendChild(el("td", src.words || "", "words"));
    label(tr, SOURCE_COLUMNS);
    sources.appendChild(tr);
  }
  $("sources").tBodies[0].replaceChildren(sources);

  const workers = document.createDocumentFragment();
  for (const w of s.workers || []) {
    const tr = document.createElement("tr");
    tr.appendChild(el("td", w.id + (w.id === s.worker ? " (this one)" : ""), "words"));
    const state = el("td");
    state.appendChild(w.leaving ? badge("leaving", "warn") : badge("live", "ok"));
    tr.appendChild(state);
    tr.appendChild(el("td", w.host || "", "words"));
    tr.appendChild(el("td", w.started ? iso(w.started) : ""));
    workers.appendChild(tr);
  }
  $("workers").tBodies[0].replaceChildren(workers);
  $("totals").textContent = `${s.agents} agents, ${s.interests} interests, ${s.queued} waiting for the throttle`;
}

async function explain(key, uri) {
  selected = key;
  scheduleRender();
  const panel = $("explain");
  panel.hidden = false;
  $("explain-uri").textContent = uri;
  const body = $("explain-body");
  body.textContent = "asking…";
  try {
    const resp = await fetch("api/explain?uri=" + encodeURIComponent(uri), { headers: { Accept: "application/json" } });
    const answer = await resp.json();
    if (selected !== key) return; // another agent was clicked meanwhile
    body.textContent = JSON.stringify(answer, null, 2);
  } catch (e) {
    if (selected === key) body.textContent = `could not explain: ${e}`;
  }
}

function connect() {
  const status = $("connection");
  const events = new EventSource("api/events");
  events.addEventListener("open", () => { status.textContent = "live"; status.className = "badge ok"; });
  events.addEventListener("error", () => {
    // A refused stream (too many pages open) is not tried again by the browser.
    status.textContent = events.readyState === EventSource.CLOSED ? "disconnected: reload to try again" : "reconnecting";
    status.className = "badge bad";
  });
  events.addEventListener("reset", (m) => apply(JSON.parse(m.data).rows, true));
  events.addEventListener("rows", (m) => apply(JSON.parse(m.data).rows, false));
  events.addEventListener("summary", (m) => renderSummary(JSON.parse(m.data)));
}

$("filter").addEventListener("input", scheduleRender);
$("explain-close").addEventListener("click", () => {
  $("explain").hidden = true;
  selected = null;
  scheduleRender();
});
connect();
