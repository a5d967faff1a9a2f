/* SPDX-License-Identifier: MIT */
// What both pages share (the overview's app.js and a service's service.js, loaded after
// this file): number formats, "–" for a figure that is not there; and the way to the
// login page when the session has ended.
"use strict";

// Set once the page is on its way to the login page: polling stops.
let leaving = false;

// Whether r is a 401: with a secret_file, the session has ended (12 h after the login, at a
// logout, or when the supervisor restarted; without a secret nothing answers 401). The
// first one goes to the login page, which comes back here after it (?next=), as the
// server's own 303 for a page does.
function sessionEnded(r) {
  if (r.status !== 401) return false;
  if (!leaving) {
    leaving = true;
    const here = location.pathname + location.search;
    location.assign(here === "/" ? "/login"
                                 : "/login?next=" + encodeURIComponent(here).replace(/%2F/g, "/"));
  }
  return true;
}

function text(v, unit) {
  return v === null || v === undefined ? "–" : unit ? v + unit : String(v);
}

// Three significant figures or so: 1.02 µs, 16.4 µs, 262 µs, 1.05 ms; 0 as "0 µs".
function micros(us) {
  if (us === null || us === undefined) return "–";
  const [v, unit] = us >= 1000 ? [us / 1000, " ms"] : [us, " µs"];
  return (v === 0 ? "0" : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)) + unit;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function duration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d ? d + "d" + h + "h" : h ? h + "h" + m + "m" : m ? m + "m" + (s % 60) + "s" : s + "s";
}

// Times as the logs write them, ISO 8601 in UTC, whatever the browser's locale and zone:
// "2026-11-27", "02:15:30", "2026-11-27 02:15:30 UTC" (ms: Unix ms).
function isoDate(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

function isoTime(ms, seconds = true) {
  return new Date(ms).toISOString().slice(11, seconds ? 19 : 16);
}

function isoDateTime(ms) {
  return isoDate(ms) + " " + isoTime(ms) + " UTC";
}

// Asks before an action that ends processes (stop, restart); true to go on.
function confirmed(action, what) {
  return action !== "stop" && action !== "restart" ? true : confirm(action + " " + what + "?");
}

function cell(row, value, cls) {
  const td = row.insertCell();
  td.textContent = value;
  if (cls) td.className = cls;
  return td;
}
