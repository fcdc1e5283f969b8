// Speech: a line of text spoken by an installed voice (`POST /api/v1/speech`), then played
// in the page and downloaded as WAV. `speak` is also New film's Listen.
import { api, artifacts, installed, waitJob } from "./api.js";
import { modelSelect } from "./choices.js";
import { busy, clearErrors, field, h, isBusy, showError } from "./ui.js";
import { result } from "./watch.js";

/**
 * Speaks `text` with `voice` (the box's default when empty) and returns the finished job's
 * artifacts; `onState` hears "queued" (the line waits behind other work) and "running".
 * A job that fails throws its error (plain words come from words.js).
 */
export async function speak(text, voice, onState) {
  const job = await api("POST", "/api/v1/speech", { text, voice: voice || undefined });
  const done = await waitJob(job.id, (j) => onState(j.state));
  if (done.state !== "succeeded") throw new Error(done.error || `speech ${done.state}`);
  return { job: done, arts: await artifacts(job.id) };
}

/** What the status line says while a line is made. */
export function speaking(state) {
  // Behind a film the line may wait its turn: say so rather than look stuck.
  return state === "queued" ? "Waiting for the box to finish other work…" : "Synthesising…";
}

/** Renders the Speech view into `root`; `me` is the session (its text limit). */
export async function speech(root, _arg, me) {
  const voices = await installed("tts");
  const max = (me && me.max_prompt_chars) || 0;
  const text = h("textarea", { rows: 5, required: true, spellcheck: "true" });
  text.value = sessionStorage.getItem("reelbox.speech") || "";
  // Not a live region: a screen reader would read it at every key; the limit is in the hint.
  const count = h("p", { class: "hint counter", id: "speech-count" });
  const update = () => {
    sessionStorage.setItem("reelbox.speech", text.value);
    const n = [...text.value].length;
    count.textContent = max ? `${n} / ${max} characters` : `${n} characters`;
    count.classList.toggle("over", max > 0 && n > max);
  };
  text.addEventListener("input", update);
  const voice = modelSelect(voices);
  const submit = h("button", { type: "submit", class: "primary" }, "Speak");
  const status = h("p", { class: "hint", id: "speech-status", "aria-live": "polite" });
  const out = h("div", { class: "speech-result" });
  const form = h("form", { class: "card speech", novalidate: true },
    h("h1", {}, "Speech"),
    field("speech-text", "Text", text, max ? `The box speaks up to ${max} characters at a time.` : null),
    count,
    field("speech-voice", "Voice", voice),
    h("div", { class: "form-error", role: "alert" }),
    h("div", { class: "row" }, submit, status),
    out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (isBusy(submit)) return;
    clearErrors(form);
    busy(submit, true);
    out.replaceChildren();
    status.textContent = "Sending…";
    try {
      const { job, arts } = await speak(text.value, voice.value, (s) => { status.textContent = speaking(s); });
      status.textContent = "Done.";
      out.append(result(job, arts));
    } catch (e) {
      status.textContent = "";
      showError(form, e, { text: "speech-text", voice: "speech-voice" });
    } finally {
      busy(submit, false);
    }
  });
  root.append(form);
  update();
}
