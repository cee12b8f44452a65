// medhub dashboards: session upkeep, the live feed (/ws), alert acknowledgement,
// vitals tiles and NEWS2 (the patient page's chart and prescribing: ui-patient.js).
// No library and no build step: the server renders the pages, this keeps them current.
"use strict";
(() => {
  const body = document.body;
  const PAGE = body.dataset.page || "";
  const SENT_BY_PAGE = { "X-Requested-With": "medhub" };
  const STALE_SECONDS = 120;
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  // -- session --------------------------------------------------------------------
  function toLogin() {
    location.href = "/ui/login?next=" + encodeURIComponent(location.pathname + location.search);
  }

  async function refreshSession() {
    const answer = await fetch("/ui/refresh", { method: "POST", headers: SENT_BY_PAGE });
    return answer.ok;
  }

  // fetch for the JSON API: a 401 refreshes the session once and retries.
  async function api(url, options = {}) {
    const send = () => fetch(url, { ...options, headers: { ...SENT_BY_PAGE, ...(options.headers || {}) } });
    let answer = await send();
    if (answer.status === 401 && (await refreshSession())) answer = await send();
    if (answer.status === 401) toLogin();
    return answer;
  }

  function diagnostics(outcome) {
    const issues = (outcome && outcome.issue) || [];
    return issues.map((i) => i.diagnostics || i.code).join("; ") || "the request failed";
  }

  function notice(text, link) {
    const box = $("#notices");
    if (!box) return;
    const item = document.createElement("div");
    item.className = "notice";
    const close = document.createElement("button");
    close.type = "button";
    close.textContent = "×";
    close.setAttribute("aria-label", "Dismiss");
    close.addEventListener("click", () => item.remove());
    item.append(close);
    if (link) {
      const anchor = document.createElement("a");
      anchor.href = link;
      anchor.textContent = text;
      item.append(anchor);
    } else {
      item.append(text);
    }
    box.prepend(item);
    while (box.children.length > 5) box.lastElementChild.remove();
  }

  // -- times ------------------------------------------------------------------------
  function ageText(seconds) {
    if (seconds < 5) return "now";
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    return Math.round(seconds / 3600) + " h ago";
  }

  function tickAges() {
    const now = Date.now();
    for (const el of $$("time.age[data-time], time.age-text[data-time]")) {
      if (!el.dataset.time) continue;
      const seconds = (now - Date.parse(el.dataset.time)) / 1000;
      el.textContent = ageText(Math.max(0, seconds));
      const cell = el.closest(".cell");
      if (cell) cell.classList.toggle("stale", seconds > STALE_SECONDS);
    }
  }

  function localClocks(root = document) {
    for (const el of $$("time.clock[data-time]", root)) {
      const when = Date.parse(el.dataset.time);
      if (!Number.isNaN(when)) {
        el.textContent = new Date(when).toLocaleString([], { hour: "2-digit", minute: "2-digit", day: "2-digit", month: "short", hourCycle: "h23" });
        el.title = el.dataset.time;
      }
    }
  }

  // -- tiles --------------------------------------------------------------------------
  // The same cells and rules as medhub/api/ui_census.py tile_cells().
  const CELLS = [
    ["hr", ["heart-rate", "pulse-rate"]],
    ["spo2", ["oxygen-saturation"]],
    ["rr", ["respiratory-rate"]],
    ["bp", ["systolic-blood-pressure", "diastolic-blood-pressure"]],
    ["temp", ["body-temperature"]],
  ];
  const CELL_OF = { "mean-blood-pressure": "bp" };
  for (const [key, vitals] of CELLS) for (const vital of vitals) CELL_OF[vital] = key;
  const RANK = { high: 3, medium: 2, low: 1 };
  const latest = new Map(); // patient -> {vital: reading}

  const number = (vital, value) => (vital === "body-temperature" ? value.toFixed(1) : value.toFixed(0));

  function applyVitals(patient, vitals) {
    const tiles = $$(`.tile[data-patient="${CSS.escape(patient)}"]`);
    if (!tiles.length) return false;
    const merged = { ...(latest.get(patient) || {}), ...vitals };
    latest.set(patient, merged);
    for (const [key, names] of CELLS) {
      let text = null;
      let time = null;
      if (key === "bp") {
        const [sys, dia] = names.some((n) => vitals[n]) ? names.map((n) => merged[n]) : [null, null];
        if (sys) {
          text = number(names[0], sys.value) + (dia ? "/" + number(names[1], dia.value) : "");
          time = sys.time;
        }
      } else {
        const name = names.find((n) => vitals[n]);
        const ecg = merged["heart-rate"];
        const ecgFresh = ecg && Date.now() - Date.parse(ecg.time) < 30000;
        if (name && !(name === "pulse-rate" && ecgFresh)) {
          text = number(names[0], vitals[name].value);
          time = vitals[name].time;
        }
      }
      if (text === null) continue;
      for (const tile of tiles) {
        const cell = $(`[data-cell="${key}"]`, tile);
        if (!cell) continue;
        $(".value", cell).textContent = text;
        $(".age", cell).dataset.time = time;
        cell.classList.remove("flash");
        void cell.offsetWidth; // restart the animation
        cell.classList.add("flash");
      }
    }
    tickAges();
    return true;
  }

  // -- alerts ---------------------------------------------------------------------------
  const openAlerts = new Map(); // alert id -> {patient, vital, severity, state}

  function alertText(a) {
    if (a.text) return a.text;
    const vital = (a.vital || "").replaceAll("-", " ");
    const condition = (a.condition || "").replaceAll("_", " ");
    if (a.value === null || a.value === undefined) return `${vital}: ${condition}`;
    const limit = typeof a.limit === "number" ? ` (limit ${a.limit})` : "";
    return `${vital} ${condition}: ${a.value} ${a.unit || ""}${limit}`;
  }

  function recolour(patient) {
    const worst = {};
    for (const a of openAlerts.values()) {
      const key = CELL_OF[a.vital];
      if (a.patient !== patient || !key) continue;
      if ((RANK[a.severity] || 0) > (RANK[worst[key]] || 0)) worst[key] = a.severity;
    }
    for (const tile of $$(`.tile[data-patient="${CSS.escape(patient)}"]`)) {
      for (const cell of $$(".cell", tile)) {
        cell.classList.remove("alarm-high", "alarm-medium", "alarm-low");
        const severity = worst[cell.dataset.cell];
        if (severity) cell.classList.add("alarm-" + severity);
      }
    }
    for (const count of $$(`[data-alerts-of="${CSS.escape(patient)}"]`)) {
      const n = [...openAlerts.values()].filter((a) => a.patient === patient).length;
      count.textContent = n ? String(n) : "";
    }
  }

  function updateCount() {
    const list = $("#alert-list");
    if (!list) return;
    const n = list.children.length;
    if ($("#alert-count")) $("#alert-count").textContent = String(n);
    if ($("#no-alerts")) $("#no-alerts").hidden = n > 0;
  }

  function alertItem(a) {
    const tile = a.patient ? $(`.tile[data-patient="${CSS.escape(a.patient)}"]`) : null;
    const li = document.createElement("li");
    li.dataset.alert = a.alert_id;
    const who = a.patient ? document.createElement("a") : document.createElement("span");
    if (a.patient) who.href = "/ui/patients/" + encodeURIComponent(a.patient);
    who.className = "who";
    who.textContent = tile ? `${tile.dataset.bed} ${tile.dataset.name}` : a.patient || "unbound device";
    const parts = [["span", "sev"], ["span", "what"], null, ["time", "clock"], ["span", "state"]];
    for (const part of parts) {
      if (part === null) { li.append(who); continue; }
      const el = document.createElement(part[0]);
      el.className = part[1];
      li.append(el);
    }
    if ($("#alert-list").dataset.ack === "1") {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "ack";
      button.textContent = "Acknowledge";
      li.append(button);
    }
    return li;
  }

  function upsertAlert(a) {
    const list = $("#alert-list");
    const patientPage = $("[data-patient-page]");
    if (patientPage && a.patient !== patientPage.dataset.patientPage) return;
    if (a.state === "resolved") {
      openAlerts.delete(a.alert_id);
      const gone = list && $(`[data-alert="${CSS.escape(a.alert_id)}"]`, list);
      if (gone) gone.remove();
    } else {
      openAlerts.set(a.alert_id, { patient: a.patient, vital: a.vital, severity: a.severity, state: a.state });
      if (list) {
        let li = $(`[data-alert="${CSS.escape(a.alert_id)}"]`, list);
        if (!li) {
          li = alertItem(a);
          list.prepend(li);
        }
        li.className = "alert sev-" + a.severity;
        Object.assign(li.dataset, { patient: a.patient || "", vital: a.vital, severity: a.severity, state: a.state });
        $(".sev", li).textContent = a.severity;
        $(".what", li).textContent = alertText(a);
        const clock = $(".clock", li);
        clock.dataset.time = a.raised_at;
        localClocks(li);
        $(".state", li).textContent = a.state + (a.acknowledged_by ? " by " + a.acknowledged_by : "");
        const ack = $(".ack", li);
        if (ack) ack.hidden = a.state === "acknowledged";
      }
    }
    if (a.patient) recolour(a.patient);
    updateCount();
  }

  function initAlerts() {
    for (const li of $$("#alert-list > li")) {
      const d = li.dataset;
      openAlerts.set(d.alert, { patient: d.patient, vital: d.vital, severity: d.severity, state: d.state });
    }
    const list = $("#alert-list");
    if (!list) return;
    list.addEventListener("click", async (event) => {
      const button = event.target.closest("button.ack");
      if (!button) return;
      const id = button.closest("li").dataset.alert;
      button.disabled = true;
      const answer = await api(`/api/v1/alerts/${encodeURIComponent(id)}/acknowledge`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ by: body.dataset.by || "dashboard" }),
      });
      button.disabled = false;
      if (answer.ok) upsertAlert(await answer.json());
      else notice("Could not acknowledge: " + diagnostics(await answer.json().catch(() => null)));
    });
  }

  // -- the live feed ---------------------------------------------------------------------
  let retry = 1000;
  function setStatus(state, text) {
    const el = $("#live-status");
    if (el) { el.dataset.state = state; el.textContent = text; }
  }

  function onEvent(message) {
    if (message.type === "hello") {
      retry = 1000;
      if (message.live === false) setStatus("lost", "not live: the server's live feed is down");
      else setStatus("live", "live");
    } else if (message.type === "feed.state") {
      // The server lost (or regained) the feed that brings other servers' vitals and alerts.
      if (message.live) setStatus("live", "live");
      else setStatus("lost", "not live: " + message.text);
    } else if (message.type === "vitals.update") {
      const shown = applyVitals(message.patient, message.vitals);
      const banner = $("#census-changed");
      if (!shown && banner) banner.hidden = false;
    } else if (message.type.startsWith("alert.")) {
      upsertAlert(message.alert);
    } else if (message.type === "notification.new") {
      const n = message.notification;
      notice(n.text, message.patient ? "/ui/patients/" + encodeURIComponent(message.patient) : null);
      const banner = $("#orders-changed");
      if (banner && n.topic.startsWith("prescription.")) banner.hidden = false;
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws");
    socket.addEventListener("message", (event) => onEvent(JSON.parse(event.data)));
    socket.addEventListener("close", async (event) => {
      if (event.code === 4403) { setStatus("lost", "not live: " + (event.reason || "not allowed")); return; }
      setStatus("lost", "reconnecting…");
      if (event.code === 4401 && !(await refreshSession())) { toLogin(); return; }
      setTimeout(connect, event.code === 4401 ? 0 : retry);
      retry = Math.min(retry * 2, 30000);
    });
  }

  // -- NEWS2 -----------------------------------------------------------------------------
  // GET /api/v1/patients/{id}/news2: {score, band, complete, missing, stale, response}.
  function news2Of(answer) {
    const total = typeof answer.score === "number" ? answer.score : answer.total;
    if (typeof total !== "number") return null;
    const missing = (answer.missing || []).concat(answer.stale || []);
    const action = answer.response ? answer.response.action || answer.response.urgency : "";
    return { total, risk: answer.band || answer.risk || "", missing, complete: answer.complete !== false, action };
  }

  async function showNews2(el) {
    const answer = await fetch(`/api/v1/patients/${encodeURIComponent(el.dataset.news2)}/news2`).catch(() => null);
    const score = answer && answer.ok ? news2Of(await answer.json()) : null;
    el.className = el.className.replace(/\brisk-\S+/g, "").trim();
    el.textContent = score ? String(score.total) + (score.complete ? "" : "*") : "n/a";
    el.title = score
      ? `NEWS2 ${score.total}, ${score.risk} risk` + (score.complete ? "" : " (* not every parameter was measured)")
      : "NEWS2 not available";
    if (score && score.risk) el.classList.add("risk-" + score.risk);
    const detail = $("#news2-detail");
    if (detail && el.classList.contains("big")) {
      detail.textContent = score
        ? `${score.risk} risk` +
          (score.complete ? "" : ` (incomplete: ${score.missing.join(", ").replaceAll("_", " ")})`) +
          (score.action ? `. ${score.action}` : "")
        : "not available";
    }
  }

  const loadNews2 = () => Promise.all($$("[data-news2]").map(showNews2));

  // -- login and logout ----------------------------------------------------------------------
  function initLogin() {
    const form = $("#login-form");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const answer = await fetch("/ui/login", {
        method: "POST",
        headers: { ...SENT_BY_PAGE, "Content-Type": "application/json" },
        body: JSON.stringify({
          username: data.get("username"),
          password: data.get("password"),
          totp: data.get("totp") || null,
          next: form.dataset.next || null,
        }),
      });
      const result = await answer.json().catch(() => null);
      if (answer.ok) { location.href = result.location; return; }
      const error = $("#login-error");
      error.textContent = diagnostics(result);
      error.hidden = false;
    });
  }

  function initSession() {
    const logout = $("#logout");
    if (logout) {
      logout.addEventListener("click", async () => {
        const answer = await fetch("/ui/logout", { method: "POST", headers: SENT_BY_PAGE });
        location.href = answer.ok ? (await answer.json()).location : "/ui/login";
      });
    }
    const ttl = Number(body.dataset.sessionTtl || 0);
    if (ttl > 0) setInterval(async () => { if (!(await refreshSession())) toLogin(); }, Math.max(20, ttl * 0.6) * 1000);
  }

  // -- start ------------------------------------------------------------------------------
  // What the page-specific scripts (ui-patient.js) use.
  window.medhub = { $, $$, api, diagnostics };
  if (PAGE === "login") { initLogin(); return; }
  initSession();
  initAlerts();
  localClocks();
  tickAges();
  setInterval(tickAges, 1000);
  if ($("[data-news2]")) { loadNews2(); setInterval(loadNews2, 60000); }
  if (body.dataset.live === "1") connect();
})();
