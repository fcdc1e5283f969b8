// The choices the forms share: a model list with the box's default picked, the picture sizes
// for a model, and a presenter profile that brings its own picture model.
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

/** Square picture sizes; the small one first for the demo models (trained at 256). */
const SIZES = [["256", "256 × 256 (fast)"], ["512", "512 × 512"], ["768", "768 × 768"]];

/**
 * The picture size choice for the model picked in `model` (`models` as `installed()` gives
 * them): 256 for a demo model, else 512, following the model until the size is changed by hand.
 */
export function sizeSelect(models, model) {
  const fits = () => (models.find((m) => m.name === model.value)?.demo ? "256" : "512");
  const size = select(SIZES, fits());
  let chosen = false;
  size.addEventListener("change", () => { chosen = true; });
  model.addEventListener("change", () => { if (!chosen) size.value = fits(); });
  return size;
}

/**
 * Picking a presenter profile in `profile` picks its picture model in `model` (the request
 * names the model, so it must be the profile's); one that is not installed is listed as such,
 * and the box's refusal then says what to do.
 */
export function followProfile(profile, model, profiles) {
  profile.addEventListener("change", () => {
    const chosen = profiles.find((p) => p.id === profile.value);
    const name = chosen && chosen.style && chosen.style.image_model;
    if (!name) return;
    if (![...model.options].some((o) => o.value === name)) {
      model.append(h("option", { value: name }, `${name} (not installed)`));
    }
    model.value = name;
    model.dispatchEvent(new Event("change"));
  });
}
