// hires studio: the page's few states, kept here; every number it shows comes from the server's API
// (docs/serve.md).  No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const withToken = (url) => token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
const state = { content: null, previewContent: null, builtin: null, style: null, job: null, previewSeq: 0 };
const PREVIEW_SIDE = 1024;

// a request the server never answered (it restarted, the machine was busy, the network dropped):
// a read is tried again a few times; a change (POST, DELETE) is not resent, and says what to do
const NOT_ANSWERED = "the studio did not answer; is `hires serve` still running? Try again";

async function api(path, options = {}) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const reads = !options.method || options.method === "GET";
  let response = null;
  for (let attempt = 0; response === null; attempt++) {
    try {
      response = await fetch(path, { ...options, headers });
    } catch (e) {
      if (!reads || attempt >= 3) throw new Error(NOT_ANSWERED);
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
    }
  }
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function say(id, text, isError = false) {
  $(id).textContent = text;
  $(id).classList.toggle("error", isError);
}

async function upload(field, blob, name) {
  const form = new FormData();
  form.append(field, blob, name);
  const [kept] = await (await api("/api/uploads", { method: "POST", body: form })).json();
  return kept;
}

// the photo: its original kept for the print, a copy at most PREVIEW_SIDE px for the previews
async function downscaled(file) {
  const bitmap = await createImageBitmap(file);
  const s = Math.min(1, PREVIEW_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * s));
  canvas.height = Math.max(1, Math.round(bitmap.height * s));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
}

async function choosePhoto(file) {
  say("photo-note", "reading " + file.name + "…");
  try {
    const small = await downscaled(file);
    state.previewContent = (await upload("content", small, "preview.jpg")).upload;
    const kept = await upload("content", file, file.name);
    state.content = kept.upload;
    say("photo-note", `${file.name}: ${kept.width}x${kept.height} px`);
    $("size").value = `${kept.width}x${kept.height}`;
  } catch (e) {
    state.content = state.previewContent = null;
    say("photo-note", e.message, true);
  }
  changed();
}

async function chooseStyle(file) {
  say("style-note", "reading " + file.name + "…");
  try {
    state.style = (await upload("style", file, file.name)).upload;
    state.builtin = null;
    markBuiltin(null);
    say("style-note", file.name);
  } catch (e) {
    say("style-note", e.message, true);
  }
  changed();
}

function markBuiltin(index) {
  // a built-in style has no code of the photo's own style to blend toward: strength is for paintings
  $("strength").disabled = index !== null;
  for (const b of document.querySelectorAll(".builtins button")) {
    b.classList.toggle("chosen", Number(b.dataset.index) === index);
  }
}

async function loadBuiltins() {
  const styles = await (await api("/api/styles")).json();
  for (const s of styles) {
    const b = document.createElement("button");
    b.dataset.index = s.index;
    b.title = "built-in style " + s.index;
    b.innerHTML = `<img alt="style ${s.index}" src="${withToken(s.thumb)}">`;
    b.onclick = () => { state.builtin = s.index; state.style = null; markBuiltin(s.index); say("style-note", b.title); changed(); };
    $("builtins").append(b);
  }
}

function styleFields(form) {
  if (state.style) form.append("style_upload", state.style);
  else if (state.builtin !== null) form.append("builtin_style", String(state.builtin));
}

let previewTimer = null;
function changed() {
  $("render").disabled = !(state.content && (state.style || state.builtin !== null));
  clearTimeout(previewTimer);
  previewTimer = setTimeout(() => { preview(); plan(); }, 150);
}

async function preview() {
  if (!state.previewContent || (!state.style && state.builtin === null)) return;
  const seq = ++state.previewSeq;
  const form = new FormData();
  form.append("content_upload", state.previewContent);
  styleFields(form);
  if (state.style) form.append("strength", $("strength").value);
  say("preview-status", "painting…");
  const t0 = performance.now();
  try {
    const blob = await (await api("/api/preview", { method: "POST", body: form })).blob();
    if (seq !== state.previewSeq) return;   // a newer preview was asked for
    URL.revokeObjectURL($("preview").src);
    $("preview").src = URL.createObjectURL(blob);
    const at = state.style ? `strength ${Number($("strength").value).toFixed(2)}` : `built-in style ${state.builtin}`;
    say("preview-status", `preview at ${at}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    if (seq === state.previewSeq) say("preview-status", e.message, true);
  }
}

function renderForm() {
  const form = new FormData();
  form.append("content_upload", state.content);
  styleFields(form);
  const method = $("method").value;
  form.append("method", method);
  if (method === "fast" && state.style) form.append("strength", $("strength").value);
  if (method !== "fast") form.append("preset", $("preset").value);
  for (const id of ["size", "dpi", "format", "bit-depth"]) form.append(id, $(id).value);
  return form;
}

const gib = (b) => (b / 2 ** 30).toFixed(2) + " GiB";
const minutes = (s) => s < 90 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} min`;

async function plan() {
  if ($("render").disabled) return;
  say("plan", "planning…");
  try {
    const p = await (await api("/api/plan", { method: "POST", body: renderForm() })).json();
    const tiles = p.tiles !== undefined ? `${p.tiles} tile(s)` : `${p.levels.length} level(s)`;
    const time = p.est_seconds ? `, about ${minutes(p.est_seconds)}` : "";
    say("plan", `${p.width}x${p.height} px, ${tiles}, peak ${gib(p.peak_bytes)} of ${gib(p.memory_budget_bytes)}${time}`);
  } catch (e) {
    say("plan", e.message, true);
  }
}

async function render() {
  $("render").disabled = true;
  try {
    const { id } = await (await api("/api/jobs", { method: "POST", body: renderForm() })).json();
    state.job = id;
    $("live").hidden = false;
    $("cancel").hidden = false;
    $("download").hidden = true;
    $("live-image").removeAttribute("src");
    say("progress", "queued");
  } catch (e) {
    say("plan", e.message, true);
  }
  $("render").disabled = false;
}

function showProgress(job) {
  const p = job.progress || {};
  const where = p.level !== undefined ? `level ${p.level + 1}/${p.n_levels} ${p.width}x${p.height}` : "";
  const tile = p.n_tiles ? `, tile ${p.tile || 0}/${p.n_tiles}` : "";
  const eta = p.eta_s ? `, ETA ${minutes(p.eta_s)}` : "";
  const text = job.status === "failed" ? job.message : `${job.status}${where ? ": " + where + tile : ""}${eta}`;
  say("progress", text, job.status === "failed");
  $("bar").value = job.status === "done" ? 1 : (p.done || 0);
  if (job.snapshot && job.snapshot !== state.shownSnapshot) {
    state.shownSnapshot = job.snapshot;
    $("live-image").src = withToken(`/api/jobs/${job.id}/preview?s=${encodeURIComponent(job.snapshot)}`);
  }
  if (job.status === "done") {
    $("download").href = withToken(`/api/jobs/${job.id}/result`);
    $("download").textContent = "Download " + job.output;
    $("download").hidden = false;
    if (!job.snapshot) $("live-image").src = withToken(`/api/jobs/${job.id}/result`);
  }
  $("cancel").hidden = !["queued", "running"].includes(job.status);
}

function listJob(job) {
  let row = document.querySelector(`tr[data-id="${job.id}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.id = job.id;
    $("jobs").querySelector("tbody").prepend(row);
  }
  const u = job.used || {};
  const style = u.styles && u.styles.length ? u.styles.join(", ") : `built-in ${u.builtin_style}`;
  const link = job.status === "done" ? `<a href="${withToken(`/api/jobs/${job.id}/result`)}">${job.output}</a>` : "";
  row.innerHTML = `<td>${job.id.slice(0, 6)}</td><td>${job.status}</td><td></td><td>${link}</td>`;
  row.children[2].textContent = `${u.content} · ${style} · ${u.method || "optimise"} · ${u.size || ""}`;
}

function listen() {
  // the browser reconnects a dropped stream by itself; what happened meanwhile is read afresh
  const events = new EventSource(withToken("/api/events"));
  events.onmessage = (message) => {
    const job = JSON.parse(message.data);
    listJob(job);
    if (job.id === state.job) showProgress(job);
  };
  events.onopen = () => resync().catch(() => {});
  events.onerror = () => {
    if (state.job) say("progress", "lost touch with the studio; reconnecting…", true);
  };
}

async function resync() {
  await loadJobs();
  if (state.job) showProgress(await (await api(`/api/jobs/${state.job}`)).json());
}

async function loadJobs() {
  for (const job of await (await api("/api/jobs")).json()) listJob(job);
}

function wire() {
  const drop = $("drop");
  $("photo-input").onchange = (e) => e.target.files[0] && choosePhoto(e.target.files[0]);
  $("style-input").onchange = (e) => e.target.files[0] && chooseStyle(e.target.files[0]);
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) choosePhoto(e.dataTransfer.files[0]); };
  $("strength").oninput = () => { $("strength-value").textContent = Number($("strength").value).toFixed(2); changed(); };
  let planTimer = null;
  const replan = () => { clearTimeout(planTimer); planTimer = setTimeout(plan, 300); };
  for (const id of ["size", "dpi"]) $(id).oninput = replan;
  for (const id of ["method", "preset", "format", "bit-depth"]) $(id).onchange = replan;
  $("render").onclick = render;
  $("cancel").onclick = () => state.job && api(`/api/jobs/${state.job}`, { method: "DELETE" });
}

wire();
loadBuiltins().catch((e) => say("style-note", e.message, true));
loadJobs().catch(() => {});
listen();
