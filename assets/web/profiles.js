// Profiles: presenters with a portrait, the face box drawn on it (drag to move, the corner
// to resize, or arrow keys), a voice, a style and the models of their films.
import { api, artifacts, checkSize, installed, upload, waitJob } from "./api.js";
import { busy, clearErrors, field, h, isBusy, keepFocus, say, showError } from "./ui.js";
import { plainError } from "./words.js";

/** A face box editor over an image; `get()` is `[x, y, w, h]` in portrait pixels. */
function faceEditor(onChange) {
  const img = h("img", { alt: "Portrait", class: "portrait" });
  const handle = h("span", { class: "handle", "aria-hidden": "true" });
  const box = h("div", { class: "facebox", tabindex: 0, role: "group",
    "aria-label": "Face box: drag it, or use the arrow keys (Shift + arrows resizes)" }, handle);
  const wrap = h("div", { class: "face-wrap", hidden: true }, img, box);
  let fb = null;
  const place = () => {
    if (!fb || !img.naturalWidth) return;
    const [x, y, w, hh] = fb, W = img.naturalWidth, H = img.naturalHeight;
    Object.assign(box.style, { left: `${(x / W) * 100}%`, top: `${(y / H) * 100}%`, width: `${(w / W) * 100}%`, height: `${(hh / H) * 100}%` });
  };
  const set = (next) => {
    const W = img.naturalWidth, H = img.naturalHeight;
    let [x, y, w, hh] = next.map(Math.round);
    w = Math.max(8, Math.min(w, W)); hh = Math.max(8, Math.min(hh, H));
    x = Math.max(0, Math.min(x, W - w)); y = Math.max(0, Math.min(y, H - hh));
    fb = [x, y, w, hh];
    place();
    onChange(fb);
  };
  img.addEventListener("load", () => {
    wrap.hidden = false;
    if (!fb) {
      const s = Math.round(Math.min(img.naturalWidth, img.naturalHeight) * 0.4);
      set([(img.naturalWidth - s) / 2, (img.naturalHeight - s) / 2, s, s]);
    } else set(fb);
  });
  let drag = null;
  box.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    box.setPointerCapture(ev.pointerId);
    drag = { sx: ev.clientX, sy: ev.clientY, start: fb.slice(), resize: ev.target === handle };
  });
  box.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const k = img.naturalWidth / img.clientWidth;
    const dx = (ev.clientX - drag.sx) * k, dy = (ev.clientY - drag.sy) * k;
    const [x, y, w, hh] = drag.start;
    set(drag.resize ? [x, y, w + dx, hh + dy] : [x + dx, y + dy, w, hh]);
  });
  const end = () => { drag = null; };
  box.addEventListener("pointerup", end);
  box.addEventListener("pointercancel", end);
  box.addEventListener("keydown", (ev) => {
    const step = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[ev.key];
    if (!step || !fb) return;
    ev.preventDefault();
    const [x, y, w, hh] = fb, n = 4;
    set(ev.shiftKey ? [x, y, w + step[0] * n, hh + step[1] * n] : [x + step[0] * n, y + step[1] * n, w, hh]);
  });
  return {
    el: wrap,
    show(src, box0) { fb = box0 ? box0.slice() : null; img.src = src; },
    set(next) { if (img.naturalWidth) set(next); else fb = next; },
    get: () => fb,
  };
}

/**
 * The face box the box's face detector finds in an uploaded portrait (a `face_detect` job),
 * or null when it finds none; throws the API's error otherwise.
 */
async function detectFace(portraitId) {
  const job = await api("POST", "/api/v1/jobs", { kind: "face_detect", params: { input: portraitId } });
  const done = await waitJob(job.id, null, 250);
  if (done.state !== "succeeded") throw new Error(done.error || `face detection ${done.state}`);
  const face = (await artifacts(job.id)).find((a) => a.name === "face.json");
  if (!face) return null;
  const resp = await fetch(`/api/v1/artifacts/${face.id}`, { credentials: "same-origin" });
  return (await resp.json()).face_box;
}

/** Renders the Profiles view into `root`. */
export async function profiles(root) {
  const [list, voices, detectors, pictures, lipsyncs, upscalers] = await Promise.all([
    api("GET", "/api/v1/profiles"), installed("tts"), installed("face"), installed("diffusion"),
    installed("lipsync"), installed("upscale"),
  ]);
  const cards = h("ul", { class: "items profiles" });
  const name = h("input", { type: "text", required: true, autocomplete: "off" });
  const portrait = h("input", { type: "file", accept: "image/png,image/jpeg,image/webp" });
  const voice = h("select", {}, h("option", { value: "" }, "Default voice"),
    voices.map((v) => h("option", { value: v.name }, v.name)));
  // The profile's picture model (e.g. an imported checkpoint with a LoRA fused in): its
  // renders' keyframes use it when the render names no model.
  const modelChoice = (models) => h("select", {}, h("option", { value: "" }, "Default model"),
    models.map((m) => h("option", { value: m.name }, m.name)));
  const picture = modelChoice(pictures);
  // Its lip-sync model (e.g. an imported wav2lip_gan) and upscaler, used the same way.
  const lipsync = modelChoice(lipsyncs);
  const upscaler = modelChoice(upscalers);
  // The profile's models by its field names: "" clears one (the box's default).
  const models = () => ({ image_model: picture.value, lipsync_model: lipsync.value, upscale_model: upscaler.value });
  const nums = ["x", "y", "w", "h"].map((k) => h("input", { type: "number", min: 0, step: 1, inputmode: "numeric", "data-k": k }));
  const editor = faceEditor((fb) => nums.forEach((n, i) => { n.value = fb[i]; }));
  // Where the face box came from, said next to the editor (no layout shift: always present).
  const faceNote = h("p", { class: "hint", id: "face-note", "aria-live": "polite" },
    detectors.length ? "" : "No face detector is installed: place the box on the face.");
  // A portrait uploaded for detection is reused on save instead of sent twice.
  let uploaded = null;
  nums.forEach((n) => n.addEventListener("change", () => editor.set(nums.map((m) => Number(m.value) || 0))));
  const title = h("h2", {}, "New profile");
  const save = h("button", { type: "submit", class: "primary" }, "Create profile");
  const reset = h("button", { type: "button", class: "secondary" }, "New profile instead");
  // What a save or delete did, said (focus stays in the form, which only changes its title).
  const done = h("p", { class: "hint", role: "status" });
  const form = h("form", { class: "card", novalidate: true, id: "profile-form" },
    title,
    field("profile-name", "Name", name),
    field("profile-portrait", "Portrait", portrait, "A picture of the presenter, facing the camera."),
    editor.el,
    faceNote,
    h("fieldset", { class: "facebox-fields" }, h("legend", {}, "Face box (pixels)"),
      nums.map((n, i) => field(`face-${"xywh"[i]}`, ["Left", "Top", "Width", "Height"][i], n))),
    field("profile-voice", "Voice", voice),
    field("profile-picture", "Picture model", picture, "The model of this presenter's keyframes when a film names none."),
    field("profile-lipsync", "Lip-sync model", lipsync, "Makes this presenter talk when a film names no lip-sync model."),
    field("profile-upscale", "Upscale model", upscaler, "Upscales this presenter's films when a film names no upscaler."),
    h("div", { class: "form-error", role: "alert" }),
    h("div", { class: "row" }, save, reset, done));
  let editing = null;
  const startNew = () => {
    editing = null; uploaded = null; form.reset(); title.textContent = "New profile"; save.textContent = "Create profile";
    editor.el.hidden = true; reset.hidden = true; clearErrors(form);
  };
  const edit = (p) => {
    editing = p; clearErrors(form);
    title.textContent = `Edit ${p.name}`; save.textContent = "Save profile"; reset.hidden = false;
    name.value = p.name; voice.value = p.voice.model; picture.value = p.style.image_model || "";
    lipsync.value = p.style.lipsync_model || ""; upscaler.value = p.style.upscale_model || "";
    if (p.portrait) editor.show(`/api/v1/artifacts/${p.portrait}`, p.face_box);
    name.focus();
  };
  portrait.addEventListener("change", async () => {
    uploaded = null;
    if (!portrait.files.length) return;
    const file = portrait.files[0];
    editor.show(URL.createObjectURL(file), null);
    if (!detectors.length) return;
    faceNote.textContent = "Looking for the face…";
    try {
      uploaded = await upload(file);
      const fb = await detectFace(uploaded);
      if (portrait.files[0] !== file) return; // another file was picked meanwhile
      if (fb) editor.set(fb);
      faceNote.textContent = fb ? "Face found automatically: drag the box to adjust it." : "No face found: place the box on the face.";
    } catch (e) {
      faceNote.textContent = `Face detection failed (${plainError(e).text}): place the box on the face.`;
    }
  });
  // The button hides itself: focus goes on to the form's first field.
  reset.addEventListener("click", () => { startNew(); name.focus(); });
  const draw = () => cards.replaceChildren(...list.map((p) => {
    // Named with their profile: a screen reader's list of buttons is otherwise "Edit, Delete, Edit…".
    const e = h("button", { type: "button", class: "secondary", "aria-label": `Edit ${p.name}` }, "Edit");
    const d = h("button", { type: "button", class: "danger", "aria-label": `Delete ${p.name}` }, "Delete");
    e.addEventListener("click", () => edit(p));
    d.addEventListener("click", async () => {
      if (!confirm(`Delete the profile ${p.name}?`)) return;
      try {
        await api("DELETE", `/api/v1/profiles/${p.id}`);
      } catch (e) {
        say(form.querySelector(".form-error"), e);
        return;
      }
      const at = list.indexOf(p);
      list.splice(at, 1);
      draw();
      done.textContent = `Deleted ${p.name}.`;
      // The card that held the focus is gone: the next one's Edit, else the form.
      const next = cards.children[Math.min(at, cards.children.length - 1)];
      keepFocus(d, next && next.querySelector("button"), name);
    });
    return h("li", { class: "card item", "data-profile": p.id },
      p.portrait ? h("img", { src: `/api/v1/artifacts/${p.portrait}`, alt: `Portrait of ${p.name}`, class: "thumb" }) : null,
      h("h3", {}, p.name),
      h("p", { class: "hint" }, `voice ${p.voice.model}`, p.style.image_model ? ` · pictures ${p.style.image_model}` : "",
        p.style.lipsync_model ? ` · lip-sync ${p.style.lipsync_model}` : "",
        p.style.upscale_model ? ` · upscale ${p.style.upscale_model}` : "",
        p.face_box ? ` · face ${p.face_box.join(", ")}` : ""),
      h("div", { class: "row" }, e, d));
  }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (isBusy(save)) return;
    clearErrors(form);
    done.textContent = "";
    busy(save, true);
    const fb = editor.get();
    try {
      let p;
      if (editing) {
        // "" clears a model.
        const body = { name: name.value, voice: voice.value || undefined, ...models() };
        if (fb) body.face_box = fb;
        if (portrait.files.length) body.portrait = uploaded || await upload(portrait.files[0]);
        p = await api("PATCH", `/api/v1/profiles/${editing.id}`, body);
        list[list.findIndex((x) => x.id === p.id)] = p;
      } else if (uploaded) {
        const body = { name: name.value, voice: voice.value || undefined, portrait: uploaded };
        for (const [k, v] of Object.entries(models())) if (v) body[k] = v;
        if (fb) body.face_box = fb;
        p = await api("POST", "/api/v1/profiles", body);
        list.unshift(p);
      } else {
        const f = new FormData();
        f.append("name", name.value);
        if (voice.value) f.append("voice", voice.value);
        for (const [k, v] of Object.entries(models())) if (v) f.append(k, v);
        if (portrait.files.length) {
          checkSize(portrait.files[0], "portrait");
          f.append("portrait", portrait.files[0], portrait.files[0].name);
          if (fb) f.append("face_box", fb.join(","));
        }
        p = await api("POST", "/api/v1/profiles", f);
        list.unshift(p);
      }
      draw();
      edit(p);
      done.textContent = `Saved ${p.name}.`;
    } catch (e) {
      showError(form, e, { name: "profile-name", portrait: "profile-portrait", face_box: "face-x", voice: "profile-voice",
        image_model: "profile-picture", lipsync_model: "profile-lipsync", upscale_model: "profile-upscale" });
    } finally {
      busy(save, false);
    }
  });
  root.append(h("section", { class: "profiles-view" }, h("h1", {}, "Profiles"), form,
    h("h2", { class: "sr-only" }, "Your profiles"), cards));
  startNew();
  draw();
}
