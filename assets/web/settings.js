// Picture's "More settings", closed until asked for: steps, guidance (CFG), sampler,
// schedule and clip skip, which people coming from AUTOMATIC1111 and ComfyUI set on every
// picture (a model's page on Civitai says "Clip skip: 2"). Each
// left empty is the picked model's own, which its placeholder or first choice says and which
// follows the model (in its hint too, which wraps: on a phone at large text a placeholder is
// cut before its number, and not every screen reader reads one); only what is set is sent. The samplers and schedules are the box's own
// (`GET /api/v1/samplers`), named as those people know them ("DPM++ 2M", "Karras").
import { select } from "./choices.js";
import { field, h } from "./ui.js";

/** What the choices say when the model's own is not known. */
const OWN = "Model default";
/** Clip skip's hint for a model that reads the prompt at any layer. */
const CLIP_SKIP_HINT = "The text encoder layer, from its end, the prompt is read at: 2 for many anime models.";
/** Clip skip's hint for a model that gives its own layer only (one pulled from the hub). */
const OWN_LAYER_ONLY = "This model reads the prompt at its own text encoder layer only (pulled from the hub): " +
  "import its checkpoint or diffusers folder to read it at others.";

/**
 * The settings for the model picked in `model` (`models` as `installed()` gives them), with
 * the box's `samplers` and `schedules` (`GET /api/v1/samplers`): `el` to show, `controls` by
 * name (to keep them), `kept()` once they are put back, `into(body)` adding what is set to a
 * request, and `fields`, the control ids by the request's field names, for refusals.
 */
export function moreSettings(models, model, { samplers, schedules }) {
  const steps = h("input", { type: "number", min: 1, step: 1, inputmode: "numeric" });
  const guidance = h("input", { type: "number", min: 0, max: 30, step: 0.5, inputmode: "decimal" });
  const sampler = select([["", OWN], ...samplers.map((s) => [s.name, s.label])], "");
  const schedule = select([["", OWN], ...schedules.map((s) => [s.name, s.label])], "");
  const clipSkip = select([["", OWN], ["1", "1 (the last layer)"], ["2", "2"], ["3", "3"], ["4", "4"]], "");
  const stepsField = field("pic-steps", "Steps", steps, " ");
  const guidanceField = field("pic-guidance", "Guidance (CFG)", guidance, " ");
  const samplerField = field("pic-sampler", "Sampler", sampler, " ");
  const clipSkipField = field("pic-clip-skip", "Clip skip", clipSkip, CLIP_SKIP_HINT);
  const hint = (f, text, v) => {
    f.querySelector(".hint").textContent = v === undefined || v === null ? text : `${text} Left empty: ${v}, the model's own.`;
  };
  // The picked model's own, as a request naming none draws it (`GET /api/v1/models`).
  const own = () => {
    const m = models.find((x) => x.name === model.value) || {};
    const said = (v) => (v === undefined || v === null ? OWN : `${OWN}: ${v}`);
    steps.placeholder = said(m.default_steps);
    guidance.placeholder = said(m.default_guidance);
    const s = samplers.find((x) => x.name === m.default_scheduler);
    sampler.options[0].textContent = s ? `${OWN} (${s.label})` : OWN;
    hint(stepsField, "More steps add detail and take longer.", m.default_steps);
    hint(guidanceField, "How closely the picture follows the prompt.", m.default_guidance);
    hint(samplerField, "How each step draws.", s && s.label);
    // The layers the model's text encoder gives: a model from the hub its own only.
    // Not known: every choice offered (the box refuses one past the layers, at the field).
    const most = m.max_clip_skip ?? Infinity;
    for (const o of clipSkip.options) o.disabled = o.value !== "" && Number(o.value) > most;
    clipSkip.options[0].textContent = m.default_clip_skip ? `${OWN} (${m.default_clip_skip})` : OWN;
    if (clipSkip.selectedOptions[0] && clipSkip.selectedOptions[0].disabled) clipSkip.value = "";
    clipSkipField.querySelector(".hint").textContent = most === m.default_clip_skip ? OWN_LAYER_ONLY : CLIP_SKIP_HINT;
  };
  own();
  model.addEventListener("change", own);
  const el = h("details", { class: "more" },
    h("summary", {}, "More settings"),
    h("div", { class: "grid" }, stepsField, guidanceField, samplerField,
      field("pic-schedule", "Schedule", schedule, "How the sampler spreads its steps (A1111's schedule type)."),
      clipSkipField));
  const controls = { steps, guidance, sampler, schedule, clipSkip };
  return {
    el,
    controls,
    /**
     * After the fields are put back: the defaults said are the kept model's, and the
     * settings are open when one is set, so it is seen.
     */
    kept() {
      own();
      el.open = Object.values(controls).some((c) => c.value !== "");
    },
    into(body) {
      if (steps.value !== "") body.steps = Number(steps.value);
      if (guidance.value !== "") body.guidance = Number(guidance.value);
      if (sampler.value) body.scheduler = sampler.value;
      if (schedule.value) body.schedule = schedule.value;
      if (clipSkip.value) body.clip_skip = Number(clipSkip.value);
    },
    fields: { steps: "pic-steps", guidance: "pic-guidance", scheduler: "pic-sampler", schedule: "pic-schedule",
      clip_skip: "pic-clip-skip" },
  };
}
