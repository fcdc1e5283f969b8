// Picture's "Refiner", as AUTOMATIC1111's UI has one: another installed diffusion model that
// finishes the picture's own schedule from "Switch at" (A1111's `refiner_switch_at`, a share
// of the steps): SDXL's base + refiner, or a photoreal fine-tune finishing a stylised one.
// Sent as `refine: {switch_at, model, continue}`, the box's base → refiner split: the
// picture's model draws the steps before the switch and hands its unfinished, still noisy
// picture on; "Refiner goes on as" says how the refiner takes it: A1111's one run (`run`, the
// sampler's run going on, A1111's only way and the default here) or ComfyUI's (`leftover`:
// a sampler run of the refiner's own from the leftover noise, its second KSamplerAdvanced).
// Its models are the second pass's list (`passModelSelect`), "None" where that one says
// "Same model": a split on the picture's own model would draw the picture it draws alone.
import { passModelSelect, select } from "./choices.js";
import { field, h } from "./ui.js";

/** A1111's default switch: the picture's model draws four fifths of the steps. */
const AT = 0.8;

/** The hints: what a refiner is for, and why it is not offered beside a second pass or paint. */
const WHY = "Another installed model draws the last steps: an SDXL refiner, or a photoreal model finishing a stylised picture.";
const NOT_WITH_PASS = "Not with a second pass: the box takes one or the other. Set Second pass to None to use a refiner.";
const NOT_WITH_PAINT = "Not with a painted part: the box draws only that part again. Clear the paint to use one.";
const CONTINUE_HINT = "One run: the picture's sampler run goes on with the refiner, as AUTOMATIC1111 does. A run of its own: the refiner starts a sampler run from the leftover noise, as ComfyUI's second KSamplerAdvanced.";
const AT_HINT = `The share of the steps the picture's model draws before the refiner takes over: ${AT} leaves it the last fifth. Left empty: ${AT}.`;

/**
 * The refiner's choices for the picture's model picked in `model` (`models` as `installed()`
 * gives them), calling `changed` as its model list follows the picture's: `fields` (its model,
 * its switch, and how the refiner goes on) to show, `controls` by name (to keep them), `follow()` once they are put
 * back (see `passModelSelect`), `fit(why)` with why it cannot be used now (`"pass"`,
 * `"paint"`, or nothing), `picked()` whether a model is picked, `on()` and usable now, `into(body)` adding it to a
 * request, and `refused`, the control ids by the request's field names, for refusals.
 */
export function refinerChoice(models, model, changed) {
  const list = passModelSelect(models, model, changed, "None");
  const at = h("input", { type: "number", min: 0.05, max: 0.95, step: 0.05, value: AT, placeholder: String(AT),
    inputmode: "decimal" });
  const modelField = field("pic-refiner", "Refiner", list.select, WHY);
  const atField = field("pic-switch-at", "Switch at (0–1)", at, AT_HINT);
  const continues = select([["run", "One run (AUTOMATIC1111)"], ["leftover", "A run of its own (ComfyUI)"]], "run");
  const continueField = field("pic-refiner-continue", "Refiner goes on as", continues, CONTINUE_HINT);
  const hint = modelField.querySelector(".hint");
  // Offered only where another model is installed: one option is "None" alone.
  const offered = () => list.select.options.length > 1;
  const picked = () => offered() && list.select.value !== "";
  const on = () => picked() && !list.select.disabled;
  return {
    fields: [modelField, atField, continueField],
    controls: { refiner: list.select, switchAt: at, refinerContinue: continues },
    follow: list.follow,
    picked,
    on,
    fit(why) {
      modelField.hidden = !offered();
      list.select.disabled = !!why;
      hint.textContent = why === "pass" ? NOT_WITH_PASS : why === "paint" ? NOT_WITH_PAINT : WHY;
      atField.hidden = !on();
      continueField.hidden = !on();
    },
    into(body) {
      body.refine = { switch_at: at.value === "" ? AT : Number(at.value), model: list.select.value,
        continue: continues.value };
    },
    refused: { refine: "pic-refiner", "refine.model": "pic-refiner", "refine.switch_at": "pic-switch-at",
      "refine.switch_at_step": "pic-switch-at", "refine.continue": "pic-refiner-continue" },
  };
}
