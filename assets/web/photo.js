// Photo: a photo from this device (on a phone the picker offers the camera) made larger
// (`POST /api/v1/upscale`) or made to talk (`POST /api/v1/lipsync`: its face speaks
// narration typed and said by a voice, or a sound file), followed live as Picture follows a
// picture, then the larger picture with its PNG or the talking video with its MP4. The photo
// is uploaded as soon as it is picked, so a file the box cannot read is said at once.
import { api, installed, upload } from "./api.js";
import { modelSelect, select } from "./choices.js";
import { missing, pickPicture } from "./pick.js";
import { busy, clearErrors, field, focusHeading, h, isBusy, keepFields, showError } from "./ui.js";
import { follow } from "./watch.js";

/** Where the fields are kept between visits (this tab only, like Picture's). */
const KEPT = "reelbox.photo";

/** The daemon's field names of each action → this view's controls (`file` is an upload's). */
const LARGER = { file: "photo-file", input: "photo-file", model: "photo-model" };
const TALK = { file: "photo-file", portrait: "photo-file", text: "photo-text", voice: "photo-voice", audio: "photo-audio" };

/** Renders the Photo view into `root`. */
export async function photo(root) {
  const [upscalers, voices] = await Promise.all([installed("upscale"), installed("tts")]);
  const file = h("input", { type: "file", accept: "image/*" });
  const preview = h("img", { class: "photo-preview", alt: "The photo you picked", hidden: true });
  const model = modelSelect(upscalers);
  const narration = select([["text", "Typed text, said by a voice"], ["audio", "A sound file"]], "text");
  const text = h("textarea", { rows: 3, spellcheck: "true" });
  const voice = modelSelect(voices);
  const audio = h("input", { type: "file", accept: "audio/*" });
  const controls = { model, narration, text, voice };
  const keep = keepFields(KEPT, controls);
  const larger = h("button", { type: "submit", class: "primary", id: "photo-larger" }, "Make it larger");
  const talk = h("button", { type: "submit", class: "primary", id: "photo-talk" }, "Make it talk");
  const byText = h("div", {},
    field("photo-text", "What they say", text),
    field("photo-voice", "Voice", voice));
  const bySound = h("div", {}, field("photo-audio", "Sound file", audio, "A recording of what they say."));
  const showNarration = () => { byText.hidden = narration.value !== "text"; bySound.hidden = narration.value !== "audio"; };
  narration.addEventListener("change", showNarration);
  const largerRow = h("div", { class: "row" }, larger);
  // One slot for what no field names, under the photo; moved beside the action refused.
  const general = h("div", { class: "form-error", role: "alert" });
  const talkRow = h("div", { class: "row" }, talk);
  const form = h("form", { class: "card photo-form", novalidate: true },
    h("h1", {}, "Photo"),
    field("photo-file", "Photo", file, "A photo from this device; on a phone you can take one."),
    preview,
    general,
    h("h2", {}, "Make it larger"),
    h("p", { class: "hint" }, "The box draws it again at a larger size, with the detail filled in."),
    upscalers.length > 1 ? field("photo-model", "Upscaler", model) : null,
    largerRow,
    h("h2", {}, "Make it talk"),
    h("p", { class: "hint" }, "The face in the photo says what you give it: best with one face looking at the camera."),
    field("photo-narration", "What they say comes from", narration),
    byText,
    bySound,
    talkRow);

  // The sound file's, as a promise: uploaded at the first "Make it talk" that uses it and
  // kept for the next, so a refused try does not store it again (the box keeps uploads, and
  // they count against the key's space). Null until then, and again when another is picked.
  let soundId = null;
  audio.addEventListener("change", () => { soundId = null; });
  // The photo, uploaded as soon as it is picked; a refusal said at once, at its field.
  const photoPick = pickPicture(file, preview, { refusedNow: (e) => showError(form, e, LARGER) });

  const made = h("div", { class: "made" });
  const back = h("button", { type: "button", class: "secondary", id: "photo-again" }, "Back to the photo");
  const after = h("div", { class: "row", hidden: true }, back);
  let stop = null;
  back.addEventListener("click", () => {
    if (stop) { stop(); stop = null; }
    made.replaceChildren();
    after.hidden = true;
    form.hidden = false;
    file.focus();
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (isBusy(larger)) return;
    const talking = ev.submitter === talk;
    const fields = talking ? TALK : LARGER;
    clearErrors(form);
    (talking ? talkRow : largerRow).before(general);
    keep();
    busy(larger, true);
    busy(talk, true);
    try {
      const photoId = photoPick.uploaded();
      if (!photoId) throw missing("file", "Pick a photo first.");
      const id = await photoId;
      let job;
      if (talking) {
        const body = { portrait: id };
        if (narration.value === "audio") {
          if (!audio.files[0]) throw missing("audio", "Pick a sound file first, or type what they say.");
          const sound = (soundId ??= upload(audio.files[0]));
          try {
            body.audio = await sound;
          } catch (e) {
            // Not stored: the next try sends it again.
            if (soundId === sound) soundId = null;
            // The upload names its own field (`file`): here that is the sound file.
            showError(form, e, { file: "photo-audio" });
            return;
          }
        } else {
          body.text = text.value;
          if (voice.value) body.voice = voice.value;
        }
        job = await api("POST", "/api/v1/lipsync", body);
      } else {
        const body = { input: id };
        if (upscalers.length > 1) body.model = model.value;
        job = await api("POST", "/api/v1/upscale", body);
      }
      // The form steps aside for the result (on a phone it would push it off the screen).
      form.hidden = true;
      after.hidden = false;
      stop = await follow(made, job.id, talking ? "Your talking photo" : "Your larger photo");
      // The form that held the focus stepped aside: land on the progress card's heading.
      focusHeading(made);
    } catch (e) {
      form.hidden = false;
      after.hidden = true;
      showError(form, e, fields);
    } finally {
      busy(larger, false);
      busy(talk, false);
    }
  });
  showNarration();
  root.append(h("section", { class: "photo-view" }, form, after, made));
  return () => { if (stop) stop(); };
}
