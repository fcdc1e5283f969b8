// Small DOM helpers shared by the views: element building, field errors, formatting.
import { kindWord, refusal } from "./words.js";

/** Builds an element: `h("button", {type: "button", onclick}, "Text")`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A labelled field: label, control and a slot for its error (linked for screen readers). */
export function field(id, label, control, hint) {
  control.id = id;
  // A div: an error may carry its "Details" disclosure.
  const err = h("div", { class: "error", id: `${id}-error`, role: "alert" });
  const described = [err.id];
  let hintEl = null;
  if (hint) {
    hintEl = h("p", { class: "hint", id: `${id}-hint` }, hint);
    described.unshift(hintEl.id);
  }
  control.setAttribute("aria-describedby", described.join(" "));
  // An error stays only until the field is edited.
  const clear = () => { err.replaceChildren(); control.removeAttribute("aria-invalid"); };
  control.addEventListener("input", clear);
  control.addEventListener("change", clear);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl, err);
}

/**
 * A form's fields kept in this tab (sessionStorage `key`; `controls` by name): puts back
 * what was kept, except a choice no longer offered (a model or profile that is gone stays
 * at what the list picked); returns what keeps them as they are now.
 */
export function keepFields(key, controls) {
  const kept = JSON.parse(sessionStorage.getItem(key) || "{}");
  for (const [k, c] of Object.entries(controls)) {
    if (kept[k] !== undefined && (c.tagName !== "SELECT" || [...c.options].some((o) => o.value === kept[k]))) c.value = kept[k];
  }
  return () => sessionStorage.setItem(key, JSON.stringify(Object.fromEntries(Object.entries(controls).map(([k, c]) => [k, c.value]))));
}

/** Clears every field error of a form. */
export function clearErrors(root) {
  for (const p of root.querySelectorAll(".error, .form-error")) p.replaceChildren();
  for (const c of root.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
}

/**
 * Shows an API error in plain words (see words.js) next to the field it names (`fields`
 * maps API field names to control ids), after the control's label; else in the form's
 * general error slot.
 */
export function showError(root, err, fields = {}) {
  // The field itself ("refine.strength") before the one it is in ("refine").
  const name = err.field ? err.field.split(/[.[]/)[0] : null;
  const id = name && (fields[err.field] || fields[name]);
  const control = id && root.querySelector(`#${id}`);
  if (control) {
    // A field folded away ("More settings") is opened, so its refusal is seen and focused.
    const folded = control.closest("details:not([open])");
    if (folded) folded.open = true;
    control.setAttribute("aria-invalid", "true");
    const slot = root.querySelector(`#${id}-error`);
    // The API names its own field ("width: …"); under the control, its label says it better.
    const label = root.querySelector(`label[for="${id}"]`);
    if (slot) slot.replaceChildren(...refusal(err, label ? label.textContent : err.field));
    control.focus();
    return;
  }
  const general = root.querySelector(".form-error");
  if (general) {
    general.replaceChildren(...refusal(err));
    // Focus lands on the refusal itself, so a keyboard user is where the news is.
    general.tabIndex = -1;
    general.focus();
  }
}

/**
 * Marks `button` as working (or done working): it says so (`aria-disabled`) and stays
 * focusable, since a disabled button drops the focus to the page's start; its handler
 * checks `isBusy` before acting again.
 */
export function busy(button, on) {
  if (on) button.setAttribute("aria-disabled", "true");
  else button.removeAttribute("aria-disabled");
}

/** Whether `button` is working (see `busy`). */
export function isBusy(button) {
  return button.getAttribute("aria-disabled") === "true";
}

/**
 * Moves focus to the first heading in `root` (focusable by script only), so a keyboard and
 * screen reader user lands on what an action brought up rather than the page's start.
 */
export function focusHeading(root) {
  const heading = root.querySelector("h1, h2");
  if (!heading) return;
  heading.tabIndex = -1;
  heading.focus();
}

/**
 * Focus for when the control holding it goes away: the first of `candidates` that is still
 * shown, when focus was on `gone` (or already lost to the page).
 */
export function keepFocus(gone, ...candidates) {
  const lost = document.activeElement === gone || document.activeElement === document.body || !document.activeElement;
  if (!lost) return;
  const next = candidates.find((c) => c && c.isConnected && !c.hidden && !c.closest("[hidden]"));
  if (!next) return;
  if (!next.hasAttribute("tabindex") && !next.matches("a[href], button, input, select, textarea, summary")) next.tabIndex = -1;
  next.focus();
}

/** Shows `err` in plain words (with its "Details") in `slot`, replacing what was there. */
export function say(slot, err) {
  slot.replaceChildren(...refusal(err));
}

/** `1:05` or `12 s` for seconds. */
export function duration(s) {
  if (!Number.isFinite(s)) return "";
  s = Math.max(0, Math.round(s));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** A local date and time for an RFC 3339 string. */
export function when(t) {
  return t ? new Date(t).toLocaleString() : "";
}

/** Kilo/mega/gigabytes. */
export function bytes(n) {
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

/** Draws values (0–max) as a line on a canvas sized by CSS. */
export function sparkline(canvas, values, max = 100) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 160, hgt = canvas.clientHeight || 32;
  canvas.width = w * dpr; canvas.height = hgt * dpr;
  const c = canvas.getContext("2d");
  c.scale(dpr, dpr);
  c.clearRect(0, 0, w, hgt);
  if (values.length < 2) return;
  c.strokeStyle = getComputedStyle(canvas).color;
  c.lineWidth = 1.5;
  c.beginPath();
  values.forEach((v, i) => {
    const x = (i / (values.length - 1)) * w;
    const y = hgt - (Math.min(Math.max(v ?? 0, 0), max) / max) * (hgt - 2) - 1;
    if (i) c.lineTo(x, y); else c.moveTo(x, y);
  });
  c.stroke();
}

/** What a job is about, in a line: its prompt, script or text, cut at `max` characters with an ellipsis. */
export function summary(job, max = Infinity) {
  const p = job.params || {};
  // A talking photo keeps its typed narration with the speech it makes first.
  // A script is told by what it says, not by its [directions] (a film's player was named
  // "Film: [a red circle on a blue background] Welcome…"); only directions: kept as they are.
  const spoken = p.script && p.script.replace(/\[[^\]]*\]/g, " ").trim();
  const text = (p.prompt || spoken || p.script || p.text || (p.speech && p.speech.text) || p.name || kindWord(job.kind)).replace(/\s+/g, " ").trim();
  if (text.length <= max) return text;
  // Cut at the last word that fits and say it was cut.
  const cut = text.slice(0, max - 1);
  const space = cut.lastIndexOf(" ");
  return `${(space > max / 2 ? cut.slice(0, space) : cut).trimEnd()}…`;
}
