/* SPDX-License-Identifier: MIT */
// The login page: POSTs the secret as the form would (secret=..., which the page also
// takes without this script), shows a refusal in place, and then goes to the page that
// sent the browser here (?next=, a path of this page only).
"use strict";

function next() {
  const n = new URLSearchParams(location.search).get("next");
  // Not "//host" nor "/\host" (another site to a browser), nor control characters, which
  // URL parsing drops (so "/\t/host" would become "//host").
  return n && /^\/(?![\/\\])[^\x00-\x1f\\]*$/.test(n) ? n : "/";
}

async function login(ev) {
  ev.preventDefault();
  const form = ev.target;
  const error = document.getElementById("error");
  const button = form.querySelector("button");
  button.disabled = true;
  error.hidden = true;
  try {
    // "manual": the 303 to / is not followed; its cookie is kept all the same.
    const r = await fetch("/login", { method: "POST", body: new URLSearchParams(new FormData(form)), redirect: "manual" });
    if (r.type === "opaqueredirect" || r.ok) {
      location.replace(next());
      return;
    }
    const body = await r.json().catch(() => null);
    error.textContent = body && body.error ? body.error.message : "login failed: HTTP " + r.status;
    error.hidden = false;
  } catch (e) {
    error.textContent = "login failed: " + e.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

document.getElementById("login").addEventListener("submit", login);

// A link from another site brings no cookie (SameSite=Strict) and lands here: when this
// browser is logged in after all, go on.
fetch("/api/token", { redirect: "manual" }).then((r) => { if (r.ok) location.replace(next()); }, () => {});
