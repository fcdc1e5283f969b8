// The choices the forms share: a model list with the box's default picked, the picture sizes
// for a model, a second pass's (or a refiner's) model beside the picture's, and a presenter profile that
// brings its own models.
import { h } from "./ui.js";

/** A `<select>` of `[value, label]` pairs with `value` picked. */
export function select(options, value) {
  const s = h("select");
  for (const [v, label] of options) s.append(h("option", { value: v, selected: v === value }, label));
  return s;
}

/**
 * The installed models of a kind (from `installed()`), the one `reelbox models list` tags
 * as the default picked, else the first: what a request naming no model would run.
 */
export function modelSelect(models) {
  if (!models.length) return select([["", "None installed"]], "");
  const pick = (models.find((m) => m.default) || models[0]).name;
  return select(models.map((m) => [m.name, m.default ? `${m.name} (default)` : m.name]), pick);
}

/** The second pass's choice that names no model of its own: the picture's. */
const SAME = "Same model";

/**
 * The second pass's model (A1111's "Hires checkpoint"), or the refiner's (refiner.js, with
 * `none` "None"): `none` (value "", nothing sent: the picture's own) and the installed
 * `models` (as `installed()` gives them) but the one picked in `model`, following it. Every
 * model is offered until `follow()` is first called, so a kept choice is put back before the
 * picture's own is left out (a kept picture model is put back without a change event); a
 * choice that becomes the picture's own is `none` again, as it means the same. Each `follow`
 * then calls `changed`.
 */
export function passModelSelect(models, model, changed = () => {}, none = SAME) {
  const options = (list) => [h("option", { value: "" }, none), ...list.map((m) => h("option", { value: m.name }, m.name))];
  const s = h("select", {}, ...options(models));
  const follow = () => {
    const was = s.value;
    const others = models.filter((m) => m.name !== model.value);
    s.replaceChildren(...options(others));
    s.value = others.some((m) => m.name === was) ? was : "";
    changed();
  };
  model.addEventListener("change", follow);
  return { select: s, follow };
}

/** Square picture sides every model is offered; each installed model's own side is added. */
const SIDES = [256, 512, 768];

/** Pictures smaller than this are too small to look at (the demo model's own are 64). */
const SMALLEST = 256;

/**
 * The side a picked model draws at: the side it was trained at as `/api/v1/models` lists it
 * (1024 for SDXL, what the CLI draws it at; 512 when it does not say), at least `SMALLEST`.
 */
function sideOf(m) {
  return Math.max(SMALLEST, (m && m.native_width) || 512);
}

/**
 * The size a picture started from is drawn at by the model `name` (`models` as `installed()`
 * gives them): its own shape (`w`×`h`), at most the model's own number of pixels (a phone's
 * 12-megapixel photo would take the box ages, and models draw badly far past their size),
 * never larger than it is, its sides multiples of 8 as the models take them.
 */
export function startSize(models, name, w, h) {
  const side = sideOf(models.find((m) => m.name === name));
  const k = Math.min(1, side / Math.sqrt(w * h));
  const fit = (v) => Math.max(64, Math.floor((v * k) / 8) * 8);
  return [fit(w), fit(h)];
}

/**
 * The picture size choice for the model picked in `model` (`models` as `installed()` gives
 * them): the sizes every model takes and each model's own, the picked model's own picked and
 * marked, following the model until the size is changed by hand.
 */
export function sizeSelect(models, model) {
  const sides = [...new Set([...SIDES, ...models.map(sideOf)])].sort((a, b) => a - b);
  const picked = () => models.find((m) => m.name === model.value);
  const size = select(sides.map((s) => [String(s), ""]), String(sideOf(picked())));
  const label = () => {
    const m = picked();
    const own = m && m.native_width >= SMALLEST && m.native_width;
    for (const o of size.options) {
      const s = Number(o.value);
      o.textContent = `${s} × ${s}${s === 256 ? " (fast)" : ""}${s === own ? " (the model's own size)" : ""}`;
    }
  };
  label();
  let chosen = false;
  size.addEventListener("change", () => { chosen = true; });
  model.addEventListener("change", () => {
    label();
    if (!chosen) size.value = String(sideOf(picked()));
  });
  return size;
}

/**
 * Picking a presenter profile in `profile` picks its models in `pickers`, by the profile's
 * field (`{ image_model: select, lipsync_model: select, upscale_model: select }`): the request
 * names each picked model, so it must be the profile's. One that is not installed is listed as
 * such, and the box's refusal then says what to do; a model the profile leaves to the box's
 * default leaves its picker as it is.
 */
export function followProfile(profile, profiles, pickers) {
  profile.addEventListener("change", () => {
    const chosen = profiles.find((p) => p.id === profile.value);
    for (const [key, select] of Object.entries(pickers)) {
      const name = chosen && chosen.style && chosen.style[key];
      if (!name) continue;
      if (![...select.options].some((o) => o.value === name)) {
        select.append(h("option", { value: name }, `${name} (not installed)`));
      }
      select.value = name;
      select.dispatchEvent(new Event("change"));
    }
  });
}
