// gastrorad serve: the page. Plain JS, no build step; every API call carries the token.
"use strict";
const API = "/api/v1";
let token = sessionStorage.getItem("gastrorad-token") || "";
let models = [];
let current = null;
let lastJob = null;

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, text = "") => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== "") e.textContent = text;
  return e;
};
const fmt = (x, d = 3) => (x === null || x === undefined ? "-" : Number(x).toFixed(d));

// "file [column], row n: reason", one problem a line
const problemText = (problems) => problems.map((p) => (p.file || "") + (p.column ? " [" + p.column + "]" : "") +
  (p.row ? ", row " + p.row : "") + ": " + p.reason).join("\n");

async function api(path, opts = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + token }, opts.headers || {});
  const r = await fetch(API + path, Object.assign({}, opts, { headers }));
  if (r.status === 401) { signOut("Your token was not accepted."); throw new Error("unauthorised"); }
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try {
      const j = await r.json();
      if (j.problems) msg = problemText(j.problems);
      else if (j.detail) msg = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail);
    } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

async function blobUrl(path) {
  const r = await api(path);
  return URL.createObjectURL(await r.blob());
}

function signOut(message) {
  token = "";
  sessionStorage.removeItem("gastrorad-token");
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

async function signIn() {
  const r = await api("/models");
  models = await r.json();
  $("login").hidden = true;
  $("app").hidden = false;
  const sel = $("model");
  sel.replaceChildren(...models.map((m) => el("option", { value: m.id }, m.title + " (" + m.id + ")")));
  showModel(models[0].id);
}

function perfTable(card, metric) {
  const rows = card.performance || [];
  if (!rows.length) return el("p", { class: "flag" }, "This bundle carries no performance figures (exported before model cards): re-export it with this gastrorad version.");
  const cohorts = [...new Set(rows.map((r) => r.cohort))];
  const names = [...new Set(rows.map((r) => r.model))];
  const t = el("table", { id: "performance" });
  const head = el("tr");
  head.append(el("th", {}, "Cohort (n)"), ...names.map((n) => el("th", {}, n + " " + metric + " (95% CI)")));
  t.append(head);
  for (const c of cohorts) {
    const tr = el("tr");
    const n = (rows.find((r) => r.cohort === c) || {}).n;
    tr.append(el("td", {}, c + " (" + n + ")"));
    for (const name of names) {
      const r = rows.find((x) => x.cohort === c && x.model === name);
      tr.append(el("td", {}, r ? fmt(r.auc_or_c) + " (" + fmt(r.lower) + "-" + fmt(r.upper) + ")" : "-"));
    }
    t.append(tr);
  }
  return t;
}

function showCard(m) {
  const c = m.card || {};
  const body = $("card-body");
  body.replaceChildren();
  const dl = el("dl");
  const add = (k, v) => { dl.append(el("dt", {}, k), el("dd", {}, v)); };
  add("Intended use", c.intended_use || "not stated in this bundle");
  add("Outcome", c.outcome || m.outcome);
  add("Phases", m.phases.join(", "));
  add("Locked cut-offs", Object.entries(m.models).map(([k, v]) => k + " " + fmt(v.cutoff)).join("; "));
  add("Bundle", m.id + ", created " + (m.created || "?") + ", gastrorad " + (m.gastrorad_version || "?"));
  add("Bundle SHA-256", m.bundle_sha256);
  body.append(dl);
  if (c.cohorts && c.cohorts.length) {
    body.append(el("h3", {}, "Cohorts"));
    body.append(el("p", {}, c.cohorts.map((x) => x.cohort + ": n=" + x.patients + " (centres " + x.centres + ")").join("; ")));
  }
  body.append(el("h3", {}, "Performance"), perfTable(c, c.metric || ""));
  if (c.tripod && c.tripod.length) {
    const det = el("details");
    det.append(el("summary", {}, "TRIPOD+AI items"));
    const t = el("table");
    for (const r of c.tripod) {
      const tr = el("tr");
      tr.append(el("td", {}, r.item), el("td", {}, r.topic), el("td", {}, r.answer || "(for the authors)"));
      t.append(tr);
    }
    det.append(t);
    body.append(det);
  }
}

function showForm(m) {
  const fs = $("clinical");
  fs.replaceChildren(el("legend", {}, "Clinical values"));
  for (const [name, spec] of Object.entries(m.clinical)) {
    const lab = el("label", {}, name + " ");
    let input;
    if (spec.type === "categorical") {
      input = el("select", { id: "v_" + name, name });
      input.append(el("option", { value: "" }, "(unknown)"));
      for (const lv of spec.levels) input.append(el("option", { value: lv }, lv));
    } else {
      input = el("input", { id: "v_" + name, name, type: "number", step: "any" });
      if (spec.unit) {
        lab.append(el("span", { class: "unit" }, "(" + spec.unit + ") "));
        input.placeholder = spec.unit;
      }
      if (spec.range) {
        lab.append(el("span", { class: "unit" }, "training range " + spec.range[0] + "-" + spec.range[1] + " "));
        input.dataset.lo = spec.range[0];
        input.dataset.hi = spec.range[1];
        input.addEventListener("input", () => flagInput(input));
      }
    }
    lab.append(input);
    fs.append(lab);
  }
  $("calculate").disabled = !m.calculator_models.length;
  $("calculate").title = m.calculator_models.length ? "" : "every model of this bundle needs the image";
  const imgs = $("image-fields");
  imgs.replaceChildren();
  for (const ph of m.phases) {
    const a = el("label", {}, ph + " CT (NIfTI or zipped DICOM) ");
    a.append(el("input", { type: "file", id: "image_" + ph, name: "image_" + ph, accept: ".nii,.gz,.nrrd,.mha,.zip" }));
    const b = el("label", {}, ph + " mask (NIfTI, SEG or RTSTRUCT) ");
    b.append(el("input", { type: "file", id: "mask_" + ph, name: "mask_" + ph, accept: ".nii,.gz,.nrrd,.mha,.dcm" }));
    const c = el("label", {}, "or box ");
    c.append(el("input", { type: "text", id: "bbox_" + ph, name: "bbox_" + ph, placeholder: "as in a manifest's bbox column" }));
    imgs.append(a, b, c);
  }
  $("images").hidden = !m.image_jobs;
}

function flagInput(input) {
  const v = parseFloat(input.value);
  const out = input.value !== "" && (v < parseFloat(input.dataset.lo) || v > parseFloat(input.dataset.hi));
  input.classList.toggle("flagged", out);
  input.title = out ? "outside the training range: the model would extrapolate" : "";
}

function showModel(id) {
  current = models.find((m) => m.id === id);
  showCard(current);
  showForm(current);
  $("result").hidden = true;
  $("error").textContent = "";
}

function values() {
  const out = {};
  for (const [name, spec] of Object.entries(current.clinical)) {
    const v = $("v_" + name).value;
    if (v === "") continue;
    out[name] = spec.type === "numeric" ? Number(v) : v;
  }
  return out;
}

async function showResult(jobId, result) {
  lastJob = jobId;
  const tb = $("result-table").querySelector("tbody");
  tb.replaceChildren();
  for (const [name, r] of Object.entries(result.models)) {
    const tr = el("tr", { "data-model": name });
    let what;
    if (r.score === null) what = "needs the image (submit an image job)";
    else if (r.probability !== undefined) what = "probability " + fmt(r.probability);
    else if (r.survival) what = Object.entries(r.survival).map(([t, s]) => t + "-" + (current.time_unit || "") + " survival " + fmt(s)).join("; ");
    else what = "linear predictor " + fmt(r.lp);
    const res = el("td", { class: "score" }, what);
    if (r.score !== null) res.dataset.score = String(r.score);
    tr.append(el("td", {}, name), res, el("td", { class: r.risk_group || "" }, r.risk_group ? r.risk_group.toUpperCase() : "-"), el("td", {}, fmt(r.cutoff)));
    tb.append(tr);
  }
  const flags = $("result-flags");
  flags.replaceChildren(...(result.flags || []).map((f) => el("p", { class: "flag" }, "\u26a0 " + f.variable + ": " + f.reason)));
  $("nomogram").src = await blobUrl("/jobs/" + jobId + "/nomogram.png").catch(() => "");
  if (result.gradcam) {
    $("gradcam").src = await blobUrl("/jobs/" + jobId + "/gradcam.png");
    $("gradcam-fig").hidden = false;
  } else {
    $("gradcam-fig").hidden = true;
  }
  $("result").hidden = false;
  $("result").dataset.job = jobId;
}

// a new request hides the last result, so it can never be read as this patient's
function clearResult() {
  $("error").textContent = "";
  $("result").hidden = true;
  lastJob = null;
}

async function doCalculate(ev) {
  ev.preventDefault();
  clearResult();
  try {
    const r = await api("/models/" + current.id + "/calculate", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ patient_id: $("patient_id").value, values: values() }),
    });
    const j = await r.json();
    await showResult(j.job_id, j);
  } catch (e) { $("error").textContent = e.message; }
}

// poll a job until it ends; the progress bar and stage text follow it
async function follow(jobId, bar, stage) {
  bar.hidden = false;
  for (;;) {
    const s = await (await api("/jobs/" + jobId)).json();
    bar.value = s.progress;
    stage.textContent = s.status + ": " + s.stage;
    if (s.status === "done" || s.status === "failed") return s;
    await new Promise((res) => setTimeout(res, 700));
  }
}

async function doBatch(ev) {
  ev.preventDefault();
  $("batch-error").textContent = "";
  $("batch-result").hidden = true;
  const fd = new FormData();
  const csv = $("batch-patients").files[0];
  const zip = $("batch-archive").files[0];
  if (!csv) { $("batch-error").textContent = "choose the patients CSV"; return; }
  fd.append("patients", csv, csv.name);
  if (zip) fd.append("archive", zip, zip.name);
  try {
    const r = await api("/models/" + current.id + "/batch", { method: "POST", body: fd });
    const { job_id } = await r.json();
    const s = await follow(job_id, $("batch-progress"), $("batch-stage"));
    if (s.status === "failed") { $("batch-error").textContent = problemText(s.problems); return; }
    $("batch-summary").textContent = s.result.patients + " patient(s) scored with " + s.result.models.length +
      " model(s): " + s.result.models.join(", ");
    $("batch-result").dataset.job = job_id;
    $("batch-result").hidden = false;
  } catch (e) { $("batch-error").textContent = e.message; }
}

async function downloadBatch() {
  const job = $("batch-result").dataset.job;
  const url = await blobUrl("/jobs/" + job + "/predictions.csv");
  const a = el("a", { href: url, download: "predictions_" + job.slice(0, 8) + ".csv" });
  document.body.append(a);
  a.click();
  a.remove();
}

async function doImages() {
  clearResult();
  const fd = new FormData();
  fd.append("patient_id", $("patient_id").value);
  fd.append("clinical", JSON.stringify(values()));
  for (const ph of current.phases) {
    for (const k of ["image_", "mask_"]) {
      const f = $(k + ph).files[0];
      if (f) fd.append(k + ph, f, f.name);
    }
    const box = $("bbox_" + ph).value.trim();
    if (box) fd.append("bbox_" + ph, box);
  }
  try {
    const r = await api("/models/" + current.id + "/jobs", { method: "POST", body: fd });
    const { job_id } = await r.json();
    const s = await follow(job_id, $("job-progress"), $("job-stage"));
    if (s.status === "done") await showResult(job_id, s.result);
    else $("error").textContent = problemText(s.problems);
  } catch (e) { $("error").textContent = e.message; }
}

async function download() {
  const url = await blobUrl("/jobs/" + lastJob + "/summary.png");
  const a = el("a", { href: url, download: "gastrorad_" + lastJob.slice(0, 8) + ".png" });
  document.body.append(a);
  a.click();
  a.remove();
}

document.addEventListener("DOMContentLoaded", async () => {
  try {
    const h = await (await fetch(API + "/health")).json();
    $("server").textContent = "gastrorad " + h.version + ", " + h.models + " model(s)";
  } catch (e) { $("server").textContent = "server not reachable"; }
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    try {
      await signIn();
      sessionStorage.setItem("gastrorad-token", token);
    } catch (e) { if (token) signOut("Sign-in failed: " + e.message); }
  });
  $("logout").addEventListener("click", () => signOut(""));
  $("model").addEventListener("change", (e) => showModel(e.target.value));
  $("patient-form").addEventListener("submit", doCalculate);
  $("submit-images").addEventListener("click", doImages);
  $("download").addEventListener("click", download);
  $("batch-form").addEventListener("submit", doBatch);
  $("batch-download").addEventListener("click", downloadBatch);
  if (token) signIn().catch(() => signOut(""));
});
