// lse dashboard: plain JavaScript, no library, no build step.
//
// Safety rule of this file: data from the population (ids, worker names, record fields) only
// ever reaches the page through textContent / createTextNode / setAttribute of inert attributes
// (data-*, class, SVG geometry).  Never innerHTML, insertAdjacentHTML, document.write or eval.
// The server's Content-Security-Policy also forbids inline scripts, as a second wall.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#9b2c2c", "#6b46c1", "#b7791f", "#2c7a7b", "#97266d"];
const state = { cursor: 0, pollMs: 1000, pops: [], selected: null, updates: 0, firstRenderMs: null,
                lastUpdateMs: null, lastFetchMs: null, failures: 0 };
window.lseStats = state;  // read by the browser test and the benchmark

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    // CSP forbids style attributes; CSSOM properties are allowed (our own colours only).
    if (k === "style") for (const d of String(v).split(";")) { const i = d.indexOf(":"); if (i > 0) e.style.setProperty(d.slice(0, i).trim(), d.slice(i + 1).trim()); }
    else e.setAttribute(k, String(v));
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}
function sv(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text != null) e.textContent = String(text);
  return e;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
const pct = (v) => (v == null ? "-" : (100 * v).toFixed(2) + "%");
const num = (v) => (v == null ? "-" : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-2) ? v.toExponential(2) : String(Math.round(v * 1000) / 1000));
const short = (id) => (id ? id.slice(0, 8) + "…" + id.slice(-8) : "-");
function age(s) { return s == null ? "-" : s < 120 ? s.toFixed(0) + " s" : s < 7200 ? (s / 60).toFixed(1) + " min" : (s / 3600).toFixed(1) + " h"; }
function hours(h) { return h * 60 < 2 ? (h * 3600).toFixed(0) + " s" : h < 1 ? (h * 60).toFixed(1) + " min" : h.toFixed(2) + " h"; }

// ---- data -------------------------------------------------------------------------------------

function popState(k, label) {
  return { k, label, rows: new Map(), panels: {}, workers: [], counts: {}, color: COLORS[k % COLORS.length], dom: null,
           pts: null };
}

function apply(data) {
  const changed = new Set();
  data.pops.forEach((p, k) => {
    if (!state.pops[k]) state.pops[k] = popState(k, p.label);
    const ps = state.pops[k];
    const f = p.fields;
    for (const arr of p.rows) {
      const row = {};
      for (let i = 0; i < f.length; i++) row[f[i]] = arr[i];
      ps.rows.set(row.id, row);
    }
    for (const id of p.removed) ps.rows.delete(id);
    Object.assign(ps.panels, p.panels);
    ps.workers = p.workers;
    const counts = { malformed: p.malformed, foreign: p.foreign, quarantined: p.quarantined };
    if (p.rows.length || p.removed.length || Object.keys(p.panels).length || JSON.stringify(counts) !== JSON.stringify(ps.counts)) changed.add(k);
    ps.counts = counts;
    changed.add(-1 - k);  // workers: heartbeat ages change every poll
  });
  state.cursor = data.cursor;
  state.pollMs = data.poll_ms || 1000;
  state.now = data.now;
  return changed;
}

async function poll() {
  const t0 = performance.now();
  try {
    const resp = await fetch("/api/state?since=" + state.cursor, { cache: "no-store" });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const data = await resp.json();
    state.lastFetchMs = performance.now() - t0;
    const t1 = performance.now();
    const changed = apply(data);
    render(changed);
    const ms = performance.now() - t1;
    if (state.firstRenderMs == null) state.firstRenderMs = performance.now();  // since navigation start
    else if ([...changed].some((k) => k >= 0)) state.lastUpdateMs = ms;
    state.updates += 1;
    state.failures = 0;
    const live = document.getElementById("live");
    live.className = "live";
    live.textContent = "live · updated " + new Date().toLocaleTimeString() + " · cursor " + state.cursor;
  } catch (err) {
    state.failures += 1;
    const live = document.getElementById("live");
    live.className = "live stale";
    live.textContent = "disconnected (" + String(err.message || err) + "); retrying";
  }
  setTimeout(poll, Math.min(30000, state.pollMs * (1 + state.failures)));
}

// ---- rendering ---------------------------------------------------------------------------------

function render(changed) {
  const pops = document.getElementById("pops");
  state.pops.forEach((ps) => { if (!ps.dom) { ps.dom = buildPop(ps); pops.append(ps.dom.root); } });
  state.pops.forEach((ps) => {  // after every column exists: the scatter's width is final
    if (changed.has(ps.k)) {
      renderOverview(ps); renderScatter(ps); renderAlive(ps); renderMutations(ps); renderExtras(ps);
    }
    if (changed.has(-1 - ps.k)) renderWorkers(ps);
  });
  if (state.pops.some((ps) => changed.has(ps.k))) { renderLegend(); renderCurves(); }
}

function section(title, cls) {
  const body = el("div", { class: cls || "" });
  const s = el("div", {}, el("h3", {}, title), body);
  return { s, body };
}

function buildPop(ps) {
  const root = el("section", { class: "pop card", "data-pop": ps.k, style: "--c:" + ps.color });
  root.append(el("h2", {}, ps.label));
  const dom = { root };
  for (const [key, title] of [["overview", "Overview"], ["workers", "Workers"],
    ["scatter", "Every individual (Figure 1): validation accuracy against time; alive ringed; click one"],
    ["alive", "Best alive individuals"], ["mutations", "Mutations: children that beat their parent"],
    ["pareto", "Pareto front of the alive individuals (all objectives maximised)"], ["species", "Species: alive individuals per species"],
    ["generations", "Generations: best and mean fitness"], ["ages", "Ages of the alive individuals"]]) {
    const { s, body } = section(title, key);
    dom[key] = body; dom[key + "Section"] = s;
    if (["pareto", "species", "generations", "ages"].includes(key)) s.hidden = true;
    root.append(s);
  }
  const canvas = el("canvas", { class: "scatter", "data-pop": ps.k, "data-points": 0, "data-alive": 0 });
  canvas.addEventListener("click", (ev) => {
    const r = canvas.getBoundingClientRect();
    const id = pick(ps, ev.clientX - r.left, ev.clientY - r.top);
    if (id) select(ps.k, id);
  });
  dom.scatter.append(canvas);
  dom.canvas = canvas;
  new ResizeObserver(() => { if (ps.drawnWidth !== canvas.clientWidth) renderScatter(ps); }).observe(canvas);
  return dom;
}

function kvTable(pairs) {
  const t = el("table", { class: "kv" });
  for (const [k, v] of pairs) t.append(el("tr", {}, el("td", {}, k), el("td", {}, v)));
  return t;
}

function renderOverview(ps) {
  const o = ps.panels.overview;
  const d = ps.dom.overview;
  clear(d);
  if (!o) return;
  const pairs = [
    ["population", o.pop],
    ["individuals", `${o.individuals}: ${o.alive} alive, ${o.dead} dead, ${o.collected} collected; ${o.failed} failed training`],
    ["best validation", o.best ? `${pct(o.best.val)} (${o.best.id})` : "-"],
    ["FLOPs spent", num(o.flops)],
    ["since start", hours(o.hours)],
    ["individuals / hour", `${o.per_hour == null ? "-" : o.per_hour.toFixed(1)} overall, ${o.last_hour} in the last hour`],
  ];
  for (const s of o.stops) {
    const lim = s.limit == null ? "none" : s.unit === "h" ? hours(s.limit) : num(s.limit);
    const val = s.unit === "h" ? hours(s.value) : num(s.value);
    const frac = s.limit ? ` (${Math.min(100, (100 * s.value) / s.limit).toFixed(0)}%)` : "";
    pairs.push(["stop: " + s.name, `${val} of ${lim}${frac}`]);
  }
  pairs.push(["STOP file", o.stop_file ? "present: workers are stopping" : "absent"]);
  if (o.algorithm) pairs.push(["algorithm", JSON.stringify(o.algorithm)]);
  d.append(kvTable(pairs));
  const c = ps.counts;
  const bad = el("p", { class: c.quarantined || c.malformed || c.foreign ? "warn" : "counts" },
    `quarantined entries: ${c.quarantined}; malformed (left out, not shown): ${c.malformed}; foreign names: ${c.foreign}`);
  bad.setAttribute("data-quarantined", c.quarantined);
  bad.setAttribute("data-malformed", c.malformed);
  d.append(bad);
  if (o.config_error) d.append(el("p", { class: "warn" }, o.config_error));
  const det = el("details", {}, el("summary", {}, "settings (experiment.json)"),
    kvTable(Object.entries(o.settings).map(([k, v]) => [k, v == null ? "null" : String(v)])));
  d.append(det);
}

function renderWorkers(ps) {
  const d = ps.dom.workers;
  clear(d);
  const t = el("table", {}, el("tr", {}, ...["worker", "host", "pid", "heartbeat age", "counter", "state", "births"].map((h) => el("th", {}, h))));
  for (const w of ps.workers) {
    t.append(el("tr", { class: "worker" }, el("td", {}, w.id), el("td", {}, w.host || "-"), el("td", {}, w.pid ?? "-"),
      el("td", {}, age(w.heartbeat_age)), el("td", {}, w.counter ?? "-"), el("td", { class: "state-" + w.state }, w.state),
      el("td", { class: "num" }, w.births)));
  }
  if (!ps.workers.length) t.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no worker registered")));
  d.append(t);
}

// Figure 1: one dot per individual with a fitness; canvas, because 20,000 SVG nodes are slow.
function renderScatter(ps) {
  const canvas = ps.dom.canvas;
  const dpr = window.devicePixelRatio || 1;
  const W = canvas.clientWidth || 460, H = canvas.clientHeight || 300;
  ps.drawnWidth = canvas.clientWidth;
  canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  const start = ps.panels.curve ? ps.panels.curve.start : 0;
  const rows = [...ps.rows.values()].filter((r) => r.val != null && !r.failed);
  const m = { l: 44, r: 10, t: 10, b: 28 };
  let xmax = 1e-9, ymin = 1, ymax = 0;
  for (const r of rows) { xmax = Math.max(xmax, (r.born_at - start) / 3600); ymin = Math.min(ymin, r.val); ymax = Math.max(ymax, r.val); }
  if (ymin > ymax) { ymin = 0; ymax = 1; }
  const pad = Math.max(0.01, (ymax - ymin) * 0.05);
  ymin = Math.max(0, ymin - pad); ymax = Math.min(1, ymax + pad);
  const X = (h) => m.l + (h / xmax) * (W - m.l - m.r);
  const Y = (v) => H - m.b - ((v - ymin) / (ymax - ymin || 1)) * (H - m.t - m.b);
  ctx.strokeStyle = "#888"; ctx.fillStyle = "#555"; ctx.font = "10px sans-serif";
  ctx.beginPath(); ctx.moveTo(m.l, m.t); ctx.lineTo(m.l, H - m.b); ctx.lineTo(W - m.r, H - m.b); ctx.stroke();
  for (let i = 0; i <= 4; i++) {
    const v = ymin + ((ymax - ymin) * i) / 4, h = (xmax * i) / 4;
    ctx.fillText(pct(v).replace(/\.\d\d%/, "%"), 4, Y(v) + 3);
    ctx.fillText(hours(h), X(h) - (i === 4 ? 34 : 14), H - m.b + 14);
  }
  ctx.fillText("validation accuracy vs hours since start", m.l + 6, m.t + 8);
  const pts = { ids: [], x: new Float32Array(rows.length), y: new Float32Array(rows.length) };
  let alive = 0;
  ctx.fillStyle = "rgba(120,120,120,0.45)";
  rows.forEach((r, i) => {
    const x = X((r.born_at - start) / 3600), y = Y(r.val);
    pts.ids.push(r.id); pts.x[i] = x; pts.y[i] = y;
    if (r.state !== "alive") ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
  });
  ctx.fillStyle = ps.color; ctx.strokeStyle = "#000"; ctx.lineWidth = 0.8;
  rows.forEach((r, i) => {
    if (r.state !== "alive") return;
    alive += 1;
    ctx.beginPath(); ctx.arc(pts.x[i], pts.y[i], 3.5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
  });
  const sel = state.selected && state.selected.k === ps.k ? state.selected.id : null;
  const si = sel ? pts.ids.indexOf(sel) : -1;
  if (si >= 0) { ctx.strokeStyle = "#e00"; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(pts.x[si], pts.y[si], 7, 0, 2 * Math.PI); ctx.stroke(); }
  ps.pts = pts;
  canvas.setAttribute("data-points", rows.length);
  canvas.setAttribute("data-alive", alive);
}

function pick(ps, x, y) {
  const p = ps.pts;
  if (!p) return null;
  let best = null, bd = 64;  // within 8 px
  for (let i = 0; i < p.ids.length; i++) {
    const d = (p.x[i] - x) ** 2 + (p.y[i] - y) ** 2;
    if (d < bd) { bd = d; best = p.ids[i]; }
  }
  return best;
}

// For the browser test: where individual `id` is drawn on population k's scatter (CSS pixels).
window.lseScatterPoint = (k, id) => {
  const ps = state.pops[k];
  const i = ps && ps.pts ? ps.pts.ids.indexOf(id) : -1;
  return i < 0 ? null : { x: ps.pts.x[i], y: ps.pts.y[i] };
};

function renderAlive(ps) {
  const d = ps.dom.alive;
  clear(d);
  const alive = [...ps.rows.values()].filter((r) => r.state === "alive").sort((a, b) => (b.val ?? -1) - (a.val ?? -1));
  const t = el("table", {}, el("tr", {}, ...["id", "validation", "test", "mutation", "gen.", "params", "worker"].map((h) => el("th", {}, h))));
  for (const r of alive.slice(0, 15)) {
    const tr = el("tr", { class: "alive-row", "data-id": r.id }, el("td", {}, short(r.id)), el("td", { class: "num" }, pct(r.val)),
      el("td", { class: "num" }, pct(r.test)), el("td", {}, r.mutation || "initial"), el("td", { class: "num" }, r.generation),
      el("td", { class: "num" }, num(r.params)), el("td", {}, r.worker));
    tr.addEventListener("click", () => select(ps.k, r.id));
    t.append(tr);
  }
  d.append(t, el("p", { class: "muted" }, `${alive.length} alive; the 15 best shown`));
}

function renderMutations(ps) {
  const d = ps.dom.mutations;
  clear(d);
  const t = el("table", {}, el("tr", {}, ...["mutation", "children", "improved", "rate", "failed"].map((h) => el("th", {}, h))));
  for (const s of ps.panels.mutations || []) {
    t.append(el("tr", {}, el("td", {}, s.name), el("td", { class: "num" }, s.children), el("td", { class: "num" }, s.improved),
      el("td", { class: "num" }, s.rate == null ? "-" : (100 * s.rate).toFixed(1) + "%"), el("td", { class: "num" }, s.failed)));
  }
  d.append(t);
}

// ---- SVG charts ----------------------------------------------------------------------------------

function frame(svg, xr, yr, opts) {
  clear(svg);
  const W = 560, H = 260, m = { l: 48, r: 12, t: 10, b: 30 };
  const logx = opts && opts.logx;
  const tx = (x) => (logx ? Math.log10(Math.max(x, 1e-300)) : x);
  const [x0, x1] = [tx(xr[0]), tx(xr[1])];
  const X = (x) => m.l + ((tx(x) - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const Y = (y) => H - m.b - ((y - yr[0]) / (yr[1] - yr[0] || 1)) * (H - m.t - m.b);
  svg.append(sv("line", { class: "axis", x1: m.l, y1: m.t, x2: m.l, y2: H - m.b }), sv("line", { class: "axis", x1: m.l, y1: H - m.b, x2: W - m.r, y2: H - m.b }));
  for (let i = 0; i <= 4; i++) {
    const y = yr[0] + ((yr[1] - yr[0]) * i) / 4;
    svg.append(sv("line", { class: "grid", x1: m.l, x2: W - m.r, y1: Y(y), y2: Y(y) }));
    svg.append(sv("text", { x: 4, y: Y(y) + 3 }, opts && opts.yfmt ? opts.yfmt(y) : num(y)));
    const xv = logx ? 10 ** (x0 + ((x1 - x0) * i) / 4) : xr[0] + ((xr[1] - xr[0]) * i) / 4;
    svg.append(sv("text", { x: X(xv) - (i === 4 ? 30 : 12), y: H - m.b + 14 }, opts && opts.xfmt ? opts.xfmt(xv) : num(xv)));
  }
  if (opts && opts.xlabel) svg.append(sv("text", { x: W / 2 - 30, y: H - 4 }, opts.xlabel));
  return { X, Y };
}

function stepPath(xs, ys, X, Y) {
  let d = "", prev = null;
  for (let i = 0; i < xs.length; i++) {
    if (ys[i] == null) { prev = null; continue; }
    const x = X(xs[i]), y = Y(ys[i]);
    if (prev == null) d += `M${x},${y}`; else d += `H${x}V${y}`;
    prev = y;
  }
  return d;
}

function renderLegend() {
  const lg = document.getElementById("legend");
  clear(lg);
  for (const ps of state.pops) {
    lg.append(el("span", {}, el("span", { class: "swatch", style: "background:" + ps.color }), ps.label));
  }
  lg.append(el("span", { class: "muted" }, "solid: validation of the best so far; dashed: its test accuracy (eval/)"));
}

function renderCurves() {
  for (const [axis, id] of [["hours", "curve-hours"], ["flops", "curve-flops"]]) {
    const svg = document.getElementById(id);
    const curves = state.pops.map((ps) => ps.panels.curve).filter(Boolean);
    let xmax = 0, xmin = Infinity, ymin = 1, ymax = 0;
    for (const c of curves) {
      for (let i = 0; i < c[axis].length; i++) {
        xmax = Math.max(xmax, c[axis][i]); if (c[axis][i] > 0) xmin = Math.min(xmin, c[axis][i]);
        for (const v of [c.val[i], c.test[i]]) if (v != null) { ymin = Math.min(ymin, v); ymax = Math.max(ymax, v); }
      }
    }
    if (ymin > ymax) { ymin = 0; ymax = 1; }
    const logx = axis === "flops";
    const xr = logx ? [Math.min(xmin, xmax || 1), Math.max(xmax, (xmin || 1) * 10)] : [0, xmax || 1];
    const { X, Y } = frame(svg, xr, [Math.max(0, ymin - 0.02), Math.min(1, ymax + 0.02)],
      { logx, yfmt: (v) => (100 * v).toFixed(0) + "%", xfmt: logx ? (v) => v.toExponential(0) : hours, xlabel: logx ? "FLOPs (log)" : "hours" });
    state.pops.forEach((ps) => {
      const c = ps.panels.curve;
      if (!c) return;
      const xs = c[axis].map((x) => (logx ? Math.max(x, xr[0]) : x));
      svg.append(sv("path", { class: "val", stroke: ps.color, d: stepPath(xs, c.val, X, Y), "data-pop": ps.k }));
      svg.append(sv("path", { class: "test", stroke: ps.color, d: stepPath(xs, c.test, X, Y), "data-pop": ps.k }));
      const n = c.steps;  // the last entry closes the curve; the others are its steps
      for (let i = 0; i < n; i++) {
        const g = sv("circle", { class: "curve-pt", cx: X(xs[i]), cy: Y(c.val[i]), r: 3, fill: ps.color, "data-pop": ps.k, "data-id": c.best_id[i] });
        g.append(sv("title", {}, `${c.best_id[i]}: validation ${pct(c.val[i])}, test ${pct(c.test[i])}`));
        g.addEventListener("click", () => select(ps.k, c.best_id[i]));
        svg.append(g);
        if (c.test[i] != null) svg.append(sv("rect", { class: "curve-test-pt", x: X(xs[i]) - 2.5, y: Y(c.test[i]) - 2.5, width: 5, height: 5, fill: "#fff", stroke: ps.color, "data-pop": ps.k }));
      }
    });
  }
}

function showPanel(ps, key, data) {
  ps.dom[key + "Section"].hidden = !data;
  clear(ps.dom[key]);
  return !!data;
}

function renderExtras(ps) {
  const p = ps.panels;
  if (showPanel(ps, "pareto", p.pareto)) {
    const pr = p.pareto, svg = sv("svg", { class: "chart pareto", viewBox: "0 0 560 260", "data-front": pr.front_size });
    const xs = pr.points.map((q) => q.values[0]), ys = pr.points.map((q) => q.values[1]);
    const { X, Y } = frame(svg, [Math.min(...xs), Math.max(...xs)], [Math.min(...ys), Math.max(...ys)], { xlabel: pr.objectives[0] + " →" });
    svg.append(sv("text", { x: 52, y: 20 }, "↑ " + pr.objectives[1]));
    const front = pr.points.filter((q) => q.front).sort((a, b) => a.values[0] - b.values[0]);
    svg.append(sv("path", { d: front.map((q, i) => (i ? "L" : "M") + X(q.values[0]) + "," + Y(q.values[1])).join(""), fill: "none", stroke: ps.color }));
    for (const q of pr.points) {
      const c = sv("circle", { class: "pt" + (q.front ? " front" : ""), cx: X(q.values[0]), cy: Y(q.values[1]), r: q.front ? 4 : 2.5,
        fill: q.front ? ps.color : "#bbb", "data-id": q.id });
      c.append(sv("title", {}, q.id + ": " + pr.objectives.map((n, i) => n + "=" + num(q.values[i])).join(", ")));
      c.addEventListener("click", () => select(ps.k, q.id));
      svg.append(c);
    }
    ps.dom.pareto.append(svg, el("p", { class: "muted" }, `${pr.front_size} on the front of ${pr.points.length} alive` +
      (pr.objectives.length > 2 ? `; axes: the first two of ${pr.objectives.join(", ")}` : "")));
  }
  if (showPanel(ps, "species", p.species)) {
    const sp = p.species, names = Object.keys(sp.species);
    const t0 = sp.times[0], hs = sp.times.map((t) => (t - t0) / 3600);
    const ymax = Math.max(1, ...names.flatMap((n) => sp.species[n]));
    const svg = sv("svg", { class: "chart species", viewBox: "0 0 560 260" });
    const { X, Y } = frame(svg, [0, hs[hs.length - 1] || 1], [0, ymax], { xfmt: hours, xlabel: "hours", yfmt: num });
    const legend = el("div", { class: "legend" });
    names.forEach((n, i) => {
      const color = COLORS[i % COLORS.length];
      svg.append(sv("path", { class: "val", stroke: color, d: stepPath(hs, sp.species[n], X, Y) }));
      legend.append(el("span", {}, el("span", { class: "swatch", style: "background:" + color }), n));
    });
    ps.dom.species.append(svg, legend);
  }
  if (showPanel(ps, "generations", p.generations)) {
    const gs = p.generations.generations, xs = gs.map((g) => g.generation);
    const vals = gs.flatMap((g) => [g.best, g.mean]).filter((v) => v != null);
    const svg = sv("svg", { class: "chart generations", viewBox: "0 0 560 260" });
    const { X, Y } = frame(svg, [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)], [Math.min(...vals, 1), Math.max(...vals, 0)], { xlabel: "generation", xfmt: (v) => v.toFixed(0) });
    for (const [key, dash] of [["best", ""], ["mean", "4 3"]]) {
      let d = "";
      gs.forEach((g) => { if (g[key] != null) d += (d ? "L" : "M") + X(g.generation) + "," + Y(g[key]); });
      svg.append(sv("path", { class: "val", stroke: ps.color, "stroke-dasharray": dash, d }));
    }
    ps.dom.generations.append(svg, el("p", { class: "muted" }, `solid: best, dashed: mean fitness; ${gs.length} generations`));
  }
  if (showPanel(ps, "ages", p.ages)) {
    const a = p.ages, ymax = Math.max(...a.bins.map((b) => b.count));
    const svg = sv("svg", { class: "chart ages", viewBox: "0 0 560 260" });
    const lo = a.bins[0].from, hi = a.bins[a.bins.length - 1].to + 1;
    const { X, Y } = frame(svg, [lo, hi], [0, ymax], { xlabel: "age", xfmt: (v) => v.toFixed(0), yfmt: (v) => v.toFixed(0) });
    for (const b of a.bins) svg.append(sv("rect", { x: X(b.from), y: Y(b.count), width: Math.max(1, X(b.to + 1) - X(b.from) - 1), height: Y(0) - Y(b.count), fill: ps.color }));
    ps.dom.ages.append(svg, el("p", { class: "muted" }, `${a.alive} alive, mean age ${a.mean.toFixed(1)}, oldest ${a.max}`));
  }
}

// ---- one individual ----------------------------------------------------------------------------

async function select(k, id) {
  state.selected = { k, id };
  const ps = state.pops[k];
  if (ps) renderScatter(ps);
  const resp = await fetch("/api/individual?pop=" + k + "&id=" + encodeURIComponent(id), { cache: "no-store" });
  const box = document.getElementById("detail");
  box.hidden = false;
  const title = document.getElementById("detail-title");
  if (!resp.ok) { title.textContent = id + ": not available (" + resp.status + ")"; return; }
  const d = await resp.json();
  if (!state.selected || state.selected.id !== id) return;  // another click came first
  title.textContent = `${ps ? ps.label + ": " : ""}${d.id} (${d.record.state}${d.record.collected ? ", collected" : ""})`;
  box.setAttribute("data-id", d.id);
  const link = (b, current) => {
    const li = el("li", { "data-id": b.id, class: current ? "current" : "" },
      b.known ? `${b.id}  ${pct(b.val)}  ${b.mutation || "initial"}  ${b.state}` : `${b.id} (not in the records)`);
    if (b.known) li.addEventListener("click", () => select(k, b.id));
    return li;
  };
  const lin = document.getElementById("lineage");
  clear(lin);
  d.lineage.forEach((b) => lin.append(link(b, b.id === d.id)));
  if (!d.lineage_complete) lin.append(el("li", { class: "muted" }, "(older ancestors are not in the records)"));
  for (const [key, list] of [["parents", d.parents], ["children", d.children]]) {
    const ul = document.getElementById(key);
    clear(ul);
    list.forEach((b) => ul.append(link(b, false)));
    if (!list.length) ul.append(el("li", { class: "muted" }, key === "parents" ? "none: an initial individual" : "none yet"));
  }
  const rec = document.getElementById("record");
  clear(rec);
  for (const [key, v] of Object.entries(d.record)) {
    if (key === "dna") continue;
    rec.append(el("tr", {}, el("td", {}, key), el("td", {}, v == null ? "null" : typeof v === "object" ? JSON.stringify(v) : String(v))));
  }
  rec.append(el("tr", {}, el("td", {}, "test accuracy (eval/)"), el("td", {}, pct(d.test))));
  drawArch(d.architecture);
}

function drawArch(a) {
  const svg = document.getElementById("arch");
  clear(svg);
  document.getElementById("arch-line").textContent = a.line || a.error || "";
  document.getElementById("arch-dot").textContent = a.dot || "";
  if (!a.graph) return;
  const g = a.graph, n = g.vertices.length, step = 110;
  const W = Math.max(600, 40 + step * n), H = 140, y = 80;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const X = (i) => 30 + i * step;
  for (const s of g.skips) {
    const x1 = X(s.from), x2 = X(s.to), mid = (x1 + x2) / 2, hgt = 20 + 6 * (s.to - s.from);
    svg.append(sv("path", { d: `M${x1},${y - 14} Q${mid},${y - 14 - 2 * hgt} ${x2},${y - 14}`, fill: "none", stroke: "#999", "stroke-dasharray": "3 2" }));
  }
  g.edges.forEach((e) => {
    svg.append(sv("line", { x1: X(e.from) + 22, y1: y, x2: X(e.to) - 22, y2: y, stroke: e.label === "identity" ? "#aaa" : "#2b6cb0", "stroke-width": 2 }));
    svg.append(sv("text", { x: X(e.from) + 24, y: y - 4 }, e.label));
  });
  g.vertices.forEach((v, i) => {
    svg.append(sv("rect", { x: X(i) - 22, y: y - 12, width: 44, height: 24, rx: 4, fill: v.activation === "bn_relu" ? "#dbe9ff" : "#f3f3f3", stroke: "#666" }));
    svg.append(sv("text", { x: X(i) - 18, y: y + 3 }, v.id + (v.activation === "bn_relu" ? " BN+R" : "")));
    if (v.role) svg.append(sv("text", { x: X(i) - 18, y: y + 24 }, v.role));
  });
  svg.append(sv("text", { x: 4, y: H - 6 }, "then global average pool + fully connected; learning rate " + num(g.learning_rate)));
}

document.addEventListener("DOMContentLoaded", poll);
