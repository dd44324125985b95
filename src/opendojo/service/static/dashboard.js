// The dashboard's only script: live parts refresh from server-rendered (server-escaped) fragments, the
// loss curves are drawn as SVG from the metrics JSON, and a chosen config file is read into the form.
"use strict";

const FINAL = ["succeeded", "failed", "cancelled"];
const PERIOD_MS = 1500;

function refreshFragments() {
  document.querySelectorAll("[data-refresh]").forEach(async (box) => {
    if (box.dataset.done) return;
    const r = await fetch(box.dataset.refresh, { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) { window.location.assign("/signin"); return; }
    if (!r.ok) return;
    box.innerHTML = await r.text();
    const state = box.querySelector("#job-state");
    if (state && FINAL.includes(state.textContent.trim())) box.dataset.done = "1";
  });
}

function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

// One chart: the points' ``key`` against step, in an SVG of 640 x 200 user units.
function drawChart(area, points, key, maxStep, kind, title) {
  const W = 640, H = 200, pad = 40;
  area.replaceChildren();
  if (!points.length) return 0;
  const values = points.map((r) => r[key]);
  const lo = Math.min(...values), hi = Math.max(...values);
  const x = (s) => pad + (W - 2 * pad) * s / Math.max(1, maxStep);
  const y = (v) => H - pad - (H - 2 * pad) * (hi > lo ? (v - lo) / (hi - lo) : 0.5);
  area.append(svg("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, class: "axis" }));
  area.append(svg("line", { x1: pad, y1: pad, x2: pad, y2: H - pad, class: "axis" }));
  const label = (text, attrs) => { const t = svg("text", attrs); t.textContent = text; area.append(t); };
  label(hi.toPrecision(3), { x: 2, y: pad + 4 });
  label(lo.toPrecision(3), { x: 2, y: H - pad });
  label(`step ${maxStep}`, { x: W - pad - 50, y: H - pad + 20 });
  label(title, { x: pad + 8, y: 16, class: "title" });
  const path = points.map((r) => `${x(r.step).toFixed(1)},${y(r[key]).toFixed(1)}`).join(" ");
  area.append(svg("polyline", { points: path, class: `curve curve-${kind}`, "data-points": points.length }));
  points.forEach((r) => area.append(svg("circle", { cx: x(r.step), cy: y(r[key]), r: 2.5, class: `dot-${kind}` })));
  return points.length;
}

function drawCurves(figure, data) {
  const ok = (kind, key) => data.records.filter((r) => r.kind === kind && typeof r[key] === "number");
  const train = ok("train", "loss"), evals = ok("eval", "occupancy_iou");
  const maxStep = Math.max(data.steps, ...data.records.map((r) => r.step));
  return drawChart(figure.querySelector("#curve-svg"), train, "loss", maxStep, "train", "training loss") +
    drawChart(figure.querySelector("#eval-svg"), evals, "occupancy_iou", maxStep, "eval",
      "eval occupancy IoU");
}

async function refreshCurves() {
  const figure = document.getElementById("curves");
  if (!figure || figure.dataset.done) return;
  const r = await fetch(figure.dataset.metrics, { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401) { window.location.assign("/signin"); return; }
  if (!r.ok) return;
  const data = await r.json();
  const n = drawCurves(figure, data);
  figure.dataset.points = n;
  const last = data.records.filter((rec) => rec.kind === "train").pop();
  document.getElementById("curve-caption").textContent = n
    ? `${n} points; last training loss ${last ? last.loss.toPrecision(4) : "-"} at step ${last ? last.step : "-"} (${data.state})`
    : `waiting for the first metrics… (${data.state})`;
  if (FINAL.includes(data.state)) figure.dataset.done = "1";
}

function readConfigFile() {
  const input = document.getElementById("config_file");
  if (!input) return;
  input.addEventListener("change", () => {
    const file = input.files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => { document.getElementById("config_text").value = reader.result; };
    reader.readAsText(file);
  });
}

function tick() {
  refreshFragments();
  refreshCurves();
}

document.addEventListener("DOMContentLoaded", () => {
  readConfigFile();
  refreshCurves();
  if (document.querySelector("[data-refresh], #curves")) setInterval(tick, PERIOD_MS);
});
