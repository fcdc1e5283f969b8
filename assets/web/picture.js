// Picture: a prompt made into a picture (`POST /api/v1/images`) with the box's diffusion
// models, from nothing or over a picture of the user's own with the part to redraw painted
// on it (start.js), optionally drawn again larger in a second pass (`refine`, the hires
// fix) on the picture's model or another installed one (`refine.model`), or finished by
// another model from a share of its steps instead (the "Refiner", refiner.js), with the
// steps, guidance, sampler and schedule under "More settings" (settings.js),
// followed live as Watch follows a film (step previews, then the picture large with
// its PNG download); "Make another" brings the form back with its fields, the picture and
// its paint as they were.
import { api, installed } from "./api.js";
import { followProfile, modelSelect, passModelSelect, select, sizeSelect, startSize } from "./choices.js";
import { refinerChoice } from "./refiner.js";
import { moreSettings } from "./settings.js";
import { startPicture } from "./start.js";
import { busy, clearErrors, field, focusHeading, h, isBusy, keepFields, showError } from "./ui.js";
import { follow } from "./watch.js";

/** Where the fields are kept between visits (this tab only, like New film's script). */
const KEPT = "reelbox.picture";

/** The second pass's hint, and why it is not offered while a part is painted. */
const PASS = "Draws the picture again larger, with finer detail; takes longer.";
const NO_PASS = "Not with a painted part: the box draws only that part again, at your picture's size. Clear the paint to use one.";
const NOT_WITH_REFINER = "Not with a refiner: the box takes one or the other. Set Refiner to None to use a second pass.";
/** The second pass's model's hint: why one would pick another. */
const PASS_MODEL = "Another installed model may draw the detail: a photoreal one over a stylised picture, or the reverse.";

/** Renders the Picture view into `root`. */
export async function picture(root) {
  const [profiles, diffusion, samplers] = await Promise.all([api("GET", "/api/v1/profiles"), installed("diffusion"),
    api("GET", "/api/v1/samplers")]);
  const prompt = h("textarea", { rows: 3, required: true, spellcheck: "true" });
  const negative = h("textarea", { rows: 2, spellcheck: "true" });
  const model = modelSelect(diffusion);
  const size = sizeSelect(diffusion, model);
  const seed = h("input", { type: "number", min: 0, step: 1, inputmode: "numeric" });
  const profile = select([["", "No presenter"], ...profiles.map((p) => [p.id, p.name])], "");
  followProfile(profile, profiles, { image_model: model });
  const more = moreSettings(diffusion, model, samplers);
  // The second pass: the picture scaled up and sampled again for the detail a larger size
  // can hold; how much it may change is the pass's strength (ComfyUI's denoise).
  const pass = select([["", "None"], ["1.5", "1.5× larger"], ["2", "2× larger"]], "");
  const strength = h("input", { type: "number", min: 0.05, max: 1, step: 0.05, value: 0.5, inputmode: "decimal" });
  const strengthField = field("pic-strength", "Second pass changes (0.05–1)", strength,
    "How far the second pass may redraw the picture: little keeps it, 1 draws it anew.");
  const sizeField = field("pic-size", "Picture size", size);
  const passField = field("pic-pass", "Second pass", pass, PASS);
  // Sampled from the first pass's picture (`refine.from` left at `picture`), so a model of
  // another latent space (SDXL over SD 1.5) draws it too, on its own VAE's encoding.
  const passModel = passModelSelect(diffusion, model, () => fit());
  const passModelField = field("pic-pass-model", "Second pass model", passModel.select, PASS_MODEL);
  const refiner = refinerChoice(diffusion, model, () => fit());
  const passHint = passField.querySelector(".hint");
  // A picture started from sets the size; a painted part takes no second pass nor refiner
  // (the box refuses `refine` with a `mask`), and a second pass and a refiner are each the
  // request's one `refine`, the one picked first standing: the choices that no longer apply
  // step aside, saying why.
  const fit = () => {
    sizeField.hidden = start.picked();
    const painted = start.masked();
    const refining = !painted && !pass.value && refiner.picked();
    pass.disabled = painted || refining;
    passHint.textContent = painted ? NO_PASS : refining ? NOT_WITH_REFINER : PASS;
    strengthField.hidden = !pass.value || pass.disabled;
    // Offered only with a pass and another model to pick.
    passModelField.hidden = strengthField.hidden || passModel.select.options.length < 2;
    refiner.fit(painted ? "paint" : pass.value ? "pass" : null);
  };
  const start = startPicture({
    sizeFor: (w, hh) => startSize(diffusion, model.value, w, hh),
    refusedNow: (e) => showError(form, e, { file: "pic-init" }),
    changed: fit,
  });
  pass.addEventListener("change", fit);
  refiner.controls.refiner.addEventListener("change", fit);
  model.addEventListener("change", () => start.sized());
  const controls = { prompt, negative, model, size, seed, profile, pass, passModel: passModel.select, strength,
    ...refiner.controls, ...more.controls, ...start.controls };
  const keep = keepFields(KEPT, controls);
  more.kept();
  passModel.follow();
  refiner.follow();
  fit();
  const submit = h("button", { type: "submit", class: "primary" }, "Make picture");
  const form = h("form", { class: "card picture-form", novalidate: true },
    h("h1", {}, "Picture"),
    field("pic-prompt", "Prompt", prompt, "What the picture shows, in a sentence or a few words."),
    field("pic-negative", "Leave out (optional)", negative, "What the picture should not show."),
    start.el,
    h("div", { class: "grid" },
      field("pic-model", "Picture model", model),
      sizeField,
      field("pic-seed", "Seed (optional)", seed, "The same seed and prompt make the same picture again."),
      field("pic-profile", "Presenter profile", profile, "Its picture model and style are used."),
      passField,
      passModelField,
      strengthField,
      ...refiner.fields),
    more.el,
    h("div", { class: "form-error", role: "alert" }),
    submit);
  const made = h("div", { class: "made" });
  const again = h("button", { type: "button", class: "secondary", id: "pic-again" }, "Make another");
  const after = h("div", { class: "row", hidden: true }, again);
  let stop = null;
  const back = () => {
    if (stop) { stop(); stop = null; }
    made.replaceChildren();
    after.hidden = true;
    form.hidden = false;
    prompt.focus();
  };
  again.addEventListener("click", back);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (isBusy(submit)) return;
    clearErrors(form);
    keep();
    busy(submit, true);
    // A refiner's refusals of `refine` land on its fields, a second pass's on the pass's.
    const refined = refiner.on();
    try {
      const body = { prompt: prompt.value, width: Number(size.value), height: Number(size.value) };
      if (start.picked()) await start.into(body);
      if (negative.value.trim()) body.negative_prompt = negative.value;
      if (model.value) body.model = model.value;
      if (seed.value !== "") body.seed = Number(seed.value);
      if (profile.value) body.profile = profile.value;
      more.into(body);
      if (pass.value && !body.mask) {
        body.refine = { resize: { scale_by: Number(pass.value) }, strength: Number(strength.value) };
        if (passModel.select.value) body.refine.model = passModel.select.value;
      } else if (refined && !body.mask) {
        refiner.into(body);
      }
      const job = await api("POST", "/api/v1/images", body);
      // The form steps aside for the picture (on a phone it would push it off the screen).
      form.hidden = true;
      after.hidden = false;
      stop = await follow(made, job.id, "Your picture");
      // The form that held the focus stepped aside: land on the progress card's heading.
      focusHeading(made);
    } catch (e) {
      form.hidden = false;
      after.hidden = true;
      // The size is the picture's own when one is picked: a size refused is said at it.
      const sized = start.picked() ? "pic-init" : "pic-size";
      showError(form, e, { prompt: "pic-prompt", negative_prompt: "pic-negative", model: "pic-model",
        width: sized, height: sized, seed: "pic-seed", profile: "pic-profile", file: "pic-init",
        init_image: "pic-init", strength: "pic-change", mask: "pic-paint", mask_grow: "pic-paint",
        ...(refined ? refiner.refused : { refine: "pic-pass", "refine.resize.scale_by": "pic-pass",
          "refine.strength": "pic-strength", "refine.model": "pic-pass-model" }),
        ...more.fields });
    } finally {
      busy(submit, false);
    }
  });
  // "Make another" above the card: on the first screen with the picture, phone or desktop.
  root.append(h("section", { class: "picture-view" }, form, after, made));
  return () => { if (stop) stop(); };
}
