// fleetpilot dashboard: plain DOM and SVG, no dependencies. Every text that comes from the
// server (alert descriptions, reasons, transcripts) goes in as text, never as HTML.
"use strict";

const state = { fleet: null, fleets: [], window: 60, me: { can_approve: false }, seriesAt: 0 };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

async function getJson(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.message || `${response.status} ${response.statusText}`);
    error.body = body;
    error.status = response.status;
    throw error;
  }
  return body;
}

const fmt = (v, digits = 1) => (v === undefined || v === null || Number.isNaN(v) ? "–" : Number(v).toFixed(digits));
const time = (t) => (t ? new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "");
const dateTime = (t) => (t ? new Date(t).toLocaleString() : "");

// A line chart: one polyline per series, a circle per data point, dashed bounds, eviction ticks.
function chart(container, { label, points, series, bounds = [], markers = [], min }) {
  container.replaceChildren();
  const width = 640, height = 200, left = 44, right = 8, top = 8, bottom = 22;
  const times = points.map((p) => Date.parse(p.t));
  const values = [];
  for (const s of series) for (const p of points) if (typeof p[s.key] === "number") values.push(p[s.key]);
  for (const b of bounds) values.push(b.value);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, preserveAspectRatio: "none" });
  if (values.length === 0 || times.length === 0) {
    container.append(el("p", { class: "empty" }, "No telemetry in this window yet."));
    return;
  }
  const lo = min !== undefined ? Math.min(min, ...values) : Math.min(...values);
  const hi = Math.max(...values, lo + 1);
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 60000);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (height - top - bottom);
  root.append(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }));
  root.append(svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }));
  for (const [v, anchor] of [[hi, top + 8], [lo, height - bottom]]) {
    const text = svg("text", { x: left - 4, y: anchor, "text-anchor": "end" });
    text.textContent = fmt(v, hi - lo < 10 ? 1 : 0);
    root.append(text);
  }
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const text = svg("text", { x: x(t), y: height - 6, "text-anchor": anchor });
    text.textContent = time(t);
    root.append(text);
  }
  for (const b of bounds) {
    root.append(svg("line", { class: "bound", x1: left, x2: width - right, y1: y(b.value), y2: y(b.value) }));
    const text = svg("text", { x: width - right - 2, y: y(b.value) - 3, "text-anchor": "end" });
    text.textContent = b.label;
    root.append(text);
  }
  for (const m of markers) {
    const t = Date.parse(m.t);
    if (t >= t0 && t <= t1) {
      const tick = svg("line", { class: "evict", x1: x(t), x2: x(t), y1: height - bottom, y2: height - bottom - 10 });
      const title = svg("title", {});
      title.textContent = `${m.kind} ${m.size || ""} ${time(m.t)}`;
      tick.append(title);
      root.append(tick);
    }
  }
  for (const s of series) {
    const pts = points.filter((p) => typeof p[s.key] === "number");
    if (pts.length === 0) continue;
    root.append(svg("polyline", { fill: "none", stroke: s.color, "stroke-width": 1.6, points: pts.map((p) => `${x(Date.parse(p.t))},${y(p[s.key])}`).join(" ") }));
    for (const p of pts) {
      root.append(svg("circle", { class: "point", "data-series": s.key, cx: x(Date.parse(p.t)), cy: y(p[s.key]), r: 1.6, fill: s.color }));
    }
  }
  const legend = el("div", { class: "legend" }, series.map((s) => {
    const last = [...points].reverse().find((p) => typeof p[s.key] === "number");
    return el("span", {}, el("i", { style: `background:${s.color}` }), `${s.label}: ${last ? fmt(last[s.key]) : "–"}`);
  }));
  container.append(root, legend);
}

function renderCards(now) {
  if (!now) return;
  const card = (k, v) => el("div", { class: "card" }, el("div", { class: "v" }, v), el("div", { class: "k" }, k));
  $("cards").replaceChildren(
    card("spot target / running", `${now.spot.target_capacity ?? now.spot.capacity ?? "–"} / ${now.spot.running ?? "–"}`),
    card("regular target / running", `${now.regular.target_capacity ?? now.regular.capacity ?? "–"} / ${now.regular.running ?? "–"}`),
    card("cost now", `$${fmt(now.hourly_cost_usd, 2)}/h`),
    card("VMs (all states)", now.vm_count),
    card("spot bounds", `${now.bounds.min_spot}–${now.bounds.max_spot}`),
    card("regular bounds", `${now.bounds.min_regular}–${now.bounds.max_regular}`),
  );
  const mix = now.vms_by_priority_and_size || {};
  const sizes = [...new Set(Object.values(mix).flatMap((m) => Object.keys(m)))].sort();
  const table = $("mix");
  table.replaceChildren(table.querySelector("caption") || el("caption", { class: "sr-only" }, "VMs by priority and size"));
  table.append(el("tr", {}, el("th", { scope: "col" }, "priority"), sizes.map((s) => el("th", { scope: "col" }, s))));
  for (const [priority, counts] of Object.entries(mix)) {
    table.append(el("tr", {}, el("th", { scope: "row" }, priority), sizes.map((s) => el("td", {}, counts[s] || 0))));
  }
}

async function loadSeries() {
  if (!state.fleet) return;
  const { resource_group, name } = state.fleet;
  try {
    const data = await getJson(`/api/fleets/${encodeURIComponent(resource_group)}/${encodeURIComponent(name)}/series?window=${state.window}`);
    const p = data.points;
    const b = data.bounds || {};
    chart($("chart-capacity"), {
      label: `Capacity of ${name}: running VMs and targets by priority`,
      points: p,
      min: 0,
      series: [
        { key: "running_vms", label: "running VMs", color: "var(--running)" },
        { key: "spot_target", label: "spot target", color: "var(--spot)" },
        { key: "regular_target", label: "regular target", color: "var(--regular)" },
      ],
      bounds: [{ value: b.max_spot, label: `max spot ${b.max_spot}` }, { value: b.min_spot, label: `min spot ${b.min_spot}` }].filter((x) => typeof x.value === "number"),
      markers: data.events,
    });
    chart($("chart-demand"), {
      label: `Demand and served requests per minute for ${name}`,
      points: p,
      min: 0,
      series: [
        { key: "demand", label: "demand", color: "var(--demand)" },
        { key: "served", label: "served", color: "var(--running)" },
      ],
    });
    chart($("chart-util"), {
      label: `CPU utilization and SLA of ${name}`,
      points: p.map((q) => ({ ...q, sla_percent: typeof q.sla === "number" ? 100 * q.sla : undefined })),
      min: 0,
      series: [
        { key: "cpu_percent", label: "CPU %", color: "var(--spot)" },
        { key: "sla_percent", label: "SLA met %", color: "var(--running)" },
      ],
    });
    chart($("chart-cost"), {
      label: `Cost rate and cumulative cost of ${name}`,
      points: p,
      min: 0,
      series: [
        { key: "cost_usd_per_hour", label: "USD/h", color: "var(--demand)" },
        { key: "cumulative_cost_usd", label: "cumulative USD", color: "var(--regular)" },
      ],
      bounds: typeof b.budget_usd_per_hour === "number" ? [{ value: b.budget_usd_per_hour, label: `budget $${b.budget_usd_per_hour}/h` }] : [],
    });
    renderCards(data.now);
    $("evictions").replaceChildren(...(data.events.length
      ? data.events.slice(-50).reverse().map((e) => el("li", {}, `${dateTime(e.t)} ${e.kind} ${e.size || ""} — ${e.message || ""}`))
      : [el("li", { class: "empty" }, "None.")]));
    state.seriesAt = Date.now();
  } catch (e) {
    $("cards").replaceChildren(el("p", { class: "note" }, `Cannot read the fleet: ${e.message}`));
  }
}

function capacityDelta(p) {
  const parts = [];
  if (p.target.spot_capacity !== undefined && p.target.spot_capacity !== null) parts.push(`spot ${p.observed_spot_capacity} → ${p.target.spot_capacity}`);
  if (p.target.regular_capacity !== undefined && p.target.regular_capacity !== null) parts.push(`regular ${p.observed_regular_capacity} → ${p.target.regular_capacity}`);
  if (p.target.vm_sizes) parts.push(`sizes ${p.target.vm_sizes.join(", ")}`);
  return parts.join(", ") || "no capacity change";
}

function costText(p) {
  if (!p.cost) return "";
  const d = p.cost.delta_hourly_usd;
  return `${d >= 0 ? "+" : "−"}$${fmt(Math.abs(d), 2)}/h (now $${fmt(p.cost.current_hourly_usd, 2)}/h)`;
}

async function review(id, action) {
  const result = $("review-result");
  result.textContent = `${action === "approve" ? "Approving" : "Rejecting"} ${id}…`;
  try {
    const body = await getJson(`/api/proposals/${encodeURIComponent(id)}/${action}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ note: `from the dashboard` }),
    });
    const status = body.proposal ? body.proposal.status : body.result;
    result.textContent = `${id}: ${status}${body.proposal && body.proposal.outcome ? (body.proposal.outcome.verified ? ", verified" : ", not verified") : ""}`;
  } catch (e) {
    result.textContent = `${id}: ${e.message}`;
  }
  await loadProposals();
  await loadSeries();
}

function runLink(origin) {
  if (!origin.run_id) return null;
  return el("button", { type: "button", class: "link", onclick: () => showRun(origin.run_id), "aria-label": `Transcript of ${origin.run_id}` }, `transcript ${origin.run_id}`);
}

async function showRun(id) {
  const body = $("run-body");
  body.replaceChildren(el("p", {}, "Loading…"));
  $("run-dialog").showModal();
  try {
    const run = await getJson(`/api/runs/${encodeURIComponent(id)}`);
    const lines = (run.transcript || "").split("\n").filter(Boolean).map((l) => {
      try { return JSON.stringify(JSON.parse(l), null, 1); } catch { return l; }
    });
    body.replaceChildren(
      el("p", { class: "meta" }, `${run.id} · ${run.kind} · ${run.status} · ${run.model} · ${run.tool_calls} tool calls · ${dateTime(run.created_at)}`),
      el("h3", {}, "Trigger"), el("pre", {}, JSON.stringify(run.trigger, null, 1)),
      el("h3", {}, "Answer"), el("pre", {}, run.answer || ""),
      el("h3", {}, "Transcript"), el("pre", {}, lines.join("\n")),
    );
  } catch (e) {
    body.replaceChildren(el("p", {}, `Cannot read the run: ${e.message}`));
  }
}

function describeAction(a) {
  switch (a.kind) {
    case "set_capacity": return `set ${a.priority.toLowerCase()} capacity ${a.from} → ${a.to}`;
    case "set_vm_sizes": return `set sizes ${(a.to || []).join(", ")}`;
    case "delete_vms": return `delete ${(a.vm_ids || []).length} ${a.priority.toLowerCase()} VM(s)`;
    default: return a.kind || "action";
  }
}

function renderProposal(p) {
  const o = p.origin || {};
  const alerts = (o.alerts || []).map((a) => `${a.rule || a.alertRule || "alert"} ${a.condition || ""}`.trim());
  const actions = (p.plan && p.plan.actions) || [];
  const outcome = p.outcome;
  return el("li", { class: p.status, "data-proposal": p.id },
    el("div", {}, el("span", { class: "badge" }, p.status), " ", el("strong", {}, capacityDelta(p)), " ", el("span", { class: "meta" }, `${p.fleet.name} · ${dateTime(p.created_at)} · ${p.id}`)),
    el("div", { class: "meta" }, `asked by ${o.kind || "caller"}${o.caller ? ` (${o.caller})` : ""}`, alerts.length ? ` on ${alerts.join(", ")}` : "", " ", runLink(o)),
    p.reason ? el("div", {}, `reason: ${p.reason}`) : null,
    el("div", {}, `verdict: ${p.verdict.decision}`, p.cost ? ` · cost ${costText(p)}` : ""),
    p.verdict.violations.length ? el("ul", { class: "violations" }, p.verdict.violations.map((v) => el("li", {}, `${v.bound}: ${v.message}`))) : null,
    actions.length ? el("div", { class: "meta" }, `plan: ${actions.map(describeAction).join("; ")}`) : null,
    p.review ? el("div", { class: "meta" }, `${p.review.approved ? "approved" : "rejected"} by ${p.review.by} at ${dateTime(p.review.at)}${p.review.note ? `: ${p.review.note}` : ""}`) : null,
    outcome ? el("div", { class: "meta" }, `execution: ${(outcome.performed || []).join("; ") || "nothing to do"} · ${outcome.verified ? "verified" : "not verified"}${outcome.error ? ` · ${outcome.error}` : ""}`) : null,
  );
}

async function loadProposals() {
  try {
    const { proposals } = await getJson(`/api/proposals?limit=50`);
    const pending = proposals.filter((p) => p.status === "needs_approval");
    $("approval-note").textContent = state.me.can_approve
      ? (pending.length ? "" : "Nothing waits for approval.")
      : `The dashboard runs with the ${state.me.role} role: approving needs approver (server.http_role).`;
    $("approvals").replaceChildren(...pending.map((p) => el("div", { class: "approval", "data-proposal": p.id },
      el("div", {}, el("strong", {}, capacityDelta(p)), " ", el("span", { class: "meta" }, `${p.fleet.name} · ${p.id}`)),
      el("div", {}, `cost: ${costText(p) || "–"}`),
      p.reason ? el("div", {}, `reason: ${p.reason}`) : null,
      el("div", { class: "meta" }, p.verdict.violations.map((v) => v.message).join("; ")),
      el("div", {},
        el("button", { type: "button", class: "primary", disabled: !state.me.can_approve, onclick: () => review(p.id, "approve"), "aria-label": `Approve ${p.id}` }, "Approve"), " ",
        el("button", { type: "button", class: "danger", disabled: !state.me.can_approve, onclick: () => review(p.id, "reject"), "aria-label": `Reject ${p.id}` }, "Reject")),
    )));
    $("timeline").replaceChildren(...(proposals.length ? proposals.map(renderProposal) : [el("li", { class: "empty" }, "No proposals yet.")]));
  } catch (e) {
    $("timeline").replaceChildren(el("li", {}, `Cannot read the proposals: ${e.message}`));
  }
}

async function loadEvals() {
  const box = $("evals");
  try {
    const data = await getJson("/api/evals");
    const parts = [];
    if (data.incidents) {
      const s = data.incidents.summary || {};
      const rows = Object.entries(s).filter(([, v]) => typeof v !== "object");
      parts.push(el("h3", {}, "Incident suite"), el("table", { class: "grid" }, el("caption", { class: "sr-only" }, "Incident eval summary"),
        rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, typeof v === "number" ? (Number.isInteger(v) ? v : fmt(v, 3)) : String(v))))));
      if (data.incidents.html) parts.push(el("p", {}, el("a", { href: data.incidents.html }, "Full incident report")));
    }
    if (data.policies && Array.isArray(data.policies.traces)) {
      parts.push(el("h3", {}, "Scaling policies"));
      const cols = ["policy", "cost_usd", "cost_vs_oracle", "sla_met_pct", "unserved_pct", "flaps", "actions"];
      for (const t of data.policies.traces) {
        parts.push(el("table", { class: "grid" }, el("caption", {}, `${t.trace} (${t.minutes} minutes)`),
          el("tr", {}, cols.map((c) => el("th", { scope: "col" }, c))),
          (t.policies || []).map((p) => el("tr", {}, cols.map((c, i) => (i === 0 ? el("th", { scope: "row" }, p[c]) : el("td", {}, typeof p[c] === "number" ? fmt(p[c], 2) : p[c])))))));
      }
    }
    if (data.plots.length) {
      parts.push(el("div", { class: "plots" }, data.plots.map((src) => el("img", { src, alt: `policy plot ${src.split("/").pop()}` }))));
    }
    if (!parts.length) parts.push(el("p", { class: "note" }, `No eval reports in ${data.dir} yet: run \`fleetpilot eval incidents --out ${data.dir}\`.`));
    box.replaceChildren(...parts);
  } catch (e) {
    box.replaceChildren(el("p", {}, `Cannot read the eval reports: ${e.message}`));
  }
}

async function loadFleets() {
  const { fleets } = await getJson("/api/fleets");
  state.fleets = fleets.map((f) => f.fleet);
  const select = $("fleet");
  select.replaceChildren(...state.fleets.map((f, i) => el("option", { value: i }, `${f.name} (${f.resource_group})`)));
  state.fleet = state.fleets[0] || null;
}

function connect() {
  const live = $("live");
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => { live.textContent = "live"; live.classList.add("ok"); });
  events.addEventListener("error", () => { live.textContent = "reconnecting…"; live.classList.remove("ok"); });
  events.addEventListener("fleet", (e) => {
    const now = JSON.parse(e.data);
    if (state.fleet && now.fleet.name === state.fleet.name && now.fleet.resource_group === state.fleet.resource_group) {
      renderCards(now);
      if (Date.now() - state.seriesAt > 5000) loadSeries();
    }
  });
  events.addEventListener("proposals", () => loadProposals());
}

// Signing in: an API key is exchanged for an HttpOnly session cookie; the key is not kept.
function showLogin(message) {
  const input = el("input", { id: "api-key", type: "password", autocomplete: "current-password", required: true });
  const status = el("p", { role: "status", "aria-live": "polite" }, message || "");
  const form = el("form", { class: "panel", "aria-labelledby": "login-title", onsubmit: async (e) => {
    e.preventDefault();
    const r = await fetch("/api/session", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: input.value }) });
    if (r.ok) location.reload();
    else status.textContent = "That key is not valid.";
  } },
    el("h2", { id: "login-title" }, "Sign in"),
    el("label", { for: "api-key" }, "API key"), " ", input, " ", el("button", { type: "submit", class: "primary" }, "Sign in"), status);
  document.querySelector("main").replaceChildren(form);
  input.focus();
}

async function main() {
  try {
    state.me = await getJson("/api/me");
    $("role").textContent = `${state.me.caller} · role: ${state.me.role}`;
    await loadFleets();
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      $("live").textContent = "signed out";
      showLogin(e.status === 403 ? e.message : "");
      return;
    }
    $("live").textContent = `cannot reach fleetpilot: ${e.message}`;
    return;
  }
  $("fleet").addEventListener("change", (e) => { state.fleet = state.fleets[Number(e.target.value)]; loadSeries(); });
  $("window").addEventListener("change", (e) => { state.window = Number(e.target.value); loadSeries(); });
  await Promise.all([loadSeries(), loadProposals(), loadEvals()]);
  connect();
}

main();
