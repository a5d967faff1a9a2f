/* SPDX-License-Identifier: MIT */
// The management page in a real browser: shmrpc-service runs the echo module with two
// workers, its page behind a secret_file; Debian's chromium, driven by playwright-core,
// logs in on the login page, opens the overview, sees a queue and a map made here (shm_maker)
// in its "Queues and maps" table with their figures, and the figures change at the next
// refresh when the queue and map do; follows the echo service's link, sees
// its charts drawn (UTC time labels, a log latency axis) and its log; a stop it declines to
// confirm leaves the service alone; a confirmed restart gives new worker PIDs and a
// restart mark on every chart, which the 1 h range shows too (in windows of 4 s); at 600
// px neither page is wider than the window; then its session ends (a logout) and the
// page goes to the login page by itself, which brings it back; "restart all" and "stop
// all" on the overview act on the service.
// With --screenshots DIR it makes the pictures of docs/img instead (no secret).
//
//   node browser_test.mjs --service PATH/shmrpc-service --module PATH/echo-module.so
//                         --maker PATH/browser_shm_maker
//                         [--echo-server PATH/echo-server] [--screenshots DIR]
//
// Every wait is bounded, the whole run too; the supervisor, its services, their shared
// memory, the temporary folder and the browser are removed however the run ends.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const CHROMIUM = "/usr/bin/chromium";
const HARD_LIMIT_MS = 200_000; // below the ctest TIMEOUT, so the cleanup here runs first
const NAME = "echo";

const opts = parseArgs(process.argv.slice(2));
const started = Date.now();
const run = {
  dir: "",
  // Unique, so that the test runs beside others; the pictures show a plainer name.
  shm: opts.screenshots ? "echo_page" :
    `browser_test_${process.pid}_${randomBytes(3).toString("hex")}`,
  control: "", // the control service's segment name, from the ini's real path
  // The queue and the map shm_maker makes (removed by killEverything however the run ends).
  queue: `bq_${process.pid}_${randomBytes(3).toString("hex")}`,
  map: `bm_${process.pid}_${randomBytes(3).toString("hex")}`,
  sup: null, // the ChildProcess: coreutils timeout, leading the group the supervisor runs in
  supExited: false,
  supStatus: "", // how it ended: "exit 0", "exit 1", "signal SIGKILL"
  groups: new Set(), // process groups of the services (their pids), to kill if all else fails
  browser: null,
  errShown: false, // supervisor.err was printed
  port: 0,
  token: "",
  secret: "", // the page's secret_file's, "" when it has none
  cookie: "", // NAME=VALUE of this script's own session
  dialogs: [], // the messages of the page's confirm()s, in order
  decline: false, // answer the next confirm() with Cancel
};

function parseArgs(argv) {
  const o = { service: "", module: "", maker: "", echoServer: "", screenshots: "" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    // Absolute: the ini that names them is read in a folder of its own.
    if (a === "--service" && v) o.service = path.resolve(argv[++i]);
    else if (a === "--module" && v) o.module = path.resolve(argv[++i]);
    else if (a === "--maker" && v) o.maker = path.resolve(argv[++i]);
    else if (a === "--echo-server" && v) o.echoServer = path.resolve(argv[++i]);
    else if (a === "--screenshots" && v) o.screenshots = path.resolve(argv[++i]);
    else usage(`unknown argument ${a}`);
  }
  if (!o.service || !o.module) usage("--service and --module are required");
  if (!o.maker && !o.screenshots) usage("--maker is required (but with --screenshots)");
  return o;
}

function usage(why) {
  console.error(`browser_test: ${why}\nusage: node browser_test.mjs --service SHMRPC_SERVICE ` +
    "--module ECHO_MODULE_SO --maker BROWSER_SHM_MAKER [--echo-server ECHO_SERVER] " +
    "[--screenshots DIR]");
  process.exit(2);
}

function log(msg) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${msg}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// p, or an error when it has not settled within ms (for what has no timeout of its own:
// page.evaluate, a browser context).
function bounded(ms, what, p) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s: ${what}`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

// Polls fn until it returns a truthy value (returned) or ms pass (an error that says what
// was awaited and what was seen last: fn may set detail.last). A call of fn that hangs
// counts as a failed one once the time is up.
async function until(what, ms, fn) {
  const detail = { last: "" };
  const end = Date.now() + ms;
  for (;;) {
    let v;
    try {
      v = await bounded(Math.max(end - Date.now(), 1_000), `one look for ${what}`, fn(detail));
    } catch (e) {
      detail.last = String(e.message || e).split("\n")[0];
    }
    if (v) return v;
    if (Date.now() > end)
      throw new Error(`timed out after ${ms / 1000} s waiting for ${what}` +
        (detail.last ? `; last seen: ${detail.last}` : ""));
    await sleep(100);
  }
}

// --- what the test needs, or a failure that says how to get it ---------------------------

async function loadPlaywright() {
  try {
    return (await import("playwright-core")).chromium;
  } catch (e) {
    const dir = path.dirname(new URL(import.meta.url).pathname);
    throw new Error(`cannot load playwright-core (${e.code || e.message}): run ` +
      `\`npm ci\` in ${dir} (scripts/test.sh does)`);
  }
}

function checkChromium() {
  try {
    fs.accessSync(CHROMIUM, fs.constants.X_OK);
  } catch {
    throw new Error(`${CHROMIUM} is missing: apt-get install chromium (scripts/deps.sh does)`);
  }
}

// --- the supervisor ------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// The control service's address as cfg_control_address makes it: FNV-1a 64 of
// the ini's real path.
function controlName(ini) {
  let h = 14695981039346656037n;
  for (const b of Buffer.from(fs.realpathSync(ini))) h = ((h ^ BigInt(b)) * 1099511628211n) & 0xffffffffffffffffn;
  return `shmrpc-control-${h.toString(16).padStart(16, "0")}`;
}

async function startSupervisor() {
  run.dir = fs.mkdtempSync(path.join(os.tmpdir(), "shmrpc-browser-test-"));
  run.port = await freePort();
  if (!opts.screenshots) {
    run.secret = randomBytes(16).toString("hex");
    fs.writeFileSync(path.join(run.dir, "web.secret"), run.secret + "\n", { mode: 0o600 });
  }
  let ini = `; written by tests/browser/browser_test.mjs
[defaults]
log_dir = logs

[web monitor]
port = ${run.port}
${run.secret ? "secret_file = web.secret" : ""}

[${NAME}]
module = ${opts.module}
shm_name = ${run.shm}
min_proc_num = 2
max_proc_num = 2
${opts.screenshots ? `tcp_port = ${await freePort()}` : "tcp_bind = none"}
`;
  if (opts.echoServer) {
    const tcpPort = await freePort();
    ini += `
[echo-tcp]
exec = ${opts.echoServer} --workers 1 tcp://127.0.0.1:${tcpPort}
tcp_port = ${tcpPort}
`;
  }
  const iniPath = path.join(run.dir, "service.ini");
  fs.writeFileSync(iniPath, ini);
  run.control = controlName(iniPath);
  const err = fs.openSync(path.join(run.dir, "supervisor.err"), "w");
  // timeout(1) is the watchdog should this script die without its cleanup: it sends the
  // supervisor SIGTERM (the supervisor then stops its services), SIGKILL 10 s later.
  // --foreground: a signal timeout gets goes to the supervisor alone, once; without it
  // timeout sends it to its process group as well, and a second SIGTERM tells the
  // supervisor to SIGKILL its services. detached: a new process group, led by timeout,
  // which the supervisor runs in.
  run.sup = spawn("timeout", ["--foreground", "-k", "10", String(HARD_LIMIT_MS / 1000 + 30), opts.service,
    "--foreground", "service.ini"], { cwd: run.dir, detached: true, stdio: ["ignore", err, err] });
  fs.closeSync(err);
  run.sup.on("exit", (code, sig) => {
    run.supExited = true;
    run.supStatus = sig ? `signal ${sig}` : `exit ${code}`;
  });
  log(`shmrpc-service (under timeout, pid ${run.sup.pid}) in ${run.dir}, page on port ${run.port}, shm://${run.shm}`);
  await until("the page to answer /api/token", 60_000, async (d) => {
    if (run.supExited) throw new Error(`shmrpc-service exited:\n${supervisorErr()}`);
    if (run.secret && !run.cookie) {
      const r = await fetch(`${base()}/login`, {
        method: "POST", body: new URLSearchParams({ secret: run.secret }), redirect: "manual",
        signal: AbortSignal.timeout(5_000),
      });
      await r.arrayBuffer();
      d.last = `POST /login: HTTP ${r.status}`;
      if (r.status !== 303) return false;
      run.cookie = (r.headers.get("set-cookie") || "").split(";")[0];
    }
    const r = await fetch(`${base()}/api/token`, { headers: session(), signal: AbortSignal.timeout(5_000) });
    d.last = `HTTP ${r.status}`;
    if (r.status !== 200) return false;
    run.token = (await r.json()).token;
    return true;
  }).catch((e) => { throw new Error(`${e.message}\n${supervisorErr()}`); });
}

function supervisorErr() {
  try {
    return "supervisor.err:\n" + fs.readFileSync(path.join(run.dir, "supervisor.err"), "utf8");
  } catch {
    return "";
  }
}

const base = () => `http://127.0.0.1:${run.port}`;

// This script's session cookie, as headers, when the page has a secret.
const session = () => (run.cookie ? { Cookie: run.cookie } : {});

async function api(p) {
  const r = await fetch(base() + p, { headers: session(), signal: AbortSignal.timeout(10_000) });
  if (!r.ok) throw new Error(`GET ${p}: HTTP ${r.status}`);
  return r.json();
}

async function service(name = NAME) {
  const s = await api(`/api/services/${name}?lines=20`);
  if (s.pid) run.groups.add(s.pid);
  return s;
}

// A call through the page's JSON gateway; its HTTP status (failures are expected while the
// service restarts).
async function call(method, args) {
  try {
    const r = await fetch(`${base()}/api/${NAME}/${method}`, {
      method: "POST", body: JSON.stringify(args), signal: AbortSignal.timeout(10_000),
      headers: { ...session(), "X-Shmrpc-Token": run.token, "Content-Type": "application/json" },
    });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
}

// Calls in the background until stopped: adds, and now and then a centroid of no points
// (an error), so that the calls, errors and latency charts have something to show.
function callLoop(parallel, pauseMs) {
  let on = true, n = 0;
  const one = async () => {
    while (on) {
      n++;
      if (n % 17 === 0) await call("centroid", { points: [] });
      else if (n % 5 === 0) await call("centroid", { points: [{ x: n, y: 1 }, { x: 3, y: n }] });
      else await call("add", [n, 2]);
      if (pauseMs) await sleep(pauseMs);
    }
  };
  const all = Promise.all(Array.from({ length: parallel }, one));
  return { count: () => n, stop: async () => { on = false; await all; } };
}

// SIGTERM through timeout (which passes it on, once), a bounded wait for the supervisor to stop
// its services and remove its segments, then SIGKILL for whatever is left. What went wrong
// on the way: a supervisor that did not stop cleanly, a sanitizer's report in its output
// or a service's log.
async function stopSupervisor() {
  const wrong = [];
  if (!run.sup) return wrong;
  if (!run.supExited) {
    try { process.kill(run.sup.pid, "SIGTERM"); } catch { }
    const end = Date.now() + 30_000;
    while (!run.supExited && Date.now() < end) await sleep(50);
  }
  if (!run.supExited) wrong.push("shmrpc-service did not stop within 30 s of SIGTERM");
  else if (run.supStatus !== "exit 0") wrong.push(`shmrpc-service ended with ${run.supStatus}`);
  else if (segmentsLeft().length) wrong.push(`shmrpc-service left segments: ${segmentsLeft().join(" ")}`);
  const outputs = [path.join(run.dir, "supervisor.err")];
  try {
    for (const f of fs.readdirSync(path.join(run.dir, "logs")))
      if (f.endsWith(".log")) outputs.push(path.join(run.dir, "logs", f));
  } catch { }
  for (const f of outputs) {
    let text = "";
    try { text = fs.readFileSync(f, "utf8"); } catch { }
    if (/Sanitizer|runtime error:/.test(text)) wrong.push(`a sanitizer's report in ${path.basename(f)}:\n${text}`);
  }
  if (wrong.length && !run.errShown && !wrong.some((w) => w.includes("supervisor.err"))) wrong.push(supervisorErr());
  // Stopped cleanly: its services with it, and their process group ids may be anyone's now.
  if (run.supStatus === "exit 0") run.sup = null;
  killEverything();
  return wrong;
}

// The files of our service and of the control service (runtime/src/transport/shm/shm.c, stats.c), in
// this user's directory of names (docs/names.md): shmrpc:KEY, shmrpc:KEY:rdv,
// shmrpc:KEY:lock, shmrpc.stats.shm.KEY; as paths.
const namesDir = `/dev/shm/shmrpc-${process.geteuid()}`;
function segmentsLeft() {
  const ours = (f, key) => f === `shmrpc:${key}` || f.startsWith(`shmrpc:${key}:`) ||
    f === `shmrpc.stats.shm.${key}`;
  try {
    return fs.readdirSync(namesDir).filter((f) => ours(f, run.shm) || (run.control && ours(f, run.control)))
      .map((f) => `${namesDir}/${f}`);
  } catch {
    return [];
  }
}

// The queue's and the map's segments: shmrpc.queue.Q; shmrpc.map.M, shmrpc.mapgen.M.G and
// the lock shmrpc.lock.map.M (docs/map.md).
function sharedSegments() {
  try {
    return fs.readdirSync("/dev/shm").filter((f) => f === `shmrpc.queue.${run.queue}` ||
      f === `shmrpc.map.${run.map}` || f.startsWith(`shmrpc.mapgen.${run.map}.`) ||
      f === `shmrpc.lock.map.${run.map}`);
  } catch {
    return [];
  }
}

// shm_maker make|more: the queue and the map, or one more message and key in them.
function maker(how) {
  const r = spawnSync(opts.maker, [how, run.queue, run.map], { encoding: "utf8", timeout: 20_000 });
  if (r.status !== 0)
    throw new Error(`shm_maker ${how} ended with ${r.status ?? r.signal ?? r.error}: ${r.stderr}`);
}

// The overview's "Queues and maps" rows: {kind, name, figure: text shown} each.
async function sharedRows(page) {
  return bounded(10_000, "reading #shared", page.evaluate(() =>
    [...document.querySelectorAll("#shared tbody tr")].map((tr) => {
      const o = { kind: tr.dataset.kind, name: tr.dataset.name };
      for (const td of tr.querySelectorAll("td[data-figure]")) o[td.dataset.figure] = td.textContent;
      return o;
    })));
}

// Waits for the queue's and the map's rows to show want: {queue: {...}, map: {...}}.
async function sharedShows(page, want, what) {
  return until(what, 30_000, async (d) => {
    const rows = await sharedRows(page);
    const q = rows.find((r) => r.kind === "queue" && r.name === run.queue);
    const m = rows.find((r) => r.kind === "map" && r.name === run.map);
    d.last = JSON.stringify([q, m]);
    const same = (row, w) => row && Object.entries(w).every(([k, v]) => row[k] === v);
    return same(q, want.queue) && same(m, want.map) && [q, m];
  });
}

// Synchronous, so that process 'exit' can run it too.
function killEverything() {
  if (run.sup) {
    try { process.kill(-run.sup.pid, "SIGKILL"); } catch { }
    // A service's group outlives a supervisor killed before it stopped its services.
    for (const g of run.groups) {
      try { process.kill(-g, "SIGKILL"); } catch { }
    }
    run.groups.clear();
  }
  for (const f of segmentsLeft()) fs.rmSync(f, { force: true });
  for (const f of sharedSegments()) fs.rmSync(`/dev/shm/${f}`, { force: true });
  if (run.dir) fs.rmSync(run.dir, { recursive: true, force: true });
  run.dir = "";
}

// --- the page ----------------------------------------------------------------------------

async function openBrowser(chromium) {
  run.browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"], timeout: 60_000,
  });
  const context = await bounded(30_000, "a browser context",
    run.browser.newContext({ viewport: { width: 1200, height: 800 } }));
  const page = await bounded(30_000, "a browser page", context.newPage());
  page.setDefaultTimeout(30_000);
  const problems = [];
  page.on("console", (m) => {
    // Chromium reports every 401 so; without a session they are expected (the login
    // page asks /api/token whether it is logged in, and a session that ends sends the
    // page there): what follows from them is checked where it matters.
    if (m.type() === "error" && !/status of 401\b/.test(m.text()))
      problems.push(`console error: ${m.text()} (${m.location().url})`);
  });
  page.on("pageerror", (e) => problems.push(`uncaught exception: ${e.message}`));
  // A confirm() before an action: OK, unless run.decline says Cancel (once).
  page.on("dialog", (d) => {
    run.dialogs.push(d.message());
    const no = run.decline;
    run.decline = false;
    (no ? d.dismiss() : d.accept()).catch(() => { });
  });
  log(`chromium ${run.browser.version()}`);
  return { page, problems };
}

function noProblems(problems, when) {
  if (problems.length) throw new Error(`the page reported, ${when}:\n  ${problems.join("\n  ")}`);
}

async function openOverview(page) {
  await page.goto(base() + "/", { waitUntil: "load" });
  const row = page.locator(`#services tbody tr[data-service="${NAME}"]`);
  await until(`the overview's row of ${NAME}`, 30_000, async (d) => {
    d.last = `${await page.locator("#services tbody tr").count()} rows in #services tbody`;
    return (await row.count()) === 1;
  });
  return row;
}

// Logs in on the login page (where the page is now, or goes to), and waits to be back at
// `back`.
async function logIn(page, back) {
  await until("the login page", 15_000, async (d) => {
    d.last = page.url();
    return new URL(page.url()).pathname === "/login" && (await page.locator("#secret").count()) === 1;
  });
  await page.waitForLoadState("load", { timeout: 30_000 }); // login.js is there to post it
  await page.locator("#secret").fill(run.secret);
  await Promise.all([
    page.waitForURL(base() + back, { timeout: 30_000 }),
    page.locator('#login button[type="submit"]').click(),
  ]);
  log(`logged in on the login page, back at ${back}`);
}

// The service page's state as the test reads it.
function pageState(page) {
  return bounded(10_000, "reading the page's state", page.evaluate(() => {
    const charts = {};
    for (const div of document.querySelectorAll("div.chart[data-metric]")) {
      const m = div.dataset.metric;
      const u = window.shmrpcCharts && window.shmrpcCharts[m];
      const canvas = div.querySelector("canvas");
      const px = canvas && canvas.width && canvas.height ?
        canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data : null;
      // drawn: the canvas's pixels in the colour of a series that has two values or more
      // (its line, not only the axes and the grid).
      let drawn = null, nonNull = 0;
      for (let i = 1; u && u.data && i < u.data.length; i++) {
        const n = (u.data[i] || []).filter((v) => v !== null && v !== undefined).length;
        nonNull = Math.max(nonNull, n);
        const stroke = u.series[i] && (u.series[i]._stroke || (typeof u.series[i].stroke === "function" ? u.series[i].stroke(u, i) : u.series[i].stroke));
        if (n < 2 || !px || typeof stroke !== "string") continue;
        const probe = document.createElement("canvas").getContext("2d", { willReadFrequently: true });
        probe.fillStyle = stroke;
        probe.fillRect(0, 0, 1, 1);
        const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
        let count = 0;
        for (let j = 0; j < px.length; j += 4)
          if (px[j + 3] > 128 && Math.abs(px[j] - r) + Math.abs(px[j + 1] - g) + Math.abs(px[j + 2] - b) < 60) count++;
        drawn = Math.max(drawn || 0, count);
      }
      // marked: the canvas's pixels in the restart marks' colour.
      let marked = 0;
      if (px) {
        const probe = document.createElement("canvas").getContext("2d", { willReadFrequently: true });
        probe.fillStyle = RESTART_COLOR;
        probe.fillRect(0, 0, 1, 1);
        const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
        for (let j = 0; j < px.length; j += 4)
          if (px[j + 3] > 128 && Math.abs(px[j] - r) + Math.abs(px[j + 1] - g) + Math.abs(px[j + 2] - b) < 40) marked++;
      }
      charts[m] = {
        points: Number(div.getAttribute("data-points")),
        restarts: Number(div.getAttribute("data-restarts")), marked,
        uplotPoints: u && u.data && u.data[0] ? u.data[0].length : null,
        nonNull, drawn,
        max: u && u.data ? Math.max(0, ...u.data.slice(1).flat().filter((v) => typeof v === "number")) : null,
      };
    }
    const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent.trim() : null; };
    return {
      service: document.body.dataset.service,
      state: text("#state"),
      result: text("#result"),
      error: document.querySelector("#error:not([hidden])") ? text("#error") : "",
      pids: [...document.querySelectorAll("#workers tbody tr[data-pid]")].map((r) => Number(r.dataset.pid)),
      methods: [...document.querySelectorAll("#methods tbody tr[data-method]")].map((r) => r.dataset.method),
      log: [...document.querySelectorAll("#log .log-line")].map((l) => l.textContent),
      buttons: [...document.querySelectorAll("button[data-action]")].map((b) => b.dataset.action),
      charts,
    };
  }));
}

const METRICS = ["cpu", "memory", "io", "calls", "latency"];
const short = (s) => JSON.stringify({ ...s, log: `${s.log.length} lines` });

// Every chart has at least `points` samples plotted, its uPlot instance agrees, and a
// series holds at least two values; with calls, the calls chart shows some.
async function chartsDrawn(page, points, ms) {
  return until(`five charts with ${points}+ points drawn`, ms, async (d) => {
    const s = await pageState(page);
    d.last = JSON.stringify(s.charts);
    return METRICS.every((m) => {
      const c = s.charts[m];
      return c && c.points >= points && c.uplotPoints === c.points && c.nonNull >= 2 &&
        c.drawn >= 3;
    }) && s.charts.calls.max > 0 && s;
  });
}

// The page's worker PIDs are the ones /api/services gives (both read again until they agree:
// a worker may be starting between the two reads); returns them, sorted.
async function sameWorkers(page) {
  const sorted = (a) => a.slice().sort((x, y) => x - y);
  return until("#workers to show the workers of /api/services", 15_000, async (d) => {
    const shown = sorted((await pageState(page)).pids), real = sorted((await service()).worker_pids);
    d.last = `the page: ${shown}; /api/services: ${real}`;
    return shown.length > 0 && JSON.stringify(shown) === JSON.stringify(real) && shown;
  });
}

// --- the test ----------------------------------------------------------------------------

async function test(chromium) {
  await startSupervisor();
  const before = await service();
  if (before.state !== "running" || before.worker_pids.length < 1)
    throw new Error(`echo is not running with workers: ${JSON.stringify(before)}`);
  log(`echo: pid ${before.pid}, workers ${before.worker_pids.join(" ")}`);
  const calls = callLoop(1, 20);
  try {
    const { page, problems } = await openBrowser(chromium);

    // Without a session the overview sends the browser to the login page.
    await page.goto(base() + "/", { waitUntil: "load" });
    await logIn(page, "/");
    const row = await openOverview(page);
    log(`overview: ${(await row.innerText()).replace(/\s+/g, " ").trim()}`);
    // A queue and a map of this user, made now: the next refresh shows them, and the one
    // after shows what changed in them, without a reload.
    maker("make");
    const made = await sharedShows(page, {
      queue: { depth: "2", pushed: "3", popped: "1", timeouts: "0", drops: "0", entries: "–" },
      map: { depth: "–", entries: "5", generation: "1", writes: "5", growths: "0", lock_waits: "0" },
    }, "the queue and the map in #shared");
    if (!/^\d+(\.\d)? (KiB|MiB)$/.test(made[1].bytes)) throw new Error(`the map's bytes: ${made[1].bytes}`);
    log(`queues and maps: ${JSON.stringify(made)}`);
    maker("more");
    await sharedShows(page, {
      queue: { depth: "3", pushed: "4", popped: "1" },
      map: { entries: "6", writes: "6" },
    }, "the queue's and the map's new figures in #shared");
    log("queues and maps: refreshed");
    // "errors" is a count wherever it heads a column; the services' share of failed calls
    // is "error rate", in percent. Times are UTC.
    const heads = await until("the overview's tables with their figures", 15_000, async (d) => {
      const h = await bounded(10_000, "reading the overview's heads", page.evaluate(() => {
        const ths = (t) => [...document.querySelectorAll(`#${t} thead th`)].map((th) => th.textContent);
        const figs = (sel) => [...document.querySelectorAll(sel)].map((td) => td.textContent);
        return { services: ths("services"), top: ths("top"), rate: figs('#services td[data-figure="error_rate"]'),
                 errors: figs('#top td[data-figure="errors"]'), updated: document.getElementById("updated").textContent };
      }));
      d.last = JSON.stringify(h);
      return h.rate.length > 0 && h.errors.length > 0 && h;
    });
    if (!heads.services.includes("error rate") || heads.services.includes("errors") || !heads.top.includes("errors"))
      throw new Error(`the overview's column heads: ${JSON.stringify(heads)}`);
    if (!heads.rate.every((t) => /^(\d+\.\d%|–)$/.test(t)) || !heads.errors.every((t) => /^\d+$/.test(t)))
      throw new Error(`error rates and error counts: ${JSON.stringify(heads)}`);
    if (!/^updated \d\d:\d\d:\d\d UTC$/.test(heads.updated)) throw new Error(`#updated: ${heads.updated}`);
    const link = row.locator("a.service-link");
    const href = await link.getAttribute("href", { timeout: 10_000 });
    if (href !== `/services/${NAME}`) throw new Error(`a.service-link goes to ${href}, not /services/${NAME}`);
    await Promise.all([page.waitForURL(`**/services/${NAME}`, { timeout: 30_000 }), link.click()]);
    noProblems(problems, "on the overview");

    const first = await until("the service page", 30_000, async (d) => {
      const s = await pageState(page);
      d.last = short(s);
      return s.service === NAME && s.state === "running" && s.pids.length > 0 && s;
    });
    const pids = await sameWorkers(page);
    for (const a of ["start", "stop", "restart", "scale"])
      if (!first.buttons.includes(a)) throw new Error(`no button[data-action="${a}"]: ${first.buttons}`);
    for (const m of ["add", "centroid", "echo_json", "echo_raw"])
      if (!first.methods.includes(m)) throw new Error(`#methods has no row for ${m}: ${first.methods}`);
    log(`service page: state ${first.state}, workers ${first.pids.join(" ")}`);

    const drawn = await chartsDrawn(page, 2, 45_000);
    log("charts: " + METRICS.map((m) => `${m} ${drawn.charts[m].points} points (${drawn.charts[m].drawn} px of a line)`).join(", "));
    // Where lines break, for any series_interval_s: more than 2.5 of the later sample's own
    // intervals (dt_ms) between two samples, or a restart (another pid). service.js's
    // brokenBefore, on samples made up here (t in s).
    const breaks = await bounded(10_000, "service.js's brokenBefore", page.evaluate(() => {
      const saved = plotted;
      try {
        plotted = { dt_ms: [6000, 6000, 6000, 60000, 1000, null], pid: [1, 1, 1, 1, 2, 2] };
        return [1, 2, 3, 4, 5].map((i) => brokenBefore([0, 6, 30, 90, 91, 92], i));
      } finally {
        plotted = saved;
      }
    }));
    if (JSON.stringify(breaks) !== "[false,true,false,true,false]")
      throw new Error(`the charts' lines break at the wrong samples: ${JSON.stringify(breaks)}`);
    // The time axis in UTC, as the logs: seconds when ticks are under a minute apart, the
    // day where it changes; the latency axis logarithmic, labelled at 1, 2 and 5; restarts
    // where the pid changes.
    const axes = await bounded(10_000, "service.js's axes", page.evaluate(() => {
      const night = Date.UTC(2026, 10, 27, 23, 59, 30) / 1000;
      return {
        seconds: timeTicks([night, night + 15]), hours: timeTicks([night + 30 - 3600, night + 30]),
        day: timeTicks([night + 30 - 7200, night + 30 - 3600, night + 30]),
        log: logTicks([1, 2, 3, 5, 10, 20, 700], micros), distr: window.shmrpcCharts.latency.scales.y.distr,
        restarts: restartsOf([1, 2, 3, 4, 5, 6], [7, 7, null, 8, 8, 9]),
      };
    }));
    const wantAxes = {
      seconds: ["23:59:30", "23:59:45"], hours: ["23:00", "2026-11-28"],
      day: ["22:00", "23:00", "2026-11-28"], log: ["1.00 µs", "2.00 µs", "", "5.00 µs", "10.0 µs", "20.0 µs", ""],
      distr: 3, restarts: [4, 6],
    };
    if (JSON.stringify(axes) !== JSON.stringify(wantAxes))
      throw new Error(`the charts' axes: ${JSON.stringify(axes)}, not ${JSON.stringify(wantAxes)}`);

    // The module host's line, with the supervisor's time stamp before it.
    const serving = new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d.*\\b${NAME}: pid ${before.pid} serving shm://${run.shm} with 2 workers`);
    await until("the service's log line in #log", 30_000, async (d) => {
      const s = await pageState(page);
      d.last = JSON.stringify(s.log.slice(-3));
      return s.log.some((l) => serving.test(l));
    });
    log("log: the service's line is there");
    noProblems(problems, "on the service page");

    // A stop not confirmed does nothing.
    run.decline = true;
    await page.locator('button[data-action="stop"]').click({ timeout: 10_000 });
    await until("a confirm() for the stop", 10_000, async (d) => {
      d.last = JSON.stringify(run.dialogs);
      return run.dialogs.includes(`stop ${NAME}?`);
    });
    await sleep(2_500); // a refresh of the page, and time for a stop that was not wanted
    const declined = await pageState(page);
    if (declined.state !== "running" || declined.result)
      throw new Error(`a stop not confirmed acted: ${short(declined)}`);
    if ((await service()).pid !== before.pid) throw new Error("a stop not confirmed stopped the service");
    log("stop, not confirmed: still running");

    await calls.stop();
    log(`${calls.count()} calls made; restart`);
    await page.locator('button[data-action="restart"]').click({ timeout: 10_000 });
    await until("a confirm() for the restart", 10_000, async (d) => {
      d.last = JSON.stringify(run.dialogs);
      return run.dialogs.includes(`restart ${NAME}?`);
    });
    const after = await until("new worker PIDs, running", 60_000, async (d) => {
      const s = await pageState(page);
      d.last = short(s);
      return s.state === "running" && s.pids.length > 0 && s.pids.every((p) => !pids.includes(p)) && s;
    });
    log(`after restart: workers ${after.pids.join(" ")}, #result "${after.result}"`);
    await sameWorkers(page);
    const now = await service();
    if (now.pid === before.pid) throw new Error(`the service's pid is still ${before.pid}`);
    await until("#result to report the restart's outcome", 10_000, async (d) => {
      const s = await pageState(page);
      d.last = JSON.stringify(s.result);
      return /restart/i.test(s.result || "") && /running/.test(s.result) && !/fail/i.test(s.result);
    });
    // The log follows: the new process's line arrives without a reload.
    const again = new RegExp(`\\b${NAME}: pid ${now.pid} serving shm://${run.shm}`);
    await until("the restarted service's log line in #log", 30_000, async (d) => {
      const s = await pageState(page);
      d.last = JSON.stringify(s.log.slice(-3));
      return s.log.some((l) => again.test(l));
    });
    log("log: the restarted service's line is there");
    // The restart is marked on every chart, a dashed line drawn; the 1 h range, in windows
    // of 4 s, shows it too.
    const marks = async (what) => until(what, 30_000, async (d) => {
      const s = await pageState(page);
      d.last = JSON.stringify(s.charts);
      return METRICS.every((m) => s.charts[m].restarts >= 1 && s.charts[m].marked >= 20 && s.charts[m].points >= 2) && s;
    });
    await marks("a restart mark on every chart");
    const asked = [];
    const onRequest = (r) => { if (r.url().includes("/series")) asked.push(r.url()); };
    page.on("request", onRequest);
    await page.locator('#range button[data-span="3600"]').click({ timeout: 10_000 });
    const hour = await marks("the 1 h range with the restart marked");
    // Three polls after the first: samples come a second apart, so that one at least
    // falls in a window already plotted.
    await until("the 1 h range's requests: the last hour, then its newest window again", 15_000, async (d) => {
      d.last = JSON.stringify(asked);
      return asked.some((u) => /[?&]span_s=3600&step=4&/.test(u)) &&
        asked.filter((u) => /[?&]since=\d+&step=4&/.test(u)).length >= 4;
    });
    page.off("request", onRequest);
    // The newest window, asked for again while it fills, replaces the one plotted: one
    // point per window of 4 s, however many polls.
    const ts = await bounded(10_000, "the samples' t", page.evaluate(() => samples.t.slice()));
    const windows = ts.map((t) => Math.floor(t / 4000));
    if (new Set(windows).size !== windows.length || windows.some((w, i) => i && w <= windows[i - 1]))
      throw new Error(`the 1 h range plots a window twice, or out of order: t ${JSON.stringify(ts)}`);
    log(`1 h range: ${hour.charts.calls.points} windows, ${hour.charts.calls.restarts} restart marked`);
    await page.locator('#range button[data-span="900"]').click({ timeout: 10_000 });
    await marks("the 15 min range again");
    // A failed read shows in #error: none may last once the service runs again.
    await until("#error to be hidden", 10_000, async (d) => {
      const s = await pageState(page);
      d.last = JSON.stringify(s.error);
      return !s.error;
    });
    noProblems(problems, "after the restart");

    // At a phone's width neither page is wider than the window: the tables scroll in
    // their own boxes, the charts take the width there is.
    await page.setViewportSize({ width: 600, height: 900 });
    for (const where of [`/services/${NAME}`, "/"]) {
      if (where === "/") await openOverview(page);
      await until(`${where} at 600 px`, 15_000, async (d) => {
        const w = await bounded(10_000, "reading widths", page.evaluate(() => ({
          page: document.documentElement.scrollWidth, window: window.innerWidth,
          widest: Math.max(...[...document.querySelectorAll("main > *")].map((e) => e.getBoundingClientRect().right)),
        })));
        d.last = JSON.stringify(w);
        return w.window === 600 && w.page <= 600 && w.widest <= 600;
      });
    }
    await page.setViewportSize({ width: 1200, height: 800 });
    log("600 px: no page wider than the window");
    await page.goto(`${base()}/services/${NAME}`, { waitUntil: "load" });

    // The session ends (a logout from the page itself, as a session's 12 h would end it):
    // the page's next poll gets 401 and goes to the login page with ?next=, which, once
    // logged in again, brings it back to the service's page.
    await bounded(10_000, "POST /logout from the page", page.evaluate(async () => {
      const token = document.querySelector('meta[name="shmrpc-token"]').content;
      await fetch("/logout", { method: "POST", headers: { "X-Shmrpc-Token": token }, redirect: "manual" });
    }));
    await until("the page to go to the login page", 15_000, async (d) => {
      d.last = page.url();
      return page.url() === `${base()}/login?next=/services/${NAME}`;
    });
    log(`session ended: the page went to ${page.url()}`);
    await logIn(page, `/services/${NAME}`);
    await until("the service page again", 30_000, async (d) => {
      const s = await pageState(page);
      d.last = short(s);
      return s.service === NAME && s.state === "running" && s.pids.length > 0 && !s.error;
    });
    noProblems(problems, "after logging in again");

    // "restart all", then "stop all", each confirmed, on the overview.
    await openOverview(page);
    const pid = (await service()).pid;
    await page.locator('button[data-all="restart"]').click({ timeout: 10_000 });
    await until("the service restarted by restart all", 30_000, async (d) => {
      const s = await service();
      d.last = `${s.state} pid ${s.pid}; asked ${JSON.stringify(run.dialogs.at(-1))}`;
      return s.state === "running" && s.pid && s.pid !== pid;
    });
    if (run.dialogs.at(-1) !== `restart all services (${NAME})?`)
      throw new Error(`restart all asked ${JSON.stringify(run.dialogs.at(-1))}`);
    await page.locator('button[data-all="stop"]').click({ timeout: 10_000 });
    await until("the service stopped by stop all", 30_000, async (d) => {
      const s = await service();
      d.last = `${s.state}; #result ${await page.locator("#result").textContent()}`;
      return s.state === "stopped";
    });
    if (run.dialogs.at(-1) !== `stop all services (${NAME})?`)
      throw new Error(`stop all asked ${JSON.stringify(run.dialogs.at(-1))}`);
    log("restart all, stop all: done");
    noProblems(problems, "after restart all and stop all");
  } finally {
    await calls.stop();
  }
}

// --- the README's pictures ------------------------------------------------------------------

async function screenshots(chromium) {
  fs.mkdirSync(opts.screenshots, { recursive: true });
  await startSupervisor();
  await service();
  const calls = callLoop(4, 0);
  try {
    const { page, problems } = await openBrowser(chromium);
    log("calling echo for 15 s, with a restart after 8 s");
    await sleep(8_000);
    const r = await fetch(`${base()}/api/services/${NAME}/restart`, {
      method: "POST", headers: { "X-Shmrpc-Token": run.token }, signal: AbortSignal.timeout(10_000),
    });
    if (!r.ok) throw new Error(`restart: HTTP ${r.status}`);
    await sleep(7_000);
    // At a desktop's width, then at a phone's.
    for (const [width, suffix] of [[1200, ""], [600, "-narrow"]]) {
      await page.setViewportSize({ width, height: 800 });
      await openOverview(page);
      await sleep(2_500); // a refresh with the latest sample
      await page.screenshot({ path: path.join(opts.screenshots, `overview${suffix}.png`) });
      log(`${opts.screenshots}/overview${suffix}.png`);
      await page.goto(`${base()}/services/${NAME}`, { waitUntil: "load" });
      await chartsDrawn(page, 10, 45_000);
      await sleep(1_500);
      await page.screenshot({ path: path.join(opts.screenshots, `service${suffix}.png`), fullPage: true });
      log(`${opts.screenshots}/service${suffix}.png`);
    }
    noProblems(problems, "while taking screenshots");
  } finally {
    await calls.stop();
  }
}

// --- the run ---------------------------------------------------------------------------------

let finished = false;
process.on("exit", () => { if (!finished) killEverything(); });
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"])
  process.on(sig, () => { console.error(`browser_test: ${sig}`); killEverything(); process.exit(1); });

const hard = setTimeout(() => {
  console.error(`browser_test: FAILED: the whole run took over ${HARD_LIMIT_MS / 1000} s`);
  killEverything();
  process.exit(1);
}, HARD_LIMIT_MS);

let status = 0;
try {
  checkChromium();
  const chromium = await loadPlaywright();
  await (opts.screenshots ? screenshots(chromium) : test(chromium));
} catch (e) {
  console.error(`browser_test: FAILED: ${e.stack || e}`);
  if (run.dir) console.error(supervisorErr());
  run.errShown = true;
  status = 1;
} finally {
  if (run.browser) await Promise.race([run.browser.close().catch(() => { }), sleep(10_000)]);
  const wrong = await stopSupervisor();
  if (wrong.length) {
    console.error(`browser_test: FAILED: ${wrong.join("\n")}`);
    status = 1;
  }
  finished = true;
  clearTimeout(hard);
}
if (status === 0) log(opts.screenshots ? "screenshots taken" : "PASSED");
process.exit(status);
