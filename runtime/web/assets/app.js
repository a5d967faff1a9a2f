/* SPDX-License-Identifier: MIT */
// The overview: GET /api/services every 2 s into the tables (services, the methods that
// took the most time, the user's queues and maps); the buttons POST the
// actions with the page's token (X-Shmrpc-Token), stop and restart once confirmed, and
// "restart all" and "stop all" for each service in turn. A service's name leads to its
// page (/services/NAME, service.js), with charts and its log. Formats, and the way to the
// login page when the session has ended (a 401), are format.js's.
"use strict";

const token = document.querySelector('meta[name="shmrpc-token"]').content;
// The services of the last refresh, for "restart all" and "stop all".
let services = [];

// POSTs action to service s (as /api/services gave it): its state after, or an Error.
async function post(s, action, body) {
  const opts = { method: "POST", headers: { "X-Shmrpc-Token": token, "Content-Type": "application/json" } };
  if (body) opts.body = JSON.stringify(body);
  const r = await fetch("/api/services/" + encodeURIComponent(s.name) + "/" + action, opts);
  if (sessionEnded(r)) return null;
  const answer = await r.json();
  if (!r.ok) throw new Error(answer.error ? answer.error.message : r.status + " " + r.statusText);
  return answer.state;
}

function show(text, failed) {
  const out = document.getElementById("result");
  out.textContent = text;
  out.className = failed ? "error" : "";
}

async function act(s, action) {
  const name = s.name;
  if (!confirmed(action, name)) return;
  let body = null;
  if (action === "scale") {
    // A count per address: a module= service serving tcp:// too has two managers.
    const perAddress = s.managers > 1;
    const now = perAddress ? Math.round(s.workers / s.managers) : s.workers;
    const n = prompt((perAddress ? "Workers per address for " : "Workers for ") + name + "?", String(now));
    if (n === null) return;
    body = { workers: Number(n) };
  }
  try {
    const state = await post(s, action, body);
    if (state === null) return;
    show(name + ": " + action + ": " + state, false);
  } catch (e) {
    show(name + ": " + action + " failed: " + e.message, true);
  }
  refresh();
}

// "restart all", "stop all": every service of the last refresh, one after the other.
// Their buttons are disabled until the last service has answered.
async function actAll(action) {
  const all = services.slice();
  if (!all.length || !confirm(action + " all services (" + all.map((s) => s.name).join(", ") + ")?"))
    return;
  const buttons = document.querySelectorAll("button[data-all]");
  buttons.forEach((b) => { b.disabled = true; });
  const done = [];
  let failed = false;
  try {
    for (const s of all) {
      try {
        const state = await post(s, action, null);
        if (state === null) return;
        done.push(s.name + " " + state);
      } catch (e) {
        done.push(s.name + " failed: " + e.message);
        failed = true;
      }
      show(action + " all: " + done.join(", "), failed);
    }
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
  refresh();
}

for (const b of document.querySelectorAll("button[data-all]"))
  b.addEventListener("click", () => actAll(b.dataset.all));

function render(data) {
  document.getElementById("supervisor").textContent = "supervisor pid " + data.supervisor.pid + " · " + data.supervisor.ini;
  document.getElementById("updated").textContent = "updated " + isoTime(data.supervisor.now_ms) + " UTC";
  services = data.services;
  const body = document.querySelector("#services tbody");
  body.replaceChildren();
  for (const s of data.services) {
    const row = body.insertRow();
    row.dataset.service = s.name;
    const link = document.createElement("a");
    link.className = "service-link";
    link.href = "/services/" + encodeURIComponent(s.name);
    link.textContent = s.name;
    row.insertCell().appendChild(link);
    cell(row, s.state, "state-" + s.state);
    cell(row, s.pid || "–");
    const w = cell(row, s.workers);
    w.title = "pids " + s.worker_pids.join(", ");
    cell(row, duration(s.uptime_s));
    cell(row, s.restarts);
    cell(row, s.calls_per_s === null ? "–" : s.calls_per_s.toFixed(1));
    cell(row, s.error_rate === null ? "–" : (100 * s.error_rate).toFixed(1) + "%").dataset.figure = "error_rate";
    cell(row, micros(s.p50_us));
    cell(row, micros(s.p99_us));
    cell(row, s.cpu_percent === null ? "–" : s.cpu_percent.toFixed(1) + "%");
    cell(row, bytes(s.rss_bytes));
    const actions = row.insertCell();
    for (const a of ["start", "stop", "restart", "scale"]) {
      if (a === "scale" && s.kind !== "module") continue;
      const b = document.createElement("button");
      b.textContent = a;
      b.onclick = () => act(s, a);
      actions.appendChild(b);
    }
  }
  const top = document.querySelector("#top tbody");
  top.replaceChildren();
  for (const m of data.top_methods) {
    const row = top.insertRow();
    cell(row, m.service);
    cell(row, m.name);
    cell(row, m.calls);
    cell(row, m.errors).dataset.figure = "errors";
    cell(row, micros(m.total_ns / 1000));
    cell(row, micros(m.p50_us));
    cell(row, micros(m.p99_us));
  }
  // A queue's figures, then a map's: "–" in the columns of the other kind.
  const shared = document.querySelector("#shared tbody");
  shared.replaceChildren();
  const rows = data.queues.map((q) => ["queue", q]).concat(data.maps.map((m) => ["map", m]));
  for (const [kind, x] of rows) {
    const row = shared.insertRow();
    row.dataset.kind = kind;
    row.dataset.name = x.name;
    cell(row, kind);
    cell(row, x.name);
    for (const k of ["depth", "pushed", "popped", "timeouts", "drops", "entries"])
      cell(row, text(x[k])).dataset.figure = k;
    const b = cell(row, bytes(x.bytes));
    b.dataset.figure = "bytes";
    if (kind === "map") b.title = bytes(x.used_bytes) + " used";
    for (const k of ["generation", "writes", "growths", "lock_waits"])
      cell(row, text(x[k])).dataset.figure = k;
  }
}

async function refresh() {
  const err = document.getElementById("error");
  try {
    const r = await fetch("/api/services");
    if (sessionEnded(r)) return;
    const data = await r.json();
    if (!r.ok) throw new Error(data.error.message);
    render(data);
    err.hidden = true;
  } catch (e) {
    err.textContent = "cannot read /api/services: " + e.message;
    err.hidden = false;
  }
}

// Every 2 s after the last refresh ended, until the page goes to the login page.
async function poll() {
  await refresh();
  if (!leaving) setTimeout(poll, 2000);
}

poll();
