// trio-runner console: plain JavaScript, no library. Every value from the server is put
// in the page as text (textContent), never as HTML.
"use strict";

(function () {
  const KEY = "trio-runner.console.token";
  const query = new URLSearchParams(window.location.search);
  const seconds = Number(query.get("refresh"));
  const REFRESH_MS = Number.isFinite(seconds) && seconds >= 0.5 ? seconds * 1000 : 3000;
  const SVG = "http://www.w3.org/2000/svg";
  const PAGE = 20;

  const state = { offset: 0, total: 0, open: null, timer: null, graphDrawn: "", filtersFilled: false };
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ helpers

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function badge(word) {
    const value = word === null || word === undefined ? "unknown" : String(word);
    return el("span", { class: "badge s-" + value.replace(/ /g, "-"), text: value.replace(/_/g, " ") });
  }

  function ms(value) {
    return value === null || value === undefined ? "—" : value.toFixed(value < 10 ? 2 : 1) + " ms";
  }

  function when(epochSeconds) {
    if (typeof epochSeconds !== "number" || !epochSeconds) return "—";
    return new Date(epochSeconds * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
  }

  function json(value) {
    return el("pre", { text: value === undefined ? "" : JSON.stringify(value, null, 2) });
  }

  function fill(tbody, rows, columns) {
    tbody.replaceChildren();
    if (!rows.length) {
      tbody.append(el("tr", {}, el("td", { class: "empty", colspan: columns, text: "none" })));
      return;
    }
    for (const cells of rows) {
      tbody.append(el("tr", {}, ...cells.map((cell) => (cell instanceof Node && cell.tagName === "TD" ? cell : el("td", {}, cell)))));
    }
  }

  function num(value) {
    return el("td", { class: "num", text: value === undefined || value === null ? "—" : value });
  }

  // ------------------------------------------------------------------ the API

  class Refused extends Error {}

  async function api(path, options) {
    const token = sessionStorage.getItem(KEY);
    if (!token) throw new Refused("no token");
    const init = Object.assign({ method: "GET", credentials: "omit", cache: "no-store" }, options || {});
    init.headers = { Authorization: "Bearer " + token, Accept: "application/json" };
    if (init.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(init.body);
    }
    const response = await fetch("api/" + path, init);
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (response.status === 401) {
      signOut("The token was refused.");
      throw new Refused("unauthorized");
    }
    if (!response.ok) {
      const message = body && body.message ? body.message : "HTTP " + response.status;
      throw new Error(message + (body && body.details ? ": " + body.details.join("; ") : ""));
    }
    return body;
  }

  // ------------------------------------------------------------------ signing in

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    if (state.timer !== null) clearInterval(state.timer);
    state.timer = null;
    $("console").hidden = true;
    $("sign-out").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("app-id").textContent = "";
    $("refreshed").textContent = "";
  }

  async function signIn() {
    try {
      await api("app");
    } catch (error) {
      if (!(error instanceof Refused)) $("login-error").textContent = String(error.message || error);
      return;
    }
    $("login").hidden = true;
    $("console").hidden = false;
    $("sign-out").hidden = false;
    $("login-error").textContent = "";
    await refresh();
    if (state.timer === null) state.timer = setInterval(refresh, REFRESH_MS);
  }

  // ------------------------------------------------------------------ sections

  function showApp(app) {
    $("app-id").textContent = app.id;
    const facts = [
      ["Id", app.id],
      ["State", badge(app.state)],
      ["Up for", formatDuration(app.uptime_s)],
      ["Process", String(app.pid)],
    ];
    if (app.worker) facts.push(["Worker", app.worker]);
    $("app-facts").replaceChildren(...facts.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", {}, value)]));
  }

  function formatDuration(total) {
    const s = Math.floor(total);
    const parts = [[Math.floor(s / 86400), "d"], [Math.floor((s % 86400) / 3600), "h"], [Math.floor((s % 3600) / 60), "min"], [s % 60, "s"]];
    const shown = parts.filter(([n]) => n > 0).map(([n, unit]) => n + " " + unit);
    return shown.length ? shown.slice(0, 2).join(" ") : "0 s";
  }

  function showHealth(report) {
    const status = $("health-status");
    status.className = "status s-" + report.status;
    const mark = { healthy: "✓", degraded: "!", unhealthy: "✗" }[report.status] || "?";
    status.textContent = mark + " " + report.status + (report.ready ? "" : " (not ready)");
    const rows = Object.entries(report.checks).map(([id, check]) => [
      id + (check.critical ? " (critical)" : ""),
      badge(check.status),
      num(ms(check.latency_ms)),
      check.error || "",
    ]);
    fill($("health-checks").tBodies[0], rows, 4);
  }

  function showPrimitives(view) {
    fill($("circuits").tBodies[0], view.circuits.map((c) => [
      c.name, c.tasks.join(", "), c.scope, c.error ? c.error : badge(c.state),
      num(c.probe_in_s === undefined ? "—" : c.probe_in_s.toFixed(1) + " s"),
      num(c.failures), num(c.rejections),
    ]), 7);
    fill($("limiters").tBodies[0], view.limiters.map((l) => [
      l.name, l.tasks.join(", "), l.scope, num(l.error || l.admitted), num(l.rejected), num(l.waited),
    ]), 6);
    fill($("bulkheads").tBodies[0], view.bulkheads.map((b) => [
      b.name, b.tasks.join(", "), b.scope, num(b.error || b.active + " / " + b.max_concurrent), num(b.queued), num(b.rejected),
    ]), 6);
  }

  function chart(history) {
    // Calls (and errors) per sampling interval, oldest left.
    const width = 120, height = 28;
    const drawing = svg("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    const deltas = [];
    for (let i = 1; i < history.length; i += 1) {
      const calls = history[i][1] - history[i - 1][1];
      const errors = history[i][2] - history[i - 1][2];
      if (calls >= 0) deltas.push([calls, Math.max(0, errors)]);
    }
    drawing.append(svg("line", { class: "baseline", x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }));
    const top = Math.max(1, ...deltas.map(([c]) => c));
    const bar = width / Math.max(deltas.length, 30);
    deltas.slice(-30).forEach(([calls, errors], i) => {
      const h = (calls / top) * (height - 2);
      const e = (errors / top) * (height - 2);
      drawing.append(svg("rect", { class: "calls", x: i * bar, y: height - h, width: Math.max(1, bar - 1), height: h }));
      if (e > 0) drawing.append(svg("rect", { class: "errors", x: i * bar, y: height - e, width: Math.max(1, bar - 1), height: e }));
    });
    const minutes = history.length ? (history[0][0] / 60).toFixed(1) : "0";
    const recent = deltas.slice(-10).map(([c]) => c).join(", ") || "no samples yet";
    drawing.setAttribute("aria-label", `calls per interval over the last ${minutes} min: ${recent}`);
    drawing.append(svg("title", {}, `calls per interval, last ${minutes} min`));
    return drawing;
  }

  function showTasks(view) {
    $("tasks-note").textContent = view.metrics ? "" : "Metrics are off for this app: only the task list is shown.";
    fill($("task-table").tBodies[0], view.tasks.map((t) => [
      el("td", {}, el("code", { text: t.id }), t.allowed ? el("span", { class: "http badge", text: "HTTP" }) : null),
      num(t.calls), num(t.errors), num(t.in_flight), num(ms(t.p50_ms)), num(ms(t.p95_ms)), num(ms(t.p99_ms)),
      t.history ? chart(t.history) : "—",
    ]), 8);
  }

  function drawGraph(graph) {
    const key = JSON.stringify(graph);
    if (key === state.graphDrawn) return;
    state.graphDrawn = key;
    const kinds = ["resource", "task", "event", "hook"];
    const titles = { resource: "Resources", task: "Tasks", event: "Events", hook: "Hooks" };
    const columnWidth = 220, boxWidth = 190, row = 30, top = 30;
    const place = {};
    const counts = {};
    for (const kind of kinds) counts[kind] = 0;
    for (const node of graph.nodes) {
      const column = kinds.indexOf(node.kind);
      place[node.id] = { x: 10 + column * columnWidth, y: top + counts[node.kind] * row, node };
      counts[node.kind] += 1;
    }
    const height = top + Math.max(1, ...Object.values(counts)) * row + 10;
    const width = 10 + kinds.length * columnWidth;
    const drawing = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `dependency graph: ${graph.nodes.length} nodes, ${graph.edges.length} edges` });
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8c959f" }));
    defs.append(marker);
    drawing.append(defs);
    kinds.forEach((kind, i) => drawing.append(svg("text", { class: "column-title", x: 10 + i * columnWidth, y: 16 }, titles[kind])));
    for (const edge of graph.edges) {
      const a = place[edge.from], b = place[edge.to];
      if (!a || !b) continue;
      const leftToRight = a.x < b.x;
      const sameColumn = a.x === b.x;
      const x1 = sameColumn ? a.x : leftToRight ? a.x + boxWidth : a.x;
      const x2 = sameColumn ? b.x : leftToRight ? b.x : b.x + boxWidth;
      const y1 = a.y + 11, y2 = b.y + 11;
      const bend = sameColumn ? -40 : (x2 - x1) / 2;
      const path = sameColumn
        ? `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 + bend} ${y2}, ${x2} ${y2}`
        : `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`;
      const line = svg("path", { class: "edge " + edge.kind, d: path, "marker-end": "url(#arrow)" });
      line.append(svg("title", {}, `${edge.from} ${edge.kind === "on" ? "listens to" : "depends on"} ${edge.to}`));
      drawing.append(line);
    }
    for (const { x, y, node } of Object.values(place)) {
      const group = svg("g", { class: "node " + node.kind });
      group.append(svg("rect", { x, y, width: boxWidth, height: 22, rx: node.kind === "task" ? 8 : 2 }));
      const label = node.id.length > 28 ? node.id.slice(0, 27) + "…" : node.id;
      group.append(svg("text", { x: x + 6, y: y + 15 }, label + (node.on_all ? " (every event)" : "")));
      group.append(svg("title", {}, `${node.kind} ${node.id}`));
      drawing.append(group);
    }
    $("graph-drawing").replaceChildren(drawing);
  }

  // ------------------------------------------------------------------ durable

  function options(select, values, keep) {
    const current = select.value;
    select.replaceChildren(...(keep ? [el("option", { value: "", text: "any" })] : []),
      ...values.map((v) => el("option", { value: v, text: v })));
    if ([...select.options].some((o) => o.value === current)) select.value = current;
  }

  function durableParams() {
    const params = new URLSearchParams();
    const engine = $("filter-engine").value;
    if (engine) params.set("engine", engine);
    return params;
  }

  async function showExecutions() {
    const params = durableParams();
    if ($("filter-status").value) params.set("status", $("filter-status").value);
    if ($("filter-workflow").value) params.set("workflow", $("filter-workflow").value);
    params.set("offset", String(state.offset));
    params.set("limit", String(PAGE));
    const page = await api("durable/executions?" + params);
    $("durable").hidden = false;
    options($("filter-engine"), page.engines, false);
    if (page.engine) $("filter-engine").value = page.engine;
    $("filter-engine").disabled = page.engines.length < 2;
    options($("filter-status"), page.statuses, true);
    options($("filter-workflow"), page.workflows, true);
    state.total = page.total;
    fill($("executions").tBodies[0], page.executions.map((e) => [
      el("td", {}, el("button", { type: "button", class: "open", "data-id": e.id, "aria-label": "Open execution " + e.id, text: e.id })),
      e.workflow, badge(e.status), when(e.created_at), when(e.updated_at),
    ]), 5);
    const last = Math.min(page.offset + page.executions.length, page.total);
    $("page-info").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "no executions";
    $("page-prev").disabled = page.offset === 0;
    $("page-next").disabled = last >= page.total;
  }

  async function showExecution() {
    if (state.open === null) return;
    const detail = await api("durable/executions/" + encodeURIComponent(state.open) + "?" + durableParams());
    const e = detail.execution;
    $("execution").hidden = false;
    $("execution-id").textContent = e.id;
    const facts = [
      ["Workflow", e.workflow],
      ["Status", el("span", { id: "execution-status" }, badge(e.status))],
      ["Input", json(e.input)],
    ];
    if (e.status === "completed") facts.push(["Result", json(e.result)]);
    if (e.error) facts.push(["Error", el("pre", { text: e.error })]);
    if (e.waiting_for) facts.push(["Waiting for", el("code", { text: e.waiting_for })]);
    facts.push(["Attempt", String(e.attempt)], ["Created", when(e.created_at)], ["Updated", when(e.updated_at)]);
    $("execution-facts").replaceChildren(...facts.flatMap(([n, v]) => [el("dt", { text: n }), el("dd", {}, v)]));
    fill($("steps").tBodies[0], detail.steps.map((s) => [
      num(s.position === null ? "—" : s.position), el("code", { text: s.step_id }), json(s.result), when(s.completed_at),
    ]), 4);
    $("audit").replaceChildren(...detail.audit.map((a) => el("li", { class: "audit-entry" },
      el("span", { class: "when", text: when(a.at) }), " ", el("strong", { text: a.kind }),
      a.step_id ? " " : null, a.step_id ? el("code", { text: a.step_id }) : null,
      Object.keys(a.data).length ? " " + JSON.stringify(a.data) : null)));
    if (!detail.audit.length) $("audit").append(el("li", { class: "empty", text: "no audit entries" }));
    const signal = $("signal-id");
    if (!signal.value && e.waiting_for) signal.value = e.waiting_for;
    for (const id of ["send-signal", "cancel-execution"]) $(id).disabled = e.terminal;
  }

  async function act(question, path, body) {
    if (!window.confirm(question)) return;
    const message = $("durable-message");
    try {
      await api(path, { method: "POST", body: body === undefined ? {} : body });
      message.textContent = "Done: " + question.replace(/\?$/, "");
    } catch (error) {
      if (!(error instanceof Refused)) message.textContent = "Failed: " + error.message;
    }
    await refresh();
  }

  // ------------------------------------------------------------------ lanes

  function showLanes(view) {
    $("lanes").hidden = view.lanes.length === 0;
    $("lane-list").replaceChildren(...view.lanes.map((lane) => {
      const section = el("section", { class: "lane", "aria-label": "Lane " + lane.id }, el("h3", { text: lane.id }));
      if (lane.error) {
        section.append(el("p", { class: "error", text: lane.error }));
        return section;
      }
      section.append(el("dl", { class: "facts" },
        el("dt", { text: "Pending" }), el("dd", { text: lane.pending }),
        el("dt", { text: "Lag" }), el("dd", { text: lane.lag === null ? "—" : lane.lag }),
        el("dt", { text: "Oldest pending" }), el("dd", { text: lane.oldest_pending_age === null ? "—" : lane.oldest_pending_age + " s" })));
      const table = el("table", {}, el("caption", { text: "Dead letters" }),
        el("thead", {}, el("tr", {}, ...["Message", "Event", "Attempts", "Error", ""].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody"));
      fill(table.tBodies[0], lane.dead_letters.map((d) => [
        el("code", { text: d.message_id }), d.event_id, num(d.attempts), d.error || "",
        el("button", { type: "button", class: "replay", "data-lane": lane.id, "data-message": d.message_id, text: "Replay" }),
      ]), 5);
      section.append(el("div", { class: "scroll" }, table));
      return section;
    }));
  }

  // ------------------------------------------------------------------ refreshing

  async function section(name, load) {
    try {
      await load();
    } catch (error) {
      if (error instanceof Refused) throw error;
      const card = $(name);
      let note = card.querySelector(":scope > .error");
      if (!note) {
        note = el("p", { class: "error", role: "alert" });
        card.append(note);
      }
      note.textContent = "Could not load: " + error.message;
      return;
    }
    const note = $(name).querySelector(":scope > .error");
    if (note) note.remove();
  }

  async function refresh() {
    if (!sessionStorage.getItem(KEY)) return;
    try {
      // Two requests a refresh: the overview, and the durable listing (and the open
      // execution); the graph does not change while the app runs, so it is drawn once.
      await Promise.all([
        section("app", async () => {
          const overview = await api("overview");
          showApp(overview.app);
          showHealth(overview.health);
          showPrimitives(overview.primitives);
          showTasks(overview.tasks);
          showLanes(overview.lanes);
        }),
        state.graphDrawn ? null : section("graph", async () => drawGraph(await api("graph"))),
        section("durable", async () => { await showExecutions(); await showExecution(); }),
      ]);
    } catch (error) {
      return; // signed out
    }
    $("refreshed").textContent = "refreshed " + new Date().toLocaleTimeString();
  }

  // ------------------------------------------------------------------ wiring

  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, $("token").value.trim());
      $("token").value = "";
      signIn();
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    for (const id of ["filter-engine", "filter-status", "filter-workflow"]) {
      $(id).addEventListener("change", () => { state.offset = 0; refresh(); });
    }
    $("page-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); });
    $("page-next").addEventListener("click", () => { state.offset += PAGE; refresh(); });
    $("executions").addEventListener("click", (event) => {
      const button = event.target.closest("button.open");
      if (!button) return;
      state.open = button.dataset.id;
      $("signal-id").value = "";
      showExecution().catch((error) => { $("durable-message").textContent = "Failed: " + error.message; });
    });
    $("close-execution").addEventListener("click", () => { state.open = null; $("execution").hidden = true; });
    $("signal-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = $("signal-payload").value.trim();
      let payload = null;
      try {
        payload = text ? JSON.parse(text) : null;
      } catch (error) {
        $("durable-message").textContent = "The payload is not JSON: " + error.message;
        return;
      }
      const signal = $("signal-id").value.trim();
      act(`Send signal ${signal} to execution ${state.open}?`,
        "durable/executions/" + encodeURIComponent(state.open) + "/signal?" + durableParams(), { signal, payload });
    });
    $("cancel-execution").addEventListener("click", () => act(`Cancel execution ${state.open}?`,
      "durable/executions/" + encodeURIComponent(state.open) + "/cancel?" + durableParams()));
    $("recover").addEventListener("click", () => act("Recover the executions whose worker died?",
      "durable/recover?" + durableParams()));
    $("lane-list").addEventListener("click", (event) => {
      const button = event.target.closest("button.replay");
      if (!button) return;
      act(`Replay message ${button.dataset.message} of lane ${button.dataset.lane}?`,
        "lanes/" + encodeURIComponent(button.dataset.lane) + "/replay", { message_id: button.dataset.message });
    });
    if (sessionStorage.getItem(KEY)) signIn();
  });
})();
