"""The status page served at ``GET /``: one self-contained HTML document for a person.

No external resource (no CDN, no font, no image): inline CSS and a small
script that renders ``status()`` and fetches ``./status`` again every
:data:`REFRESH_MS` milliseconds. The first render uses the status embedded in
the page, so it shows the workers at once. Every value is put in the page as
text (``textContent``), never as HTML. A Content-Security-Policy allows only
this page's own script and style (by their hashes) and requests to its own
origin. On a narrow screen (a phone) each worker becomes a card.

The throughput of a worker that counts its jobs (``jobs_done`` in its
status entry) is worked out in the page: the jobs done between two
consecutive renders, over the time between them; "—" for a worker that
does not count jobs.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from typing import Any

__all__ = ["PAGE_HEADERS", "REFRESH_MS", "render_page"]

REFRESH_MS = 2000
"""How often the page asks for ``/status`` again."""

_STYLE = """
:root { color-scheme: light dark; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --idle: #6e7781;
  --line: rgba(127,127,127,.25); --muted: rgba(127,127,127,1); }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { padding: 14px 16px 10px; border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 1.2rem; font-weight: 600; overflow-wrap: anywhere; }
h1 small { font-weight: 400; color: var(--muted); }
#summary { margin-top: 6px; display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: .9rem; }
#summary .dot { display: inline-block; width: .6em; height: .6em; border-radius: 50%;
  background: var(--ok); margin-right: .35em; vertical-align: .05em; }
#summary .lost .dot { background: var(--bad); }
#summary .lost { color: var(--bad); }
main { padding: 8px 16px 24px; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 7px 10px 7px 0; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-size: .78rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted);
  font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.name { font-weight: 600; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: .8rem; font-weight: 600;
  color: #fff; background: var(--idle); white-space: nowrap; }
.badge.running { background: var(--ok); } .badge.starting, .badge.stopping { background: var(--warn); }
.badge.failed { background: var(--bad); }
.note { display: block; font-size: .8rem; color: var(--muted); }
.error { color: var(--bad); font-size: .85rem; overflow-wrap: anywhere; max-width: 38em; }
.muted { color: var(--muted); }
@media (max-width: 720px) {
  thead { display: none; }
  table, tbody, tr, td { display: block; width: 100%; }
  tr { border: 1px solid var(--line); border-radius: 10px; padding: 8px 12px; margin: 10px 0; }
  td { border: 0; padding: 3px 0; display: flex; gap: 12px; justify-content: space-between;
    text-align: right; }
  td::before { content: attr(data-label); color: var(--muted); font-size: .8rem; flex: none; }
  td.name { font-size: 1.05rem; } td.name::before { content: none; }
  td.error { max-width: none; text-align: right; }
  td:empty, td.blank { display: none; }
}
"""

_SCRIPT = """
"use strict";
const REFRESH_MS = @REFRESH_MS@;
const STATES = ["running", "starting", "stopping", "stopped", "failed", "new"];
function duration(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  const m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
  if (d > 0) return d + " d " + (h % 24) + " h";
  if (h > 0) return h + " h " + (m % 60) + " min";
  return m + " min " + Math.floor(s % 60) + " s";
}
function bytes(n) {
  if (n === null || n === undefined) return "";
  return n >= 1073741824 ? (n / 1073741824).toFixed(2) + " GiB" : (n / 1048576).toFixed(1) + " MiB";
}
const lastCounts = new Map();  // worker name -> {jobs, at}: its jobs_done at the previous render
function throughput(w, at) {
  if (w.jobs_done === null || w.jobs_done === undefined) {
    lastCounts.delete(w.name);
    return withNote("\u2014", "");
  }
  const last = lastCounts.get(w.name);
  lastCounts.set(w.name, { jobs: w.jobs_done, at: at });
  const total = w.jobs_done + (w.jobs_done === 1 ? " job" : " jobs");
  if (!last || w.jobs_done < last.jobs || at <= last.at) return withNote("measuring\u2026", total);
  const perSecond = (w.jobs_done - last.jobs) / ((at - last.at) / 1000);
  return withNote((perSecond >= 10 ? Math.round(perSecond) : perSecond.toFixed(1)) + "/s", total);
}
function cell(row, label, text, cls) {
  const td = document.createElement("td");
  td.dataset.label = label;
  if (cls) td.className = cls;
  if (text instanceof Node) td.appendChild(text); else td.textContent = text;
  if (!td.textContent) td.classList.add("blank");
  row.appendChild(td);
  return td;
}
function withNote(text, note) {
  const span = document.createElement("span");
  span.textContent = text;
  if (note) {
    const small = document.createElement("span");
    small.className = "note";
    small.textContent = note;
    span.appendChild(small);
  }
  return span;
}
function render(workers, at) {
  const body = document.getElementById("workers");
  const rows = [];
  const counts = {};
  for (const w of workers) {
    counts[w.state] = (counts[w.state] || 0) + 1;
    const row = document.createElement("tr");
    row.dataset.worker = w.name;
    row.dataset.state = w.state;
    cell(row, "Worker", w.name, "name");
    let note = "";
    if (w.held) note = "stopped on request";
    else if (w.restart_in !== null) note = "restarts in " + duration(w.restart_in);
    const state = withNote("", note);
    const badge = document.createElement("span");
    badge.className = "badge " + w.state;
    badge.textContent = w.state;
    state.prepend(badge);
    cell(row, "State", state);
    cell(row, "Kind", w.kind);
    cell(row, "PID", w.pid === null ? "" : String(w.pid), "num");
    cell(row, "Uptime", duration(w.uptime), "num");
    const reasons = Object.entries(w.restart_reasons || {}).map(([k, v]) => v + " " + k).join(", ");
    cell(row, "Restarts", withNote(String(w.restarts), reasons), "num");
    cell(row, "Memory", bytes(w.rss_bytes), "num");
    cell(row, "Throughput", throughput(w, at), "num");
    const beat = w.last_heartbeat;
    cell(row, "Heartbeat", beat === null ? "" : beat < 0.1 ? "now" : duration(beat) + " ago", "num");
    cell(row, "Last error", w.last_error || "", "error");
    rows.push(row);
  }
  body.replaceChildren(...rows);
  const parts = STATES.filter((s) => counts[s]).map((s) => counts[s] + " " + s);
  const total = workers.length + " worker" + (workers.length === 1 ? "" : "s");
  document.getElementById("counts").textContent = total + (parts.length ? ": " + parts.join(", ") : "");
  document.getElementById("empty").hidden = workers.length > 0;
}
function connected(ok) {
  const live = document.getElementById("live");
  const now = new Date().toLocaleTimeString();
  if (ok) delete live.dataset.since;
  else live.dataset.since = live.dataset.since || now;
  live.className = ok ? "" : "lost";
  const lost = "no answer from the server since " + live.dataset.since;
  live.lastChild.textContent = ok ? "live, updated " + now : lost;
}
async function refresh() {
  try {
    const reply = await fetch("./status", { cache: "no-store" });
    const at = performance.now();
    if (!reply.ok) throw new Error("HTTP " + reply.status);
    render(await reply.json(), at);
    connected(true);
  } catch (e) {
    connected(false);
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}
render(JSON.parse(document.getElementById("initial").textContent), performance.now());
connected(true);
setTimeout(refresh, REFRESH_MS);
""".replace("@REFRESH_MS@", str(REFRESH_MS))

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>{name} <small>spoc-workers</small></h1>
<div id="summary"><span id="counts"></span><span id="live"><span class="dot"></span><span></span></span></div>
</header>
<main>
<table>
<thead><tr><th>Worker</th><th>State</th><th>Kind</th><th>PID</th><th>Uptime</th><th>Restarts</th>
<th>Memory</th><th>Throughput</th><th>Heartbeat</th><th>Last error</th></tr></thead>
<tbody id="workers"></tbody>
</table>
<p id="empty" class="muted" hidden>This server has no workers.</p>
<noscript><p>This page needs JavaScript to show the workers;
their status is at <a href="./status">./status</a>.</p></noscript>
</main>
<script type="application/json" id="initial">{initial}</script>
<script>{script}</script>
</body>
</html>
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


PAGE_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_hash(_SCRIPT)}; style-src {_hash(_STYLE)}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
"""Headers sent with the page: only its own script and style may run."""


def render_page(server_name: str, status: list[dict[str, Any]]) -> bytes:
    """The page for ``server_name``, with ``status`` (``Server.status()``) for its first render."""
    initial = json.dumps(status, default=str).replace("<", "\\u003c").replace("&", "\\u0026")
    name = html.escape(server_name)
    page = _TEMPLATE.format(
        title=f"{name} · spoc-workers", name=name, style=_STYLE, script=_SCRIPT, initial=initial
    )
    return page.encode("utf-8")
