// aispend dashboard (CONTRACTS §12). Plain JavaScript, no framework, nothing
// fetched from the internet. Every number comes from the collector's JSON API
// called with the signed-in token: the API decides what the token may read;
// this page only hides what GET /v1/whoami says the token may not call.
// Data is always put in the page as text (never as HTML).
"use strict";

const TOKEN_KEY = "aispend.token";
const DAY_MS = 86400000;
let me = null; // the GET /v1/whoami answer

// --- small helpers ------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : 0);

function usd(v) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return "–";
  const n = Number(v);
  const abs = Math.abs(n);
  if (abs >= 1000) return "$" + n.toLocaleString("en-US", { maximumFractionDigits: 0 });
  if (abs >= 1 || n === 0) return "$" + n.toFixed(2);
  // Small amounts (a demo call costs $0.0000035): keep 3 significant digits.
  return "$" + Number(n.toPrecision(3)).toString();
}

function pct(v) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return "–";
  return (Number(v) * 100).toFixed(1) + "%";
}

function count(v) {
  return num(v).toLocaleString("en-US");
}

/// A money cell: the exact value in data-value, so a test or a user copying it
/// sees what the API said.
function money(v, attrs) {
  return h("td", { class: "num", "data-value": v ?? "", ...(attrs || {}) }, usd(v));
}

function can(route) {
  return !!me && Array.isArray(me.routes) && me.routes.includes(route);
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function monthOf(ms) {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}`;
}

/// [start, end) of month "YYYY-MM" in UTC ms.
function monthRange(month) {
  const [y, m] = month.split("-").map(Number);
  return [Date.UTC(y, m - 1, 1), Date.UTC(y, m, 1)];
}

/// RFC 3339 at whole seconds (what /v1/usage takes).
function iso(ms) {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

function validMonth(v) {
  return typeof v === "string" && /^\d{4}-(0[1-9]|1[0-2])$/.test(v);
}

// --- the API --------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, { method = "GET", body, raw = false } = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (!resp.ok) {
    let code = "", message = `${resp.status} ${resp.statusText}`;
    try {
      const e = (await resp.json()).error || {};
      code = e.code || "";
      message = e.message || message;
    } catch (_) { /* not JSON */ }
    if (resp.status === 401 && path !== "/v1/whoami") {
      signOut("Your token is no longer valid: sign in again.");
    }
    throw new ApiError(resp.status, code, message);
  }
  if (raw) return resp;
  return resp.status === 204 ? null : resp.json();
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") p.set(k, v);
  }
  return p.toString();
}

function usage(params) {
  return api("/v1/usage?" + qs(params));
}

function errorBox(e) {
  const what = e instanceof ApiError
    ? `${e.status}${e.code ? " " + e.code : ""}: ${e.message}`
    : String(e && e.message ? e.message : e);
  return h("p", { class: "error", role: "alert" }, what);
}

// --- routing: #/page?filters (shareable) ----------------------------------

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, query] = hash.split("?");
  return { page: page || "overview", params: new URLSearchParams(query || "") };
}

function go(page, params) {
  const q = qs(params || {});
  location.hash = `#/${page}${q ? "?" + q : ""}`;
}

const PAGES = {
  overview: { needs: "GET /v1/usage", render: overview },
  team: { needs: "GET /v1/usage", render: team },
  budgets: { needs: "GET /v1/budgets", render: budgets },
  alerts: { needs: "GET /v1/alerts", render: alerts },
  keys: { needs: "GET /v1/keys", render: keys },
  exports: { needs: null, render: exportsPage },
};

let renderSeq = 0;

async function render() {
  const view = document.getElementById("view");
  if (!sessionStorage.getItem(TOKEN_KEY) || !me) {
    showSignIn();
    return;
  }
  const { page, params } = route();
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === page);
  }
  const spec = PAGES[page];
  const seq = ++renderSeq;
  const body = h("div", { "data-page": page });
  if (!spec) {
    body.append(h("p", { class: "error" }, `No page "${page}".`));
  } else if (spec.needs && !can(spec.needs)) {
    body.append(h("p", { class: "notice", "data-denied": page },
      `This token (${(me.roles || []).join(", ")}) may not read this page.`));
  } else {
    body.append(h("p", { class: "notice" }, "Loading…"));
    view.replaceChildren(body);
    try {
      const content = await spec.render(params);
      if (seq !== renderSeq) return; // a newer navigation won
      body.replaceChildren(...[content].flat());
    } catch (e) {
      if (seq !== renderSeq) return;
      body.replaceChildren(errorBox(e));
    }
    body.dataset.ready = "1";
    return;
  }
  body.dataset.ready = "1";
  view.replaceChildren(body);
}

// --- sign-in --------------------------------------------------------------

function showSignIn(message) {
  document.getElementById("nav").hidden = true;
  document.getElementById("who").replaceChildren();
  const tpl = document.getElementById("signin-template");
  const view = document.getElementById("view");
  view.replaceChildren(tpl.content.cloneNode(true));
  const err = document.getElementById("signin-error");
  if (message) err.textContent = message;
  document.getElementById("signin").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = document.getElementById("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    try {
      await loadMe();
      render();
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      err.textContent = e instanceof ApiError && e.status === 401
        ? "Unknown, revoked or expired token."
        : `Sign-in failed: ${e.message}`;
    }
  });
}

async function loadMe() {
  me = await api("/v1/whoami");
  const nav = document.getElementById("nav");
  for (const a of nav.querySelectorAll("a")) {
    a.hidden = !a.dataset.needs.split(/ (?=GET )/).some(can);
  }
  nav.hidden = false;
  const scope = me.scope && Object.keys(me.scope).length
    ? " · scope " + Object.entries(me.scope).map(([k, v]) => `${k}=${v}`).join(", ")
    : "";
  document.getElementById("who").replaceChildren(
    h("span", { id: "whoami" }, `${me.actor} (${(me.roles || []).join(", ")})${scope}`),
    h("button", { class: "secondary", id: "signout", onclick: () => signOut() }, "Sign out"),
  );
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  showSignIn(message);
}

// --- charts -----------------------------------------------------------------

/// Spend by day as an inline SVG bar chart: one bar per day of [from, to).
function dayChart(rows, fromMs, toMs) {
  const byDay = new Map(rows.map((r) => [String(r.day || "").slice(0, 10), num(r.cost_usd)]));
  const days = [];
  for (let t = fromMs; t < toMs; t += DAY_MS) {
    const d = new Date(t).toISOString().slice(0, 10);
    days.push([d, byDay.get(d) || 0]);
  }
  const W = 800, H = 220, L = 60, B = 24, T = 10;
  const max = Math.max(...days.map(([, v]) => v), 0) || 1;
  const bw = (W - L - 10) / Math.max(days.length, 1);
  const g = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "spend by day" });
  for (const f of [0, 0.5, 1]) {
    const y = T + (H - T - B) * (1 - f);
    g.append(svg("line", { x1: L, x2: W - 10, y1: y, y2: y }));
    g.append(svg("text", { x: L - 6, y: y + 3, "text-anchor": "end" }, usd(max * f)));
  }
  days.forEach(([d, v], i) => {
    const bh = (H - T - B) * (v / max);
    const x = L + i * bw;
    const rect = svg("rect", { class: "bar", x: x + 1, y: H - B - bh, width: Math.max(bw - 2, 1),
      height: bh, "data-day": d, "data-value": v });
    rect.append(svg("title", {}, `${d}: ${usd(v)}`));
    g.append(rect);
    if (days.length <= 10 || i % Math.ceil(days.length / 10) === 0) {
      g.append(svg("text", { x: x + bw / 2, y: H - 8, "text-anchor": "middle" }, d.slice(5)));
    }
  });
  return g;
}

function burnBar(fraction, state) {
  const f = Math.max(0, Math.min(1, num(fraction)));
  const fill = h("span", {});
  fill.style.width = `${(f * 100).toFixed(1)}%`; // CSSOM: allowed by the CSP, unlike style=""
  return h("span", { class: `burn ${state || ""}`, title: pct(fraction) }, fill);
}

function stat(label, value, sub, attrs) {
  return h("div", { class: "stat", ...(attrs || {}) },
    h("div", { class: "label" }, label),
    h("div", { class: "value" }, value),
    sub ? h("div", { class: "sub" }, sub) : null);
}

function monthPicker(page, params, extra) {
  const month = validMonth(params.get("month")) ? params.get("month") : monthOf(Date.now());
  const input = h("input", { type: "month", name: "month", value: month });
  input.addEventListener("change", () => {
    const p = Object.fromEntries(params.entries());
    go(page, { ...p, month: input.value });
  });
  return h("div", { class: "toolbar" }, h("label", {}, "Month", input), extra || null);
}

/// The [from, to) a page shows for ?month=: a past month whole, this month to now.
function monthWindow(params) {
  const now = Date.now();
  const month = validMonth(params.get("month")) ? params.get("month") : monthOf(now);
  const [start, end] = monthRange(month);
  return { month, from: start, to: Math.min(end, now), end, current: now < end && now >= start };
}

// --- overview ---------------------------------------------------------------

async function overview(params) {
  const w = monthWindow(params);
  const span = w.to - w.from;
  const prevStart = monthRange(monthOf(w.from - 1))[0];
  // The previous month at the same point (growth compares like with like).
  const prevTo = Math.min(prevStart + span, w.from);
  const chartFrom = Math.max(w.from - 30 * DAY_MS + DAY_MS, w.to - 30 * DAY_MS);
  const chartStart = Date.UTC(new Date(chartFrom).getUTCFullYear(), new Date(chartFrom).getUTCMonth(),
    new Date(chartFrom).getUTCDate());
  const calls = [
    usage({ from: iso(w.from), to: iso(w.to), group_by: "team" }),
    usage({ from: iso(prevStart), to: iso(prevTo), group_by: "team" }),
    usage({ from: iso(chartStart), to: iso(w.to), group_by: "day" }),
    can("GET /v1/budgets") ? api("/v1/budgets") : null,
    can("GET /v1/forecast") && w.current ? api("/v1/forecast?group_by=team") : null,
  ];
  const [now, prev, days, budgetList, forecast] = await Promise.all(calls);
  const totals = now.totals || {};
  const prevByTeam = new Map((prev.rows || []).map((r) => [r.team, num(r.cost_usd)]));
  const forecastTotal = forecast ? (forecast.rows || []).reduce((s, r) => s + num(r.forecast_usd), 0) : null;
  const growth = num(prev.totals && prev.totals.cost_usd) > 0
    ? num(totals.cost_usd) / num(prev.totals.cost_usd) - 1 : null;

  const out = [];
  out.push(h("h1", {}, w.current ? "Month to date" : `Month ${w.month}`));
  out.push(monthPicker("overview", params));
  out.push(h("div", { class: "grid", id: "overview-stats", "data-from": iso(w.from), "data-to": iso(w.to) },
    stat(w.current ? "Spend, month to date" : "Spend", usd(totals.cost_usd),
      `${iso(w.from)} → ${iso(w.to)}`, { id: "stat-spend", "data-value": num(totals.cost_usd) }),
    stat("Requests", count(totals.requests), `${count(totals.errors)} errors, ${count(totals.denied)} denied`,
      { id: "stat-requests", "data-value": num(totals.requests) }),
    stat("Forecast, end of month", forecastTotal === null ? "–" : usd(forecastTotal), "spend so far + 14-day mean × days left",
      { id: "stat-forecast", "data-value": forecastTotal ?? "" }),
    stat("vs previous month (same point)", growth === null ? "–" : (growth >= 0 ? "+" : "") + pct(growth),
      `previous: ${usd(prev.totals && prev.totals.cost_usd)}`, { id: "stat-growth" }),
    stat("Tag coverage", pct(totals.coverage), "share of cost carrying every required tag",
      { id: "stat-coverage", "data-value": totals.coverage ?? "" }),
  ));

  out.push(h("section", { class: "card" }, h("h2", {}, "Spend by day"),
    dayChart(days.rows || [], chartStart, w.to)));

  const teams = [...(now.rows || [])].sort((a, b) => num(b.cost_usd) - num(a.cost_usd));
  out.push(h("section", { class: "card" }, h("h2", {}, "Top teams"),
    h("table", { id: "top-teams" },
      h("thead", {}, h("tr", {}, h("th", {}, "team"), h("th", { class: "num" }, "requests"),
        h("th", { class: "num" }, "cost"), h("th", { class: "num" }, "previous month, same point"),
        h("th", { class: "num" }, "growth"), h("th", { class: "num" }, "share"))),
      h("tbody", {}, teams.map((r) => {
        const before = prevByTeam.get(r.team) || 0;
        const g = before > 0 ? num(r.cost_usd) / before - 1 : null;
        const share = num(totals.cost_usd) > 0 ? num(r.cost_usd) / num(totals.cost_usd) : null;
        return h("tr", { "data-team": r.team ?? "" },
          h("td", {}, h("a", { href: `#/team?${qs({ team: r.team ?? "", month: w.month })}` }, r.team ?? "(none)")),
          h("td", { class: "num" }, count(r.requests)),
          money(r.cost_usd, { class: "num cost" }),
          money(before),
          h("td", { class: `num ${g === null ? "" : g > 0 ? "up" : "down"}` },
            g === null ? "new" : (g >= 0 ? "+" : "") + pct(g)),
          h("td", { class: "num" }, pct(share)));
      })))));

  if (budgetList) out.push(budgetSection(budgetList.budgets || [], "Forecast against budgets", true));
  return out;
}

// --- team drill-down ---------------------------------------------------------

async function team(params) {
  const w = monthWindow(params);
  const scopedTeam = me.scope && me.scope.team;
  const teamName = params.get("team") || scopedTeam || "";
  const label = (params.get("label") || "").trim();
  const teamList = await usage({ from: iso(w.from), to: iso(w.to), group_by: "team" });
  const names = (teamList.rows || []).map((r) => r.team).filter((t) => t !== null && t !== undefined);
  const select = h("select", { name: "team", id: "team-select" },
    h("option", { value: "" }, "— pick a team —"),
    [...new Set([...names, ...(teamName ? [teamName] : [])])].sort().map((t) =>
      h("option", { value: t, selected: t === teamName }, t)));
  select.addEventListener("change", () => go("team", { ...Object.fromEntries(params.entries()), team: select.value }));
  const labelInput = h("input", { name: "label", value: label, placeholder: "e.g. workflow", size: 12 });
  labelInput.addEventListener("change", () =>
    go("team", { ...Object.fromEntries(params.entries()), label: labelInput.value.trim() }));
  const out = [h("h1", {}, teamName ? `Team ${teamName}` : "Teams"),
    monthPicker("team", params, [h("label", {}, "Team", select), h("label", {}, "Label", labelInput)])];
  if (!teamName) {
    out.push(h("p", { class: "notice" }, "Pick a team to see its spend by model, project, label and key."));
    return out;
  }
  const base = { from: iso(w.from), to: iso(w.to), "filter.team": teamName };
  const dims = [["model", "By model"], ["project", "By project"], ["key_id", "By key"]];
  if (label) dims.push([`label.${label}`, `By label ${label}`]);
  const [total, days, ...reports] = await Promise.all([
    usage(base),
    usage({ ...base, group_by: "day" }),
    ...dims.map(([d]) => usage({ ...base, group_by: d })),
  ]);
  const t = total.totals || {};
  out.push(h("div", { class: "grid", id: "team-stats" },
    stat("Spend", usd(t.cost_usd), `${iso(w.from)} → ${iso(w.to)}`, { id: "team-spend", "data-value": num(t.cost_usd) }),
    stat("Requests", count(t.requests), `${count(t.input_tokens)} in / ${count(t.output_tokens)} out tokens`),
    stat("Tag coverage", pct(t.coverage), null)));
  out.push(h("section", { class: "card" }, h("h2", {}, "Spend by day"), dayChart(days.rows || [], w.from, w.to)));
  dims.forEach(([d, title], i) => out.push(breakdown(title, d, reports[i].rows || [], t.cost_usd)));
  return out;
}

function breakdown(title, dim, rows, total) {
  const sorted = [...rows].sort((a, b) => num(b.cost_usd) - num(a.cost_usd));
  return h("section", { class: "card" }, h("h2", {}, title),
    h("table", { "data-dim": dim },
      h("thead", {}, h("tr", {}, h("th", {}, dim), h("th", { class: "num" }, "requests"),
        h("th", { class: "num" }, "input tokens"), h("th", { class: "num" }, "output tokens"),
        h("th", { class: "num" }, "cost"), h("th", { class: "num" }, "share"))),
      h("tbody", {}, sorted.map((r) => h("tr", {},
        h("td", {}, r[dim] ?? "(none)"),
        h("td", { class: "num" }, count(r.requests)),
        h("td", { class: "num" }, count(r.input_tokens)),
        h("td", { class: "num" }, count(r.output_tokens)),
        money(r.cost_usd),
        h("td", { class: "num" }, num(total) > 0 ? pct(num(r.cost_usd) / num(total)) : "–"))))));
}

// --- budgets ------------------------------------------------------------------

const DEFAULT_TIERS = { info: 0.5, warning: 0.7, critical: 0.9, hard: 1.0 };

function scopeText(scope) {
  return scope && typeof scope === "object"
    ? Object.entries(scope).map(([k, v]) => `${k}=${v}`).join(", ") || "(all)"
    : String(scope ?? "");
}

function budgetSection(list, title, compact) {
  return h("section", { class: "card" }, h("h2", {}, title),
    list.length === 0 ? h("p", { class: "notice" }, "No budgets.") :
    h("table", { id: compact ? "overview-budgets" : "budgets" },
      h("thead", {}, h("tr", {}, h("th", {}, "budget"), h("th", {}, "scope"), h("th", {}, "period"),
        h("th", { class: "num" }, "amount"), h("th", { class: "num" }, "spend"), h("th", {}, "burn"),
        h("th", {}, "state"), h("th", { class: "num" }, "forecast"),
        compact ? null : h("th", {}, "alert tiers"), compact ? null : h("th", { class: "num" }, "override"))),
      h("tbody", {}, list.map((b) => {
        const amount = num(b.amount_usd) + num(b.override_usd);
        const burn = amount > 0 ? num(b.spend_usd) / amount : null;
        const tiers = b.alerts && typeof b.alerts === "object" ? b.alerts : DEFAULT_TIERS;
        const over = b.forecast_usd !== undefined && b.forecast_usd !== null && num(b.forecast_usd) > amount;
        return h("tr", { "data-budget": b.id },
          h("td", {}, b.id), h("td", {}, scopeText(b.scope)), h("td", {}, b.period ?? ""),
          money(b.amount_usd), money(b.spend_usd),
          h("td", {}, burnBar(burn, b.state), " ", pct(burn)),
          h("td", {}, h("span", { class: `state ${b.state || ""}` }, b.state ?? "?")),
          money(b.forecast_usd, { class: `num ${over ? "up" : ""}`, title: over ? "forecast above the amount" : null }),
          compact ? null : h("td", {}, Object.entries(tiers)
            .map(([k, v]) => `${k} ${typeof v === "number" ? pct(v) : JSON.stringify(v)}`).join(" · ")),
          compact ? null : money(b.override_usd ?? null));
      }))));
}

async function budgets() {
  const [list, overrides] = await Promise.all([
    api("/v1/budgets"),
    can("GET /v1/overrides") ? api("/v1/overrides") : null,
  ]);
  const out = [h("h1", {}, "Budgets"), budgetSection(list.budgets || [], "Budgets: burn, state, forecast", false)];
  if (overrides) {
    const rows = overrides.overrides || [];
    const live = rows.filter((o) => o.state === "pending" || o.state === "active");
    out.push(h("section", { class: "card" }, h("h2", {}, "Hard-cap overrides (pending and active)"),
      live.length === 0 ? h("p", { class: "notice" }, "None.") :
      h("table", { id: "overrides" },
        h("thead", {}, h("tr", {}, ["id", "budget", "amount", "state", "expires", "reason", "requested by", "approvals", ""]
          .map((c) => h("th", {}, c)))),
        h("tbody", {}, live.map((o) => h("tr", { "data-override": o.id },
          h("td", {}, o.id), h("td", {}, o.budget_id), money(o.amount_usd),
          h("td", {}, h("span", { class: `state ${o.state}` }, o.state)),
          h("td", {}, o.expires_at ?? ""), h("td", {}, o.reason ?? ""),
          h("td", {}, o.requested_by ?? o.requester ?? ""),
          h("td", {}, Array.isArray(o.approvals) ? o.approvals.map((a) => a.actor ?? a.by ?? JSON.stringify(a)).join(", ") : ""),
          h("td", {}, o.state === "pending" && can("POST /v1/overrides/{id}/approve")
            ? h("button", { class: "secondary", onclick: (ev) => act(ev, () =>
              api(`/v1/overrides/${encodeURIComponent(o.id)}/approve`, { method: "POST", body: {} })) }, "Approve")
            : null))))))); 
  }
  return out;
}

/// Runs a write from a button, then re-renders (or shows the error beside it).
async function act(ev, fn) {
  const btn = ev.currentTarget;
  btn.disabled = true;
  try {
    await fn();
    render();
  } catch (e) {
    btn.disabled = false;
    btn.after(errorBox(e));
  }
}

// --- alerts --------------------------------------------------------------------

async function alerts(params) {
  const state = ["open", "acked", "all"].includes(params.get("state")) ? params.get("state") : "open";
  const list = await api("/v1/alerts" + (state === "all" ? "" : `?state=${state}`));
  const rows = list.alerts || [];
  const select = h("select", { name: "state" }, ["open", "acked", "all"].map((s) =>
    h("option", { value: s, selected: s === state }, s)));
  select.addEventListener("change", () => go("alerts", { state: select.value }));
  const mayAck = can("POST /v1/alerts/{id}/ack");
  return [h("h1", {}, "Alerts"), h("div", { class: "toolbar" }, h("label", {}, "State", select)),
    h("section", { class: "card" }, rows.length === 0 ? h("p", { class: "notice" }, "No alerts.") :
      h("table", { id: "alerts" },
        h("thead", {}, h("tr", {}, ["at", "level", "kind", "budget", "scope", "threshold", "spend", "amount",
          "forecast", "period", "state", ""].map((c) => h("th", {}, c)))),
        h("tbody", {}, rows.map((a) => h("tr", { "data-alert": a.id },
          h("td", {}, a.at ?? ""), h("td", {}, h("span", { class: `state ${a.level}` }, a.level ?? "")),
          h("td", {}, a.kind ?? ""), h("td", {}, a.budget_id ?? ""), h("td", {}, scopeText(a.scope)),
          h("td", { class: "num" }, typeof a.threshold === "number" ? pct(a.threshold) : (a.threshold ?? "")),
          money(a.spend_usd), money(a.amount_usd), money(a.forecast_usd),
          h("td", {}, String(a.period_start ?? "").slice(0, 10)),
          h("td", {}, h("span", { class: `state ${a.state}` }, a.state ?? "")),
          h("td", {}, mayAck && a.state === "open"
            ? h("button", { class: "secondary", onclick: (ev) => act(ev, () =>
              api(`/v1/alerts/${encodeURIComponent(a.id)}/ack`, { method: "POST" })) }, "Acknowledge")
            : null))))))];
}

// --- keys ------------------------------------------------------------------------

function secretBox(title, secret, keyId) {
  const code = h("code", { id: "new-secret", "data-key-id": keyId }, secret);
  return h("div", { class: "secret", role: "status" },
    h("strong", {}, title), h("p", {}, "Copy it now: it is shown this once and never again (only its sha256 is stored)."),
    code, " ",
    h("button", { class: "secondary", onclick: () => navigator.clipboard && navigator.clipboard.writeText(secret) }, "Copy"));
}

async function keys() {
  const list = await api("/v1/keys");
  const rows = list.keys || [];
  const out = [h("h1", {}, "Virtual keys")];
  const flash = h("div", { id: "key-flash" });
  out.push(flash);
  const mayCreate = can("POST /v1/keys");
  if (mayCreate) {
    const required = Array.isArray(me.required_tags) ? me.required_tags : [];
    const tagInputs = [...required, "project"].filter((t, i, a) => a.indexOf(t) === i).map((t) =>
      h("label", {}, t + (required.includes(t) ? " *" : ""),
        h("input", { name: `tag.${t}`, "data-tag": t, required: required.includes(t) || null, size: 12 })));
    const form = h("form", { class: "inline", id: "create-key" },
      h("label", {}, "key_id (optional)", h("input", { name: "key_id", size: 14 })),
      tagInputs,
      h("label", {}, "requests/min", h("input", { name: "rpm", type: "number", min: 1, size: 6 })),
      h("label", {}, "tokens/min", h("input", { name: "tpm", type: "number", min: 1, size: 8 })),
      h("label", {}, "expires", h("input", { name: "expires_at", type: "datetime-local" })),
      h("button", { type: "submit" }, "Create key"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      const tags = {};
      for (const input of form.querySelectorAll("input[data-tag]")) {
        if (input.value.trim()) tags[input.dataset.tag] = input.value.trim();
      }
      const body = { tags };
      if (f.get("key_id")) body.key_id = String(f.get("key_id")).trim();
      const limits = {};
      if (f.get("rpm")) limits.requests_per_minute = Number(f.get("rpm"));
      if (f.get("tpm")) limits.tokens_per_minute = Number(f.get("tpm"));
      if (Object.keys(limits).length) body.limits = limits;
      if (f.get("expires_at")) body.expires_at = new Date(String(f.get("expires_at"))).toISOString();
      try {
        const created = await api("/v1/keys", { method: "POST", body });
        await render();
        document.getElementById("key-flash").replaceChildren(
          secretBox(`Key ${created.key_id} created`, created.key, created.key_id));
      } catch (e) {
        flash.replaceChildren(errorBox(e));
      }
    });
    out.push(h("section", { class: "card" }, h("h2", {}, "Create a key"), form));
  }
  const mayWrite = can("PATCH /v1/keys/{key_id}");
  out.push(h("section", { class: "card" }, h("h2", {}, "Keys"),
    rows.length === 0 ? h("p", { class: "notice" }, "No keys issued over the API yet.") :
    h("table", { id: "keys" },
      h("thead", {}, h("tr", {}, ["key_id", "hint", "tags", "limits", "status", "created", "expires", ""]
        .map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((k) => h("tr", { "data-key": k.key_id },
        h("td", {}, k.key_id), h("td", {}, h("code", {}, k.hint ?? "")),
        h("td", {}, scopeText(k.tags)),
        h("td", {}, k.limits && Object.keys(k.limits).length
          ? Object.entries(k.limits).filter(([, v]) => v !== null).map(([n, v]) => `${n.replace(/_/g, " ")} ${v}`).join(", ")
          : "—"),
        h("td", {}, h("span", { class: `state ${k.status}` }, k.status ?? "")),
        h("td", {}, k.created_at ?? ""), h("td", {}, k.expires_at ?? ""),
        h("td", {}, mayWrite && k.status === "active" ? [
          h("button", { class: "secondary", "data-action": "rotate", onclick: (ev) => rotate(ev, k) }, "Rotate"), " ",
          h("button", { class: "danger", "data-action": "revoke", onclick: (ev) => revoke(ev, k) }, "Revoke"),
        ] : null)))))));
  return out;
}

async function rotate(ev, k) {
  const grace = prompt(`Rotate ${k.key_id}: seconds the old secret keeps working`, "86400");
  if (grace === null) return;
  const seconds = Number(grace);
  if (!Number.isInteger(seconds) || seconds < 0) {
    ev.currentTarget.after(errorBox(new Error("grace: a whole number of seconds, 0 or more")));
    return;
  }
  try {
    const rotated = await api(`/v1/keys/${encodeURIComponent(k.key_id)}/rotate`,
      { method: "POST", body: { grace_seconds: seconds } });
    await render();
    document.getElementById("key-flash").replaceChildren(
      secretBox(`Key ${k.key_id} rotated: its new secret`, rotated.key, k.key_id));
  } catch (e) {
    ev.target.after(errorBox(e));
  }
}

async function revoke(ev, k) {
  if (!confirm(`Revoke ${k.key_id}? Every secret of it stops within one registry poll.`)) return;
  await act(ev, () => api(`/v1/keys/${encodeURIComponent(k.key_id)}`, { method: "DELETE" }));
}

// --- exports -----------------------------------------------------------------------

async function download(ev, path, filename) {
  const btn = ev.currentTarget;
  btn.disabled = true;
  try {
    const resp = await api(path, { raw: true });
    const blob = await resp.blob();
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    btn.after(errorBox(e));
  } finally {
    btn.disabled = false;
  }
}

async function exportsPage(params) {
  const month = validMonth(params.get("month")) ? params.get("month") : monthOf(Date.now());
  const items = [
    ["GET /v1/export/chargeback", "Chargeback (CSV)", `/v1/export/chargeback?month=${month}`, `aispend-chargeback-${month}.csv`,
      "one line per cost center × GL account × team × project; cost_usd sums to /v1/usage's month total"],
    ["GET /v1/export/focus", "FOCUS 1.2 (CSV)", `/v1/export/focus?month=${month}`, `aispend-focus-${month}.csv`,
      "FinOps FOCUS columns, one row per day × team tags × model × token kind"],
    ["GET /v1/reports/showback", "Showback (JSON)", `/v1/reports/showback?month=${month}`, `aispend-showback-${month}.json`,
      "teams, then models within each team, with the change against the previous month"],
  ].filter(([route]) => can(route));
  const out = [h("h1", {}, "Exports"), monthPicker("exports", params)];
  if (items.length === 0) {
    out.push(h("p", { class: "notice", "data-denied": "exports" }, "This token may not download exports."));
    return out;
  }
  out.push(h("section", { class: "card" }, h("table", { id: "exports" }, h("tbody", {}, items.map(([, title, path, file, what]) =>
    h("tr", {}, h("td", {}, h("strong", {}, title)), h("td", { class: "notice" }, what),
      h("td", {}, h("button", { "data-export": file, onclick: (ev) => download(ev, path, file) }, "Download"))))))));
  if (can("GET /v1/reports/showback")) {
    try {
      const sb = await api(`/v1/reports/showback?month=${month}`);
      out.push(h("section", { class: "card" }, h("h2", {}, `Showback ${sb.period ?? month} vs ${sb.previous_period ?? "previous"}`),
        h("table", { id: "showback" },
          h("thead", {}, h("tr", {}, ["team / model", "requests", "cost", "previous", "change"].map((c) => h("th", {}, c)))),
          h("tbody", {}, (sb.teams || []).flatMap((t) => [
            h("tr", {}, h("td", {}, h("strong", {}, t.team ?? "(none)")), h("td", { class: "num" }, count(t.requests)),
              money(t.cost_usd), money(t.previous_cost_usd), h("td", { class: "num" }, pct(t.change_ratio))),
            ...(t.models || []).map((m) => h("tr", {}, h("td", {}, "  " + (m.model ?? "")),
              h("td", { class: "num" }, count(m.requests)), money(m.cost_usd), money(m.previous_cost_usd),
              h("td", { class: "num" }, pct(m.change_ratio)))),
          ])))));
    } catch (e) {
      out.push(errorBox(e));
    }
  }
  return out;
}

// --- start --------------------------------------------------------------------------

window.addEventListener("hashchange", render);
window.addEventListener("DOMContentLoaded", async () => {
  if (sessionStorage.getItem(TOKEN_KEY)) {
    try {
      await loadMe();
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn(e instanceof ApiError && e.status === 401 ? "Your token is no longer valid: sign in again." : e.message);
      return;
    }
  }
  render();
});
