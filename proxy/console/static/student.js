// Student (eval slices, cascade curve, worst cases against the teacher, training curve, gate,
// curation report), Log (a route's recent requests, one request as stored with its feedback)
// and Jobs (curate and retrain now, progress, last runs).
"use strict";

UI.pages.student = async (view, [route, version]) => {
  const data = await api(`/students/${encodeURIComponent(route)}/${encodeURIComponent(version)}`);
  const m = data.manifest, e = data.eval || {};
  const gate = m.gate || e.gate || {passed: null, reasons: []};
  view.replaceChildren(
    h("h1", {}, h("a", {href: `#/route/${encodeURIComponent(route)}`}, route), ` / student ${version} `,
      badge(data.status)),
    h("p", {class: "muted"}, `base ${m.base} · ${m.method} · dataset v${m.dataset_version} · created ${m.created_at}`),
    section("Gate", h("p", {id: "gate"}, badge(gate.passed ? "passed" : "refused", gate.passed ? "ok" : "fail"),
      " ", gate.reasons && gate.reasons.length ? gate.reasons.join("; ") : "every threshold met")),
    section("Eval slices", slices(e.slices || m.slices || {})),
    h("div", {class: "charts"},
      section("Cascade curve", cascadeChart(e.cascade || {})),
      section("Training curve", trainingChart(data.history || []))),
    section("Worst cases against the teacher", worst(e.slices || {})),
    section("Curation report", curation(data.dataset)));
};

function slices(found) {
  const names = Object.keys(found);
  const cols = ["n", "exact_match", "token_f1", "json_valid", "length_ratio", "latency_p50_ms"];
  return table(["slice", ...cols], names.map((n) => [n, ...cols.map((c) =>
    c === "n" ? fmt.int(found[n][c]) : c.endsWith("_ms") ? fmt.ms(found[n][c]) : fmt.num(found[n][c]))]),
    {id: "slices"});
}

function cascadeChart(cascade) {
  const curves = cascade.curves || {};
  const series = Object.entries(curves).map(([name, points]) => ({name, points}));
  if (!series.length) return h("p", {class: "muted"}, "no cascade was calibrated");
  const marks = [];
  if (cascade.target_agreement !== undefined) marks.push({y: cascade.target_agreement});
  if (cascade.coverage && cascade.agreement !== null && cascade.agreement !== undefined) {
    marks.push({x: cascade.coverage, y: cascade.agreement});
  }
  return h("figure", {},
    lineChart(series, {xLabel: "coverage", yLabel: "agreement", marks, title: "cascade curve"}),
    h("figcaption", {}, `rule: ${cascade.signal} ≥ ${fmt.num(cascade.threshold)} · target agreement `,
      fmt.pct(cascade.target_agreement), ` · coverage ${fmt.pct(cascade.coverage)} at agreement ${fmt.pct(cascade.agreement)}`));
}

function trainingChart(history) {
  const series = ["train_loss", "eval_loss"].map((key) => ({name: key,
    points: history.filter((p) => p[key] !== undefined).map((p) => [p.step, p[key]])}))
    .filter((x) => x.points.length);
  if (!series.length) return h("p", {class: "muted"}, "no training history");
  const xs = series.flatMap((x) => x.points.map((p) => p[0]));
  const ys = series.flatMap((x) => x.points.map((p) => p[1]));
  return h("figure", {}, lineChart(series, {xLabel: "step", yLabel: "loss",
    x: [Math.min(...xs), Math.max(...xs)], y: [0, Math.max(...ys)], title: "training curve"}));
}

function worst(found) {
  const rows = [];
  for (const [name, slice] of Object.entries(found)) {
    for (const w of slice.worst || []) rows.push([name, h("pre", {}, w.prompt), h("pre", {}, w.teacher), h("pre", {}, w.student)]);
  }
  return table(["slice", "prompt", "teacher", "student"], rows, {id: "worst", class: "cases"});
}

function curation(dataset) {
  if (!dataset) return h("p", {class: "muted"}, "its dataset's manifest is not in the store");
  const counts = dataset.counts || {};
  return h("div", {},
    h("p", {}, `dataset ${dataset.version}, ${fmt.time(dataset.created_at)}: `,
      Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(" · ")),
    table(["stage", "rows in", "rows out", "dropped", "changed"], (dataset.stages || []).map((st) => [
      st.name, fmt.int(st.rows_in), fmt.int(st.rows_out), reasons(st.dropped), reasons(st.changed)]),
    {id: "curation"}));
}

function reasons(counts) {
  const parts = Object.entries(counts || {}).map(([k, v]) => `${k} ${v}`);
  return parts.length ? parts.join(", ") : "–";
}

UI.pages.log = async (view, [route]) => {
  const routes = (await api("/overview?window=hour")).routes.map((r) => r.name);
  route = route || routes[0];
  const pick = (id, options) => h("select", {id, onchange: draw},
    options.map(([value, label]) => h("option", {value}, label)));
  const routeSel = h("select", {id: "log-route", onchange: (e) => { window.location.hash = `#/log/${encodeURIComponent(e.target.value)}`; }},
    routes.map((r) => h("option", {value: r, selected: r === route}, r)));
  const versions = route ? (await api("/students")).students.filter((x) => x.route === route) : [];
  const served = pick("served_by", [["", "any"], ["teacher", "teacher"], ["student", "any student"],
    ...versions.map((x) => [`student:v${x.version}`, `student:v${x.version}`]),
    ...versions.map((x) => [`student:v${x.version} (shadow)`, `student:v${x.version} (shadow)`])]);
  const outcome = pick("outcome", [["", "any"], ["ok", "ok"], ["client_error", "client_error"],
    ["upstream_error", "upstream_error"], ["timeout", "timeout"], ["client_disconnected", "client_disconnected"]]);
  const endpoint = pick("endpoint", [["", "any"], ["chat/completions", "chat/completions"],
    ["responses", "responses"], ["messages", "messages"], ["embeddings", "embeddings"]]);
  const list = h("div", {}), detail = h("div", {id: "request"});
  view.replaceChildren(h("h1", {}, "Log ", routeSel),
    h("p", {class: "filters"}, h("label", {}, "served by ", served), h("label", {}, "outcome ", outcome),
      h("label", {}, "endpoint ", endpoint)), list, detail);
  async function draw() {
    if (!route) { list.replaceChildren(h("p", {class: "muted"}, "no routes")); return; }
    const q = new URLSearchParams({served_by: served.value, outcome: outcome.value, endpoint: endpoint.value});
    const data = await api(`/log/${encodeURIComponent(route)}?${q}`);
    list.replaceChildren(table(["started", "served by", "endpoint", "status", "outcome", "latency", "request"],
      data.requests.map((r) => [fmt.time(r.started_at), r.shown_by, r.endpoint || "–", String(r.status),
        badge(r.outcome), fmt.ms(r.latency_ms),
        h("a", {href: "#", onclick: (ev) => { ev.preventDefault(); openRequest(r.request_id, detail); }}, r.request_id)]),
      {id: "requests"}));
  }
  await draw();
};

async function openRequest(id, into) {
  const r = await api(`/requests/${encodeURIComponent(id)}`);
  into.replaceChildren(section(`Request ${r.request_id}`,
    h("p", {class: "muted"}, `${fmt.time(r.started_at)} · ${r.served_by} · ${r.endpoint || ""} · ${r.status} ${r.outcome}`,
      r.error ? ` · ${r.error}` : ""),
    h("div", {class: "pair"},
      h("div", {}, h("h3", {}, "prompt (as stored)"), h("pre", {}, fmt.json(r.request))),
      h("div", {}, h("h3", {}, "answer (as stored)"), h("pre", {}, fmt.json(r.response)))),
    h("h3", {}, "feedback"),
    table(["at", "score", "label", "comment", "correction"], r.feedback.map((f) => [fmt.time(f.created_at),
      fmt.num(f.score, 2), f.label || "–", f.comment || "–", f.correction ? h("pre", {}, fmt.json(f.correction)) : "–"]))));
  into.scrollIntoView({behavior: "smooth"});
}

UI.pages.jobs = async (view) => {
  const body = h("div", {});
  const result = h("p", {id: "job-result", role: "status"});
  view.replaceChildren(h("h1", {}, "Jobs"), result, body);
  async function draw() {
    const data = await api("/jobs");
    body.replaceChildren(...Object.entries(data.routes).map(([name, r]) => jobCard(name, r, result, draw)));
  }
  await draw();
  return draw;
};

function jobCard(name, r, result, redraw) {
  const sched = r.schedule;
  const run = (kind) => async (ev) => {
    if (!window.confirm(`${kind === "curate" ? "Curate" : "Curate and retrain"} ${name} now?`)) return;
    ev.target.disabled = true;
    result.className = "";
    result.textContent = `${kind} ${name}: running…`;
    try {
      const out = await api(`/jobs/${kind}`, {route: name});
      result.className = "ok";
      result.textContent = kind === "curate" ? `curate ${name}: ${out.status}: ${out.message || ""}`
        : `retrain ${name}: ${out.queued ? "queued; the scheduler starts it within seconds" : "already running"}`;
    } catch (err) {
      result.className = "error";
      result.textContent = `${kind} ${name} refused: ${err.message}`;
    }
    ev.target.disabled = false;
    await redraw();
  };
  return h("article", {class: "card"},
    h("h2", {}, name, " ", sched && sched.running ? badge("running", "canary") : null),
    h("p", {}, sched ? `runs so far ${sched.runs} · last run ${fmt.time(sched.last_run_at)}` +
      (sched.last_failed ? " · the last run failed" : "") + (sched.asked ? " · a run is asked for" : "")
      : "no retrain schedule in this server"),
    h("div", {class: "buttons"},
      h("button", {type: "button", "data-job": "curate", onclick: run("curate")}, "curate now"),
      h("button", {type: "button", "data-job": "retrain", onclick: run("retrain")}, "curate and retrain now")),
    h("h3", {}, "datasets"),
    table(["version", "created", "train", "eval", "novel"], r.datasets.map((d) => [d.version,
      fmt.time(d.created_at), fmt.int((d.counts || {}).train), fmt.int((d.counts || {}).eval),
      fmt.int((d.counts || {}).eval_novel)])),
    h("h3", {}, "students"),
    table(["version", "created", "status", "gate", "exact match"], r.students.map((x) => [
      h("a", {href: `#/student/${encodeURIComponent(name)}/v${x.version}`}, `v${x.version}`),
      fmt.time(x.created_at), badge(x.status), x.gate_passed ? "passed" : "refused", fmt.num(x.exact_match)])));
}
