// crres serve operator page: plain JS, no build step. Talks to the REST API with the key from the header field.
"use strict";

const $ = (sel) => document.querySelector(sel);
const keyInput = $("#api-key");
keyInput.value = localStorage.getItem("crres-api-key") || "";
keyInput.addEventListener("change", () => { localStorage.setItem("crres-api-key", keyInput.value); refreshAll(); });

let config = null;
let lastEvent = 0;
const events = [];

function headers() {
  const k = keyInput.value.trim();
  return k ? { "X-Api-Key": k } : {};
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!res.ok) {
    let message = res.status + " " + res.statusText;
    try { const body = await res.json(); message = (body.error && body.error.message) || body.message || message; }
    catch (e) { /* not JSON */ }
    const err = new Error(message); err.status = res.status; throw err;
  }
  const type = res.headers.get("content-type") || "";
  return type.includes("application/json") ? res.json() : res.blob();
}

function setStatus(text, cls) { const s = $("#status"); s.textContent = text; s.className = cls || "muted"; }

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const fmt = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
const clock = (t) => new Date(t * 1000).toLocaleTimeString();

// ------------------------------------------------------------------------------------------------ live view
const liveUrls = {};
async function refreshCameras() {
  const cams = await api("/api/cameras");
  const box = $("#cameras");
  for (const c of cams) {
    let card = document.getElementById("cam-" + c.name);
    if (!card) {
      card = el("div", { class: "camera", id: "cam-" + c.name },
        el("img", { alt: c.name, id: "live-" + c.name }),
        el("div", { class: "title" }), el("div", { class: "faces" }));
      box.append(card);
    }
    card.querySelector(".title").innerHTML = "";
    card.querySelector(".title").append(el("b", {}, c.name), " ",
      el("span", { class: "state-" + c.state }, c.state), ` ${fmt(c.processed_fps, 1)} fps processed, ` +
      `${fmt(c.input_fps, 1)} fps in` + (c.error ? ` — ${c.error}` : ""));
    const faces = card.querySelector(".faces");
    faces.textContent = c.live_faces.map((f) => `#${f.track_id} ${f.label} ${fmt(f.score)} r=${fmt(f.probe_resolution, 0)}px`).join(" · ");
    if (c.last_frame_at) {
      try {
        const blob = await api(`/api/cameras/${encodeURIComponent(c.name)}/frame.jpg`);
        const url = URL.createObjectURL(blob);
        const img = card.querySelector("img");
        img.onload = () => { if (liveUrls[c.name]) URL.revokeObjectURL(liveUrls[c.name]); liveUrls[c.name] = url; };
        img.src = url;
      } catch (e) { /* no frame yet */ }
    }
  }
}

// --------------------------------------------------------------------------------------------------- events
async function refreshEvents() {
  const fresh = await api(`/api/events?after=${lastEvent}&limit=200`);
  for (const ev of fresh) { events.unshift(ev); lastEvent = Math.max(lastEvent, ev.id); }
  events.splice(100);
  const body = $("#events tbody");
  body.innerHTML = "";
  for (const ev of events) {
    const face = ev.snapshot ? el("img", { src: "data:image/jpeg;base64," + ev.snapshot, alt: "face" }) : "";
    body.append(el("tr", { class: "event", "data-label": ev.label, "data-event": ev.event },
      el("td", {}, clock(ev.captured_at)), el("td", {}, ev.camera), el("td", {}, "#" + ev.track_id),
      el("td", {}, ev.event), el("td", { class: ev.identity ? "ok" : "" }, ev.label),
      el("td", {}, `${fmt(ev.score)} / ${fmt(ev.threshold)}`), el("td", {}, fmt(ev.probe_resolution, 0) + " px"),
      el("td", {}, face)));
  }
}

// -------------------------------------------------------------------------------------------------- gallery
async function refreshGallery() {
  const q = $("#gallery-search").value.trim();
  const list = await api("/api/identities" + (q ? "?search=" + encodeURIComponent(q) : ""));
  const ul = $("#identity-list");
  ul.innerHTML = "";
  for (const p of list) {
    const rename = el("input", { class: "rename", placeholder: "new name", size: 10 });
    const removeBtn = el("button", { class: "remove" }, "Remove");
    removeBtn.addEventListener("click", async () => {
      if (removeBtn.dataset.armed !== "1") { removeBtn.dataset.armed = "1"; removeBtn.textContent = "Really remove?"; return; }
      await guard(api(`/api/identities/${encodeURIComponent(p.name)}`, { method: "DELETE" }));
      refreshGallery();
    });
    const renameBtn = el("button", { class: "rename-btn" }, "Rename");
    renameBtn.addEventListener("click", async () => {
      if (!rename.value.trim()) return;
      const form = new FormData(); form.append("new_name", rename.value.trim());
      await guard(api(`/api/identities/${encodeURIComponent(p.name)}`, { method: "PATCH", body: form }));
      refreshGallery();
    });
    ul.append(el("li", { "data-name": p.name }, el("span", { class: "name" }, p.name),
      el("span", { class: "muted" }, `${p.photos} photo(s), ${p.templates} templates`), rename, renameBtn, removeBtn));
  }
}

async function guard(promise) {
  try { return await promise; } catch (e) { setStatus(e.message, "error"); throw e; }
}

$("#enroll-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("#enroll-name").value.trim();
  const files = $("#enroll-file").files;
  const out = $("#enroll-result");
  const form = new FormData();
  form.append("name", name);
  for (const f of files) form.append("file", f);
  out.textContent = "enrolling…"; out.className = "muted";
  try {
    const r = await api("/api/identities", { method: "POST", body: form });
    out.textContent = `enrolled ${r.name}: ${r.photos_added} photo(s), face ${r.resolutions.map((x) => x + " px").join(", ")}`;
    out.className = "ok";
    $("#enroll-form").reset();
  } catch (err) {
    out.textContent = err.message; out.className = "error";
  }
  refreshGallery();
});
$("#gallery-search").addEventListener("input", () => refreshGallery());

// -------------------------------------------------------------------------------------------------- unknown
async function refreshUnknown() {
  const data = await api("/api/unknown");
  $("#unknown-note").textContent = data.thumbnails ? "" :
    "Face images are off for this gallery (gallery.thumbnails): groups are listed without crops.";
  const box = $("#unknown");
  box.innerHTML = "";
  for (const g of data.groups) {
    const crops = el("div", { class: "crops" });
    if (data.thumbnails) {
      for (let i = 0; i < g.crops; i++) {
        const img = el("img", { alt: "crop" });
        api(`/api/unknown/${g.id}/crops/${i}.jpg`).then((b) => { img.src = URL.createObjectURL(b); }).catch(() => {});
        crops.append(img);
      }
    }
    const name = el("input", { placeholder: "name", size: 10 });
    const enrol = el("button", {}, "Enrol");
    enrol.addEventListener("click", async () => {
      if (!name.value.trim()) return;
      const form = new FormData(); form.append("name", name.value.trim());
      await guard(api(`/api/unknown/${g.id}/enroll`, { method: "POST", body: form }));
      refreshUnknown(); refreshGallery();
    });
    const dismiss = el("button", {}, "Dismiss");
    dismiss.addEventListener("click", async () => { await guard(api(`/api/unknown/${g.id}`, { method: "DELETE" })); refreshUnknown(); });
    box.append(el("div", { class: "group", "data-group": g.id }, crops,
      el("div", {}, `seen ${g.tracks}x on ${g.cameras.join(", ")}, last ${clock(g.last_seen)}, up to ${g.resolution} px`),
      name, enrol, dismiss));
  }
}

// ---------------------------------------------------------------------------------------------------- loops
async function refreshAll() {
  try {
    config = await api("/api/config");
    setStatus(`${config.cameras.length} camera(s), ` + (config.fpir ? `FPIR ${config.fpir}, ` : "") +
      `FAR ${config.far}`, "ok");
    await Promise.all([refreshGallery(), refreshUnknown()]);
  } catch (e) {
    setStatus(e.status === 401 ? "enter the API key" : e.message, "error");
  }
}

let busy = false;
async function tick() {
  if (busy || !config) return;
  busy = true;
  try { await refreshCameras(); await refreshEvents(); } catch (e) { setStatus(e.message, "error"); }
  finally { busy = false; }
}

refreshAll();
setInterval(tick, 700);
setInterval(() => { if (config) refreshUnknown().catch(() => {}); }, 5000);
