// The console's plumbing: DOM building (text only, never HTML from data), the /ui/api client
// with its CSRF header, formatting, inline SVG charts, and the hash router.
"use strict";

const UI = {pages: {}, timer: null, csrf: null};

// h("td", {class: "num"}, "12") -> <td class="num">12</td>; strings become text nodes, so
// a prompt or an answer from the log can never inject markup.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) {
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return el;
}

class ApiRefusal extends Error {}

async function api(path, body) {
  const options = {credentials: "same-origin", headers: {accept: "application/json"}};
  if (body !== undefined) {
    if (UI.csrf === null) UI.csrf = (await api("/session")).csrf;
    options.method = "POST";
    options.headers["content-type"] = "application/json";
    options.headers["x-apprentice-csrf"] = UI.csrf;
    options.body = JSON.stringify(body);
  }
  const response = await fetch("/ui/api" + path, options);
  if (response.status === 401) {
    window.location.assign("/ui/login");
    throw new ApiRefusal("Logged out.");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (data.error && data.error.message) || `HTTP ${response.status}`;
    throw new ApiRefusal(message);
  }
  return data;
}

const fmt = {
  pct: (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`),
  ms: (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} ms`),
  usd: (v) => (v === null || v === undefined ? "–" : `$${Number(v).toFixed(4)}`),
  num: (v, d = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(d)),
  int: (v) => (v === null || v === undefined ? "–" : String(Math.round(v))),
  time: (v) => {
    if (v === null || v === undefined) return "–";
    const date = typeof v === "number" ? new Date(v * 1000) : new Date(v + (/[Z+]/.test(v) ? "" : "Z"));
    return date.toISOString().replace("T", " ").slice(0, 19);
  },
  json: (v) => (typeof v === "string" ? v : JSON.stringify(v, null, 2)),
};

function table(headers, rows, attrs) {
  return h("table", attrs || {},
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", {}, name)))),
    h("tbody", {}, rows.length
      ? rows.map((cells) => h("tr", {}, cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c)))))
      : h("tr", {}, h("td", {colspan: headers.length, class: "muted"}, "nothing yet"))));
}

function badge(text, kind) {
  return h("span", {class: `badge ${kind || String(text).replace(/[^a-z_]/g, "")}`}, text);
}

function section(title, ...body) {
  return h("section", {}, h("h2", {}, title), body);
}

// A share as a bar: the width is set through the CSSOM, which the page's CSP allows.
function bar(share) {
  const fill = h("span", {class: "fill"});
  fill.style.width = `${Math.max(0, Math.min(1, share || 0)) * 100}%`;
  return h("span", {class: "bar"}, fill);
}

// Points [[x, y], ...] per series on [0, 1] x [0, 1] unless bounds are given.
function lineChart(series, options) {
  const W = 420, H = 240, L = 46, B = 34, T = 12, R = 12;
  const o = Object.assign({xLabel: "", yLabel: "", x: [0, 1], y: [0, 1], marks: []}, options);
  const X = (v) => L + ((v - o.x[0]) / (o.x[1] - o.x[0] || 1)) * (W - L - R);
  const Y = (v) => H - B - ((v - o.y[0]) / (o.y[1] - o.y[0] || 1)) * (H - B - T);
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  const axes = [
    s("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis"}),
    s("line", {x1: L, y1: T, x2: L, y2: H - B, class: "axis"}),
    ticks.map((t) => {
      const xv = o.x[0] + t * (o.x[1] - o.x[0]), yv = o.y[0] + t * (o.y[1] - o.y[0]);
      return [
        s("text", {x: X(xv), y: H - B + 14, class: "tick", "text-anchor": "middle"}, short(xv)),
        s("text", {x: L - 5, y: Y(yv) + 4, class: "tick", "text-anchor": "end"}, short(yv)),
        s("line", {x1: L, y1: Y(yv), x2: W - R, y2: Y(yv), class: "grid"}),
      ];
    }),
    s("text", {x: (L + W - R) / 2, y: H - 4, class: "label", "text-anchor": "middle"}, o.xLabel),
    s("text", {x: 12, y: (T + H - B) / 2, class: "label", "text-anchor": "middle",
      transform: `rotate(-90 12 ${(T + H - B) / 2})`}, o.yLabel),
  ];
  const lines = series.map((line, i) => s("polyline", {
    class: `series s${i % 4}`, fill: "none",
    points: line.points.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" "),
  }));
  const marks = o.marks.map((m) => m.y !== undefined && m.x === undefined
    ? s("line", {x1: L, x2: W - R, y1: Y(m.y), y2: Y(m.y), class: "target"})
    : s("circle", {cx: X(m.x), cy: Y(m.y), r: 5, class: "chosen"}));
  // Bottom left: where neither a cascade curve (high agreement) nor a loss curve goes.
  const legend = series.map((line, i) => s("text", {x: L + 8, y: H - B - 8 - 13 * (series.length - 1 - i),
    class: `legend s${i % 4}`}, line.name));
  return s("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": o.title || o.yLabel}, axes, lines, marks, legend);
}

function short(v) {
  const a = Math.abs(v);
  if (a >= 1000) return `${(v / 1000).toFixed(1)}k`;
  return a >= 10 || v === 0 ? String(Math.round(v)) : v.toFixed(2);
}

function stamp() {
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// Route: "#/route/support" -> UI.pages.route(["support"]). A page may return a refresh
// function, which runs every `page.every` ms (default 3 s: the live route page) until the
// hash changes.
async function show() {
  clearInterval(UI.timer);
  UI.timer = null;
  const [name, ...args] = (window.location.hash.replace(/^#\/?/, "") || "routes").split("/");
  const page = UI.pages[name] || UI.pages.routes;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.nav === name);
  }
  const view = document.getElementById("view");
  try {
    const refresh = await page(view, args.map(decodeURIComponent));
    stamp();
    if (typeof refresh === "function") {
      UI.timer = setInterval(async () => {
        try { await refresh(); stamp(); } catch (err) { console.warn(err); }
      }, page.every || 3000);
    }
  } catch (err) {
    view.replaceChildren(h("p", {class: "error", role: "alert"}, String(err.message || err)));
  }
}

window.addEventListener("hashchange", show);
window.addEventListener("DOMContentLoaded", show);
