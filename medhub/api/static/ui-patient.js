// medhub patient page: the vitals chart (inline SVG from /api/v1/patients/{id}/vitals
// aggregates, no chart library) and the prescribing form (POST /fhir/MedicationRequest,
// the safety check's findings shown, a 409 overridden with a reason). Uses ui.js.
"use strict";
(() => {
  const { $, $$, api, diagnostics } = window.medhub;
  const SVG = "http://www.w3.org/2000/svg";

  // -- the chart ---------------------------------------------------------------------------
  function svgEl(name, attributes) {
    const el = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
    return el;
  }

  function drawChart(figure, buckets, since, until, bucketSeconds) {
    figure.replaceChildren();
    const caption = document.createElement("figcaption");
    const label = document.createElement("span");
    label.textContent = figure.dataset.label;
    const range = document.createElement("span");
    caption.append(label, range);
    figure.append(caption);
    if (!buckets.length) {
      const empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = "No readings in this window.";
      figure.append(empty);
      return;
    }
    const W = 1000, H = 200, pad = 8;
    let low = Math.min(...buckets.map((b) => b.min));
    let high = Math.max(...buckets.map((b) => b.max));
    if (high - low < 1) { high += 0.5; low -= 0.5; }
    range.textContent = `${low.toFixed(figure.dataset.chart === "body-temperature" ? 1 : 0)}–${high.toFixed(figure.dataset.chart === "body-temperature" ? 1 : 0)}`;
    const x = (t) => ((t - since) / (until - since)) * W;
    const y = (v) => pad + (1 - (v - low) / (high - low)) * (H - 2 * pad);
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": figure.dataset.label });
    for (const v of [low, (low + high) / 2, high]) svg.append(svgEl("line", { class: "grid-line", x1: 0, x2: W, y1: y(v), y2: y(v) }));
    // Split where readings are missing for more than two buckets: a gap is drawn as a gap.
    const runs = [];
    let run = [];
    for (const b of buckets) {
      const t = Date.parse(b.start) + (b.seconds * 1000) / 2;
      if (run.length && t - run[run.length - 1].t > 2 * bucketSeconds * 1000) { runs.push(run); run = []; }
      run.push({ t, mean: b.mean, min: b.min, max: b.max });
    }
    runs.push(run);
    for (const points of runs) {
      if (points.length === 1) { // an isolated reading (a cuff pressure every 15 min): a dot
        const [p] = points;
        svg.append(svgEl("line", { class: "point", x1: x(p.t), x2: x(p.t) + 0.01, y1: y(p.mean), y2: y(p.mean) }));
        continue;
      }
      const upper = points.map((p) => `${x(p.t)},${y(p.max)}`);
      const lower = points.slice().reverse().map((p) => `${x(p.t)},${y(p.min)}`);
      svg.append(svgEl("polygon", { class: "band", points: upper.concat(lower).join(" ") }));
      svg.append(svgEl("polyline", { class: "mean", points: points.map((p) => `${x(p.t)},${y(p.mean)}`).join(" ") }));
    }
    figure.append(svg);
    const axis = document.createElement("figcaption");
    const fmt = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    for (const t of [since, (since + until) / 2, until]) {
      const tick = document.createElement("span");
      tick.textContent = fmt(t);
      axis.append(tick);
    }
    figure.append(axis);
  }

  async function loadCharts(windowSeconds, bucketSeconds) {
    const box = $("#charts");
    const until = Date.now();
    const since = until - windowSeconds * 1000;
    const iso = (t) => new Date(t).toISOString();
    for (const figure of $$("figure[data-chart]", box)) {
      let buckets = [];
      for (const vital of [figure.dataset.chart, figure.dataset.alt].filter(Boolean)) {
        const query = new URLSearchParams({ vital, bucket: String(bucketSeconds), since: iso(since), until: iso(until) });
        const answer = await api(`/api/v1/patients/${encodeURIComponent(box.dataset.patient)}/vitals?${query}`);
        buckets = answer.ok ? (await answer.json()).buckets || [] : [];
        if (buckets.length) break;
      }
      drawChart(figure, buckets, since, until, bucketSeconds);
    }
  }

  function initCharts() {
    if (!$("#charts")) return;
    let current = $(".windows button[aria-pressed='true']");
    const load = () => loadCharts(Number(current.dataset.window), Number(current.dataset.bucket));
    for (const button of $$(".windows button")) {
      button.addEventListener("click", () => {
        for (const other of $$(".windows button")) other.setAttribute("aria-pressed", String(other === button));
        current = button;
        load();
      });
    }
    load();
    setInterval(load, 60000);
  }

  // -- prescribing ---------------------------------------------------------------------------
  const OVERRIDE = "https://medhub.dev/fhir/StructureDefinition/medication-safety-override";

  function prescription(form) {
    const data = new FormData(form);
    const head = $("[data-patient-page]");
    const dose = Number(data.get("dose"));
    const unit = String(data.get("unit"));
    const route = String(data.get("route"));
    const frequency = Number(data.get("frequency"));
    const request = {
      resourceType: "MedicationRequest",
      status: "active",
      intent: "order",
      medicationCodeableConcept: { text: String(data.get("medication")).trim() },
      subject: { reference: "Patient/" + form.dataset.patient },
      authoredOn: new Date().toISOString(),
      dosageInstruction: [{
        text: `${dose} ${unit} ${route}, ${frequency} times a day`,
        route: { text: route },
        timing: { repeat: { frequency, period: 1, periodUnit: "d" } },
        doseAndRate: [{ doseQuantity: { value: dose, unit, system: "http://unitsofmeasure.org", code: unit } }],
      }],
    };
    if (head && head.dataset.practitioner) request.requester = { reference: head.dataset.practitioner };
    const reason = String(data.get("reason") || "").trim();
    if (reason) request.extension = [{ url: OVERRIDE, extension: [{ url: "reason", valueString: reason }] }];
    return request;
  }

  function showFindings(box, heading, className, outcome) {
    box.replaceChildren();
    const title = document.createElement("p");
    title.className = className;
    title.textContent = heading;
    box.append(title);
    for (const issue of (outcome && outcome.issue) || []) {
      const item = document.createElement("div");
      const severity = issue.severity === "error" || issue.severity === "fatal" ? "high" : issue.severity === "warning" ? "moderate" : "low";
      item.className = "issue sev-" + severity;
      const sev = document.createElement("span");
      sev.className = "sev";
      sev.textContent = issue.severity;
      const detail = document.createElement("span");
      detail.className = "detail";
      detail.textContent = issue.diagnostics || issue.code;
      item.append(sev, detail);
      box.append(item);
    }
  }

  async function reloadOrders() {
    const page = await fetch(location.href);
    if (!page.ok) return;
    const fresh = new DOMParser().parseFromString(await page.text(), "text/html");
    const orders = $("#orders", fresh);
    if (orders) $("#orders").replaceWith(orders);
  }

  function initPrescribe() {
    const form = $("#prescribe");
    if (!form) return;
    const box = $("#prescribe-result");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = $("button[type=submit]", form);
      button.disabled = true;
      const answer = await api("/fhir/MedicationRequest", {
        method: "POST",
        headers: { "Content-Type": "application/fhir+json", Prefer: "return=OperationOutcome" },
        body: JSON.stringify(prescription(form)),
      });
      button.disabled = false;
      const outcome = await answer.json().catch(() => null);
      const override = $(".override", form);
      if (answer.status === 201) {
        const warnings = answer.headers.get("X-Medhub-Warnings") || "0";
        showFindings(box, `Prescribed (${warnings} warning${warnings === "1" ? "" : "s"}).`, "ok", outcome);
        form.reset();
        override.hidden = true;
        button.textContent = "Check and prescribe";
        reloadOrders();
      } else if (answer.status === 409) {
        showFindings(box, "Not prescribed: the safety check found a problem. Give a reason to override.", "refused", outcome);
        override.hidden = false;
        $("textarea", override).required = true;
        button.textContent = "Prescribe anyway";
      } else {
        showFindings(box, "Not prescribed: " + diagnostics(outcome), "refused", null);
      }
    });
  }

  initCharts();
  initPrescribe();
})();
