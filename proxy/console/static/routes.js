// Routes (traffic of every route) and Route (one route's canary, its controls, the cascade
// predicted against live, drift against thresholds; refreshed every few seconds).
"use strict";

UI.window = "hour";

UI.pages.routes = async (view) => {
  const picker = h("select", {id: "window", onchange: (e) => { UI.window = e.target.value; draw(); }},
    ["hour", "day"].map((w) => h("option", {value: w, selected: w === UI.window}, `last ${w}`)));
  const body = h("div", {});
  view.replaceChildren(h("h1", {}, "Routes ", picker), body);
  async function draw() {
    const data = await api(`/overview?window=${UI.window}`);
    body.replaceChildren(...data.routes.map(routeCard));
  }
  await draw();
  return draw;
};
UI.pages.routes.every = 15000; // each look scans the log's segments: less often than the canary

function routeCard(route) {
  const t = route.traffic || {requests: 0, errors: 0, served_by: [], error_ratio: null,
    cost_paid_usd: 0, cost_avoided_usd: 0};
  const c = route.canary;
  const link = `#/route/${encodeURIComponent(route.name)}`;
  return h("article", {class: "card", "data-route": route.name},
    h("h2", {}, h("a", {href: link}, route.name), " ", c ? badge(c.state) : null),
    h("p", {class: "muted"}, `teacher ${route.teacher} · ${route.upstream}`,
      c && Object.keys(c.weights).length ? ` · weights ${weights(c.weights)}` : ""),
    h("dl", {class: "figures"},
      figure("requests", fmt.int(t.requests), "requests"),
      figure("error ratio", fmt.pct(t.error_ratio), "error-ratio"),
      figure("teacher cost paid", fmt.usd(t.cost_paid_usd), "cost-paid"),
      figure("teacher cost avoided", fmt.usd(t.cost_avoided_usd), "cost-avoided")),
    table(["served by", "requests", "share", "", "errors", "p50", "p95"],
      t.served_by.map((g) => [g.served_by, fmt.int(g.requests), g.shadow ? "shadow" : fmt.pct(g.share),
        g.shadow ? "" : bar(g.share), fmt.int(g.errors), fmt.ms(g.p50_ms), fmt.ms(g.p95_ms)]),
      {class: "traffic"}),
    h("p", {}, h("a", {href: link}, "canary and controls"), " · ",
      h("a", {href: `#/log/${encodeURIComponent(route.name)}`}, "log")));
}

function figure(label, value, key) {
  return h("div", {"data-figure": key}, h("dt", {}, label), h("dd", {}, value));
}

function weights(w) {
  const parts = Object.entries(w).map(([v, pct]) => `${v}: ${pct}%`);
  return parts.length ? parts.join(", ") : "teacher only";
}

UI.pages.route = async (view, [name]) => {
  const students = (await api("/students")).students.filter((x) => x.route === name);
  const head = h("div", {id: "live"}), details = h("div", {});
  const result = h("p", {id: "result", role: "status"});
  view.replaceChildren(
    h("h1", {}, h("a", {href: "#/routes"}, "Routes"), " / ", name),
    head, controls(name, students, result, () => draw()), result, details);
  async function draw() {
    const data = await api(`/routes/${encodeURIComponent(name)}`);
    const [top, rest] = routeLive(data, students);
    head.replaceChildren(...top.filter(Boolean));
    details.replaceChildren(...rest.filter(Boolean));
  }
  await draw();
  return draw;
};

function routeLive(data, students) {
  const c = data.canary;
  if (!c) return [[h("p", {class: "muted"}, "This server runs no canary control.")], []];
  const studentLink = (v) => (v ? h("a", {href: `#/student/${encodeURIComponent(data.route)}/${v}`}, v) : "–");
  return [[
    h("dl", {class: "figures"},
      h("div", {}, h("dt", {}, "state"), h("dd", {id: "state"}, badge(c.state))),
      h("div", {}, h("dt", {}, "step"), h("dd", {}, c.step === null ? "–" : `${c.step} of ${c.steps.join(" → ")}`)),
      h("div", {}, h("dt", {}, "candidate"), h("dd", {}, studentLink(c.version))),
      h("div", {}, h("dt", {}, "current"), h("dd", {}, studentLink(c.current))),
      h("div", {}, h("dt", {}, "traffic"), h("dd", {id: "weights"}, weights(c.weights))),
      h("div", {}, h("dt", {}, "revision"), h("dd", {}, String(c.revision)))),
    c.last_decision ? h("p", {}, `last decision: ${c.last_decision.action} (${c.last_decision.reason})`) : null,
  ], [
    section("Last interval's checks", table(["check", "status", "value", "threshold", "detail"],
      c.last_checks.map((k) => [k.name, badge(k.status), fmt.num(k.value), fmt.num(k.threshold), k.detail]))),
    section("Cascade: predicted against live", table(
      ["student", "predicted coverage", "live coverage", "predicted agreement", "live agreement", "live pairs"],
      data.cascade.map((x) => [x.version, fmt.pct(x.predicted_coverage), fmt.pct(x.live_coverage),
        fmt.pct(x.predicted_agreement), fmt.pct(x.live_agreement), fmt.int(x.live_pairs)]))),
    section("Drift against thresholds", table(["method", "score", "warn", "act", "level"],
      data.drift.methods.map((m) => [m.method, fmt.num(m.score), fmt.num(m.warn), fmt.num(m.act),
        m.level ? badge(m.level) : "not scored"])),
      h("p", {class: "muted"}, `window ${fmt.int(data.drift.window_prompts)} prompts · last run ${fmt.time(data.drift.last_run)}`,
        data.leading === false ? " · drift is scored on the leader replica, and this one does not lead: its console shows the scores" : "")),
    section("History", table(["at", "from", "to", "student", "weight", "reason", "detail"],
      c.history.slice().reverse().map((t) => [fmt.time(t.at), t.from_state, t.to_state, t.version || "–",
        `${t.weight}%`, t.reason, t.detail]), {id: "history"})),
  ]];
}

// Each control asks to confirm, then shows the new state or the reason it was refused.
function controls(name, students, result, redraw) {
  const version = h("select", {id: "version"}, students.slice().reverse().map((x) =>
    h("option", {value: x.name || `v${x.version}`}, `v${x.version} (${x.status})`)));
  const weight = h("input", {id: "weight", type: "number", min: 0, max: 100, value: 5});
  const reason = h("input", {id: "reason", type: "text", placeholder: "reason (rollback)", maxlength: 500});
  const act = (action, body, question) => async () => {
    if (!window.confirm(question())) return;
    result.className = "";
    result.textContent = `${action}…`;
    try {
      const state = await api(`/canary/${encodeURIComponent(name)}/${action}`, body());
      result.className = "ok";
      result.textContent = `${action}: now ${state.state}, traffic ${weights(state.weights)}`;
    } catch (err) {
      result.className = "error";
      result.setAttribute("role", "alert");
      result.textContent = `${action} refused: ${err.message}`;
    }
    await redraw();
  };
  const v = () => version.value;
  const button = (action, body, question) =>
    h("button", {type: "button", "data-action": action, onclick: act(action, body, question)}, action);
  return h("section", {class: "controls"}, h("h2", {}, "Controls"),
    h("label", {}, "student ", version), h("label", {}, "weight % ", weight), h("label", {}, reason),
    h("div", {class: "buttons"},
      button("start", () => ({version: v()}), () => `Start ${v()} in shadow on ${name}?`),
      button("set-weight", () => ({version: v(), weight: Number(weight.value)}),
        () => `Send ${weight.value}% of ${name} to ${v()}?`),
      button("pause", () => ({}), () => `Pause the canary of ${name}?`),
      button("resume", () => ({}), () => `Resume the canary of ${name}?`),
      button("promote", () => ({}), () => `Promote the candidate of ${name} to 100%?`),
      button("rollback", () => (reason.value ? {reason: reason.value} : {}),
        () => `Roll ${name} back to the teacher?`)));
}
