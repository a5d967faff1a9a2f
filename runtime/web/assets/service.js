/* SPDX-License-Identifier: MIT */
// The page of one service (/services/NAME): its status, workers and methods from
// /api/services/NAME every 2 s; five uPlot charts from .../series every 2 s over the range
// #range picks (15 min to 24 h, in windows of .../series?step= beyond 15 min), asking only
// for what is newer than the last window plotted, with restarts (a new pid) marked; its
// log from .../log every second, following new lines from the offset it has read to. The
// actions POST with the page's token, stop and restart once confirmed, and show their
// outcome in #result. Times are UTC, as the logs'. Formats, and the way to the login page
// when the session has ended (a 401), are format.js's.
"use strict";

const token = document.querySelector('meta[name="shmrpc-token"]').content;
const name = document.body.dataset.service;
const api = "/api/services/" + encodeURIComponent(name);

const STATUS_MS = 2000;
const SERIES_MS = 2000;
const LOG_MS = 1000;
// The ranges #range offers (its buttons' data-span, in s) and the windows each asks the
// series for (?step=, in s; 0: every sample): about 900 points at one sample a second.
const STEPS = { 900: 0, 3600: 4, 21600: 24, 86400: 96 };
const SERIES_MAX = 3600; // what one answer of .../series holds at most
const LOG_LINES = 1000;  // lines kept in #log
// Two samples further apart than this many times the later one's own interval (its dt_ms,
// series_interval_s or a little more) were not taken one after the other: the service was
// down between them, and the lines do not join them. A sample a loaded machine took late
// is no gap.
const GAP_INTERVALS = 2.5;

// --- polling -------------------------------------------------------------------------

const errors = {};

function showErrors() {
  const el = document.getElementById("error");
  const all = Object.values(errors).filter(Boolean);
  el.textContent = all.join(" · ");
  el.hidden = all.length === 0;
}

async function getJSON(url) {
  const r = await fetch(url);
  if (sessionEnded(r)) throw new Error("the session has ended: to the login page");
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? body.error.message : r.status + " " + r.statusText);
  return body;
}

// Runs fn now and again ms after each run ends (never two at once, however slow), or at
// once when fn says true (it is behind). Returns a function that has it run at once (or
// right after the run under way).
function every(ms, what, fn) {
  let timer = null, running = false, soon = false;
  const run = async () => {
    timer = null;
    running = true;
    let again = ms;
    try {
      if ((await fn()) === true) again = 0;
      errors[what] = null;
    } catch (e) {
      errors[what] = "cannot read " + what + ": " + e.message;
    }
    running = false;
    if (leaving) return;
    showErrors();
    if (soon) again = 0;
    soon = false;
    timer = setTimeout(run, again);
  };
  run();
  return () => {
    if (running) {
      soon = true;
    } else if (timer !== null) {
      clearTimeout(timer);
      run();
    }
  };
}

// --- status, workers, methods --------------------------------------------------------

function renderStatus(s) {
  document.getElementById("state").textContent = s.state;
  document.getElementById("state").className = "state-" + s.state;
  document.getElementById("kind").textContent = s.kind;
  document.getElementById("address").textContent = s.address || "–";
  document.getElementById("pid").textContent = s.pid || "–";
  document.getElementById("uptime").textContent = duration(s.uptime_s);
  document.getElementById("restarts").textContent = text(s.restarts);
  document.getElementById("last-exit").textContent = s.last_exit || "–";
  document.getElementById("log-path").textContent = s.log_path || "";
  document.getElementById("scale").hidden = s.kind !== "module";
  // A module= service serving tcp:// too has a manager per address, and a scale count
  // is per address.
  const input = document.getElementById("scale-workers");
  const perAddress = s.managers > 1;
  document.getElementById("scale-label").textContent = perAddress ? "workers per address" : "workers";
  if (document.activeElement !== input && !input.dataset.touched)
    input.value = perAddress ? Math.round(s.workers / s.managers) : s.workers;

  const procs = new Map((s.worker_procs || []).map((p) => [p.pid, p]));
  const workers = document.querySelector("#workers tbody");
  workers.replaceChildren();
  for (const pid of s.worker_pids) {
    const p = procs.get(pid) || {};
    const row = workers.insertRow();
    row.dataset.pid = pid;
    cell(row, pid);
    cell(row, text(p.state));
    cell(row, p.cpu_seconds === undefined ? "–" : p.cpu_seconds.toFixed(2) + " s");
    cell(row, bytes(p.rss_bytes));
  }

  const methods = document.querySelector("#methods tbody");
  methods.replaceChildren();
  for (const m of s.methods) {
    const row = methods.insertRow();
    row.dataset.method = m.name;
    cell(row, m.name);
    cell(row, m.calls);
    cell(row, m.errors);
    cell(row, micros(m.mean_us));
    cell(row, micros(m.p50_us));
    cell(row, micros(m.p99_us));
  }
  document.getElementById("updated").textContent = "updated " + isoTime(Date.now()) + " UTC";
}

async function refreshStatus() {
  const s = await getJSON(api + "?lines=0");
  renderStatus(s);
  return s;
}

// --- actions -------------------------------------------------------------------------

// States an action passes through on its way to where it ends.
const PASSING = new Set(["starting", "stopping"]);

async function act(action) {
  if (!confirmed(action, name)) return;
  const out = document.getElementById("result");
  const opts = { method: "POST", headers: { "X-Shmrpc-Token": token, "Content-Type": "application/json" } };
  let label = action;
  if (action === "scale") {
    const n = Number(document.getElementById("scale-workers").value);
    if (!Number.isInteger(n) || n < 0) {
      out.textContent = "scale: the number of workers is a whole number, 0 or more";
      out.className = "error";
      return;
    }
    opts.body = JSON.stringify({ workers: n });
    label = "scale to " + n;
  }
  const buttons = document.querySelectorAll("button[data-action]");
  buttons.forEach((b) => { b.disabled = true; });
  out.className = "";
  out.textContent = label + ": …";
  try {
    const r = await fetch(api + "/" + action, opts);
    if (sessionEnded(r)) return;
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? body.error.message : r.status + " " + r.statusText);
    out.textContent = label + ": " + body.state;
    // The answer comes at once ("stopping" after a stop): follow it to where it ends.
    let state = body.state;
    for (const end = Date.now() + 15000; PASSING.has(state) && Date.now() < end;) {
      await new Promise((done) => setTimeout(done, 250));
      state = (await refreshStatus()).state;
      out.textContent = label + ": " + state;
    }
    if (action === "scale") document.getElementById("scale-workers").dataset.touched = "";
  } catch (e) {
    out.textContent = label + " failed: " + e.message;
    out.className = "error";
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

for (const b of document.querySelectorAll("button[data-action]"))
  b.addEventListener("click", () => act(b.dataset.action));
document.getElementById("scale-workers").addEventListener("input", (e) => {
  e.target.dataset.touched = "1";
});

// --- charts --------------------------------------------------------------------------

// log: a log scale, where a value of 0 or less is not drawn.
const CHARTS = [
  { metric: "cpu", fields: ["cpu"], labels: ["CPU"], fmt: (v) => v.toFixed(1) + "%", min: 0 },
  { metric: "memory", fields: ["rss", "pss"], labels: ["RSS", "PSS"], fmt: bytes, min: 0 },
  { metric: "io", fields: ["read", "write"], labels: ["read", "write"], fmt: (v) => bytes(v) + "/s", min: 0 },
  { metric: "calls", fields: ["calls", "errors"], labels: ["calls/s", "errors/s"], fmt: (v) => v.toFixed(1), min: 0 },
  { metric: "latency", fields: ["p50_us", "p99_us"], labels: ["p50", "p99"], fmt: micros, log: true },
];
const COLORS = ["#1f6fb4", "#d2691e"];
const RESTART_COLOR = "#b11";

// The range shown: its span in s and its windows' (?step=).
let range = { span: 900, step: 0 };
// The samples (or windows) received, by field of the series: t and dt_ms in ms, the rest
// as the server gave them; pid and dt_ms tell the gaps and the restarts.
const samples = {};
function clearSamples() {
  for (const f of ["t", "dt_ms", "pid"].concat(...CHARTS.map((c) => c.fields))) samples[f] = [];
}
clearSamples();
let lastT = null;
// What the charts show: their x values (t in s), where their lines break, and the x of
// each restart.
let plotted = { dt_ms: [], pid: [] };
let restarts = [];

// Whether samples i - 1 and i of what is plotted (xs: their t in s) have a time between
// them when the service was down, or was restarted (another pid), which the line does not
// cross. A sample without dt_ms has its predecessor's interval.
function brokenBefore(xs, i) {
  const dt = plotted.dt_ms[i] ?? plotted.dt_ms[i - 1] ?? 1000;
  return (xs[i] - xs[i - 1]) * 1000 > GAP_INTERVALS * dt || plotted.pid[i] !== plotted.pid[i - 1];
}

// The x (t in s) of each sample whose pid is another than the one before it: a restart.
function restartsOf(xs, pids) {
  const at = [];
  let prev = null;
  for (let i = 0; i < xs.length; i++) {
    if (pids[i] === null || pids[i] === undefined) continue;
    if (prev !== null && pids[i] !== prev) at.push(xs[i]);
    prev = pids[i];
  }
  return at;
}

function timeGaps(u, sidx, idx0, idx1, nullGaps) {
  const xs = u.data[0];
  const gaps = [];
  for (let i = idx0 + 1; i <= idx1; i++)
    if (brokenBefore(xs, i))
      uPlot.addGap(gaps, Math.round(u.valToPos(xs[i - 1], "x", true)),
                   Math.round(u.valToPos(xs[i], "x", true)));
  return nullGaps.concat(gaps).sort((a, b) => a[0] - b[0]);
}

// The time axis' labels (ticks: t in s), in UTC as the logs write it: "02:15", or
// "02:15:30" when the ticks are less than a minute apart; a tick on another day than the
// one before it shows that day instead ("2026-11-27").
function timeTicks(ticks) {
  const seconds = ticks.length > 1 && ticks[1] - ticks[0] < 60;
  return ticks.map((t, i) => i > 0 && isoDate(t * 1000) !== isoDate(ticks[i - 1] * 1000)
    ? isoDate(t * 1000) : isoTime(t * 1000, seconds));
}

// A log axis' labels: at 1, 2 and 5 times a power of ten, none between.
function logTicks(ticks, fmt) {
  return ticks.map((v) => {
    const m = v / 10 ** Math.floor(Math.log10(v) + 1e-9);
    return [1, 2, 5].some((k) => Math.abs(m - k) < 1e-6) ? fmt(v) : "";
  });
}

// A dashed line down the plot at each restart, two pixels wide on whole pixels (crisp).
function drawRestarts(u) {
  const { left, top, width, height } = u.bbox;
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = RESTART_COLOR;
  ctx.lineWidth = 2 * Math.max(1, Math.round(devicePixelRatio));
  ctx.setLineDash([4 * devicePixelRatio, 4 * devicePixelRatio]);
  for (const x of restarts) {
    const px = Math.round(u.valToPos(x, "x", true));
    if (px < left || px > left + width) continue;
    ctx.beginPath();
    ctx.moveTo(px, top);
    ctx.lineTo(px, top + height);
    ctx.stroke();
  }
  ctx.restore();
}

function chartWidth(el) {
  return Math.max(200, el.clientWidth);
}

function makeChart(c) {
  const el = document.querySelector('div.chart[data-metric="' + c.metric + '"]');
  const y = c.log
    ? { distr: 3, log: 10, range: (u, lo, hi) => (lo === null ? [1, 10] : uPlot.rangeLog(lo, hi, 10, true)) }
    : { range: (u, lo, hi) => (lo === null ? [0, 1] : uPlot.rangeNum(Math.min(c.min, lo), hi, 0.1, true)) };
  const opts = {
    width: chartWidth(el),
    height: 180,
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    // Ticks on UTC's minutes and hours, whatever the browser's zone.
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    scales: { x: { time: true }, y },
    series: [{ value: (u, v) => (v === null || v === undefined ? "–" : isoDateTime(v * 1000)) }].concat(
      c.fields.map((f, i) => ({
        label: c.labels[i],
        stroke: COLORS[i],
        width: 1.5,
        gaps: timeGaps,
        value: (u, v) => (v === null || v === undefined ? "–" : c.fmt(v)),
      }))),
    axes: [
      { space: 70, values: (u, ticks) => timeTicks(ticks) },
      { size: 80, values: (u, ticks) => (c.log ? logTicks(ticks, c.fmt) : ticks.map((v) => c.fmt(v))) },
    ],
    hooks: { draw: [drawRestarts] },
  };
  const plot = new uPlot(opts, [[], ...c.fields.map(() => [])], el);
  new ResizeObserver(() => {
    const w = chartWidth(el);
    if (w !== plot.width) plot.setSize({ width: w, height: 180 });
  }).observe(el);
  return { el, plot, c };
}

const charts = CHARTS.map(makeChart);
window.shmrpcCharts = Object.fromEntries(charts.map((x) => [x.c.metric, x.plot]));

function plotAll() {
  const xs = samples.t.map((t) => t / 1000);
  plotted = { dt_ms: samples.dt_ms.slice(), pid: samples.pid.slice() };
  restarts = restartsOf(xs, plotted.pid);
  for (const { el, plot, c } of charts) {
    plot.setData([xs, ...c.fields.map((f) => (c.log ? samples[f].map((v) => (v > 0 ? v : null)) : samples[f]))]);
    el.dataset.points = xs.length;
    el.dataset.restarts = restarts.length;
  }
}

async function refreshSeries() {
  const r = range;
  const step = r.step ? "&step=" + r.step : "";
  let q = "?span_s=" + r.span + step + "&max=" + SERIES_MAX;
  let from = null;
  if (lastT !== null) {
    // The newest window was still filling: it is asked for again, whole, and replaced
    // once the answer is here (the charts draw from these arrays meanwhile).
    from = r.step ? Math.floor(lastT / (r.step * 1000)) * r.step * 1000 - 1 : lastT;
    q = "?since=" + from + step + "&max=" + SERIES_MAX;
  }
  const d = await getJSON(api + "/series" + q);
  if (r !== range) return true; // another range was picked meanwhile: ask for it at once
  const keep = from === null ? -1 : samples.t.findIndex((t) => t > from);
  if (keep >= 0) for (const f of Object.keys(samples)) samples[f].length = keep;
  for (const f of Object.keys(samples)) samples[f].push(...d[f]);
  // What fell out of the range on the left.
  if (samples.t.length) lastT = samples.t[samples.t.length - 1];
  const old = samples.t.findIndex((t) => t > lastT - r.span * 1000);
  if (old > 0) for (const f of Object.keys(samples)) samples[f].splice(0, old);
  plotAll();
}

function pickRange(button) {
  const span = Number(button.dataset.span);
  range = { span, step: STEPS[span] };
  for (const b of document.querySelectorAll("#range button"))
    b.setAttribute("aria-pressed", String(b === button));
  clearSamples();
  lastT = null;
  plotAll();
  seriesNow();
}

for (const b of document.querySelectorAll("#range button"))
  b.addEventListener("click", () => pickRange(b));

// --- the log -------------------------------------------------------------------------

// inode: a string of decimal digits, as the server sends it (a number may pass 2^53).
const tail = { offset: null, inode: "0" };

// Appends the lines the log endpoint has past tail.offset; true when it had more than
// one answer holds (it is behind: ask again at once).
async function followLog() {
  const q = tail.offset === null ? "" : "?after=" + tail.offset + "&inode=" + encodeURIComponent(tail.inode);
  const d = await getJSON(api + "/log" + q);
  const el = document.getElementById("log");
  const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 8;
  if (d.reset) el.replaceChildren();
  const lines = document.createDocumentFragment();
  for (const line of d.lines) {
    const div = document.createElement("div");
    div.className = "log-line";
    div.textContent = line;
    lines.appendChild(div);
  }
  el.appendChild(lines);
  while (el.childElementCount > LOG_LINES) el.firstElementChild.remove();
  if (atBottom) el.scrollTop = el.scrollHeight;
  const read = tail.offset === null || d.reset ? 0 : d.offset - tail.offset;
  tail.offset = d.offset;
  tail.inode = d.inode;
  return read > 60000; // near the 64 KiB an answer holds
}

every(STATUS_MS, "the status", refreshStatus);
const seriesNow = every(SERIES_MS, "the series", refreshSeries);
every(LOG_MS, "the log", followLog);
