// The live page: polls /ui/data.json every second and redraws the table.
// Plain JS, no build step; see live/snapshot.go for the data's meaning.
"use strict";

const body = document.querySelector("#calls tbody");
const status = document.getElementById("status");
let sortKey = "router.calls_per_second", sortDesc = true, last = null;

// value reads a sort key of a row: "procedure", "view.field", or the
// differences "d.caller" (caller − router p50) and "d.callee" (router − callee p50).
function value(row, key) {
  if (key === "procedure") return row.procedure;
  if (key === "d.caller") return diff(row.caller, row.router);
  if (key === "d.callee") return diff(row.router, row.callee);
  const [view, field] = key.split(".");
  return row[view] ? row[view][field] : null;
}

function diff(a, b) {
  return a && b && a.p50_ms != null && b.p50_ms != null ? a.p50_ms - b.p50_ms : null;
}

function ms(v) {
  if (v == null) return "–";
  if (v < 1) return (v * 1000).toFixed(0) + " µs";
  if (v < 100) return v.toFixed(1) + " ms";
  if (v < 10000) return v.toFixed(0) + " ms";
  return (v / 1000).toFixed(1) + " s";
}

function signedMs(v) { return v == null ? "–" : (v >= 0 ? "+" : "−") + ms(Math.abs(v)); }
function rate(v) { return v == null ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(0); }
function pct(v, calls) { return calls ? v.toFixed(1) + " %" : "–"; }

function spark(points) {
  const max = Math.max(...points, 0);
  const w = 120, h = 24;
  const xy = points.map((p, i) => `${(i * w / (points.length - 1)).toFixed(1)},${(h - 2 - (max ? p / max : 0) * (h - 4)).toFixed(1)}`);
  return `<svg class="spark" viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" role="img" aria-label="calls per second, last 5 minutes, peak ${rate(max)}"><polyline points="${xy.join(" ")}"/></svg>`;
}

// cell is a table cell showing text; raw, when given, is the number
// behind it (data-v), for tests and for copying.
function cell(text, cls, raw) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  if (raw != null) td.dataset.v = raw;
  return td;
}

function render(data) {
  document.getElementById("sessions").textContent = data.sessions;
  document.getElementById("inflight").textContent = data.calls_in_flight;
  const log = data.log;
  document.getElementById("lines").textContent = log ? rate(log.lines_per_second) : "off";
  document.getElementById("bad").textContent = log ? log.bad_lines : "off";
  document.getElementById("drops").textContent = log ? (log.udp_kernel_drops == null ? "n/a" : log.udp_kernel_drops) : "off";
  const anyCalls = data.calls > 0 || data.rows.some(r => [r.router, r.caller, r.callee].some(m => m && m.calls_last_minute > 0));
  document.getElementById("empty").hidden = anyCalls;

  const rows = data.rows.slice().sort((a, b) => {
    const x = value(a, sortKey), y = value(b, sortKey);
    if (x == null && y == null) return a.procedure < b.procedure ? -1 : 1;
    if (x == null) return 1;
    if (y == null) return -1;
    const c = x < y ? -1 : x > y ? 1 : 0;
    return sortDesc ? -c : c;
  });
  const frag = document.createDocumentFragment();
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.procedure = r.procedure;
    const name = cell(r.procedure, "name");
    name.title = r.procedure;
    tr.append(name);
    const m = r.router;
    if (m) {
      tr.append(cell(rate(m.calls_per_second), "", m.calls_per_second), cell(ms(m.p50_ms), "", m.p50_ms),
        cell(ms(m.p95_ms), "", m.p95_ms), cell(ms(m.p99_ms), "", m.p99_ms),
        cell(pct(m.error_percent, m.calls_last_minute), m.error_percent > 5 ? "bad" : m.error_percent > 0 ? "warn" : ""),
        cell(pct(m.timeout_percent, m.calls_last_minute), m.timeout_percent > 5 ? "bad" : m.timeout_percent > 0 ? "warn" : ""));
      const sp = document.createElement("td");
      sp.innerHTML = spark(m.spark);
      tr.append(sp);
    } else {
      for (let i = 0; i < 7; i++) tr.append(cell("–", "na"));
    }
    for (const [view, d] of [["caller", diff(r.caller, r.router)], ["callee", diff(r.router, r.callee)]]) {
      const v = r[view];
      tr.append(cell(v ? rate(v.calls_per_second) : "–", v ? "" : "na", v && v.calls_per_second),
        cell(v ? ms(v.p50_ms) : "–", v ? "" : "na", v && v.p50_ms), cell(v ? ms(v.p99_ms) : "–", v ? "" : "na", v && v.p99_ms),
        cell(signedMs(d), d == null ? "na" : "", d));
    }
    frag.append(tr);
  }
  body.replaceChildren(frag);
  for (const th of document.querySelectorAll("th[data-key]")) {
    th.setAttribute("aria-sort", th.dataset.key === sortKey ? (sortDesc ? "descending" : "ascending") : "none");
  }
}

for (const th of document.querySelectorAll("th[data-key]")) {
  th.addEventListener("click", () => {
    if (sortKey === th.dataset.key) sortDesc = !sortDesc;
    else { sortKey = th.dataset.key; sortDesc = sortKey !== "procedure"; }
    if (last) render(last);
  });
}

// poll fetches the data every second; when the router is away (a restart),
// it says so and keeps trying, so the page picks up the new process.
async function poll() {
  try {
    const rsp = await fetch("/ui/data.json", { cache: "no-store" });
    if (!rsp.ok) throw new Error("HTTP " + rsp.status);
    last = await rsp.json();
    render(last);
    status.textContent = "live · updated " + new Date(last.time).toLocaleTimeString() + " · router up " + Math.round(last.uptime_seconds) + " s";
    status.className = "";
  } catch (e) {
    status.textContent = "router unreachable (" + e.message + "), retrying every second…";
    status.className = "down";
  }
  setTimeout(poll, 1000);
}
poll();
