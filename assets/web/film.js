// New film: the script editor (paragraphs are scenes, [screen directions] are pictures),
// the film's settings, "listen" for the voice, submit.
import { api, installed, upload } from "./api.js";
import { followProfile, modelSelect, select, sizeSelect } from "./choices.js";
import { firstSentence } from "./sentences.js";
import { speak, speaking } from "./speech.js";
import { busy, clearErrors, field, h, isBusy, say, showError } from "./ui.js";

const EXAMPLE = "[a red circle on a blue background]\nWelcome to reelbox, a film studio in your own box.\n\n" +
  "[a yellow square on a green background]\nEvery picture and voice is made on this machine.";

/** The scenes a script makes, as the render plans them: per paragraph, directions and speech. */
export function scenes(script) {
  return script.replace(/\r\n/g, "\n").split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean).map((p) => {
    const directions = [...p.matchAll(/\[([^\]]*)\]/g)].map((m) => m[1].trim()).filter(Boolean);
    const spoken = p.replace(/\[[^\]]*\]/g, " ").replace(/\s+/g, " ").trim();
    return { picture: directions.join(", ") || spoken, spoken };
  });
}

/** The language a Piper voice's name says (`de_DE-thorsten-medium` → `de-DE`), else "". */
export function voiceLanguage(name) {
  const m = /^([a-z]{2,3})_([A-Z]{2})-/.exec(name || "");
  return m ? `${m[1]}-${m[2]}` : "";
}

/** Lists `found` scenes ({picture, spoken}) in `list`; returns how many. */
function explain(list, found) {
  list.replaceChildren(...found.map((s, i) => h("li", {},
    h("strong", {}, `Scene ${i + 1}. `),
    h("span", { class: "pic" }, "Picture: ", s.picture || "—"), " ",
    h("span", { class: "say" }, "Spoken: ", s.spoken || "(nothing: the scene is skipped)"))));
  return found.length;
}

/** Whether a file's name says Markdown, as `reelbox render story.md` reads it. */
export function isMarkdownName(name) {
  return /\.(md|markdown|mdown|mkd)$/i.test(name || "");
}

/** Speaks `text` with `voice` (Speech's own path) and plays it. */
async function listen(button, status, text, voice) {
  busy(button, true);
  status.textContent = speaking("running");
  try {
    const { arts } = await speak(text, voice, (s) => { status.textContent = speaking(s); });
    const wav = arts.find((a) => a.media_type.startsWith("audio/"));
    const audio = new Audio(wav.url);
    status.textContent = "Playing.";
    await audio.play();
  } catch (e) {
    say(status, e);
  } finally {
    busy(button, false);
  }
}

/** Renders the New film view into `root`. */
export async function newFilm(root) {
  const [profiles, voices, diffusion, presets, lipsyncs, upscalers] = await Promise.all([
    api("GET", "/api/v1/profiles"), installed("tts"), installed("diffusion"), api("GET", "/api/v1/presets"),
    installed("lipsync"), installed("upscale"),
  ]);
  // No page language for the script (the page's `en` had German checked as English): the
  // chosen voice's, when its name says it (`de_DE-…`), else none, so the checker follows the text.
  const script = h("textarea", { rows: 10, required: true, spellcheck: "true", lang: "" });
  script.value = sessionStorage.getItem("reelbox.script") || EXAMPLE;
  const list = h("ol", { class: "scenes", "aria-label": "Scenes of the script" });
  const count = h("span", { class: "hint", "aria-live": "polite" });
  // A Markdown script (notes, a README, story.md) is read as the render reads it: its
  // headings are title scenes and its marks are not said.
  const markdown = h("input", { type: "checkbox", id: "script-markdown" });
  markdown.checked = sessionStorage.getItem("reelbox.scriptFormat") === "markdown";
  const openFile = h("input", { type: "file", id: "script-file", accept: ".md,.markdown,.txt,text/plain,text/markdown" });
  const shown = (n) => { count.textContent = `${n} scene${n === 1 ? "" : "s"}`; };
  // Plain text is split here as the render splits it (showing the scenes it will skip);
  // Markdown is read by the daemon: its own plan, asked for once the typing stops.
  let asked = 0;
  let timer = null;
  // The daemon's last plan's scenes, for Listen (a Markdown script's first line is "# …").
  let planned = null;
  const preview = async () => {
    const mine = ++asked;
    const body = { script: script.value, script_format: "markdown" };
    if (voice.value) body.voice = voice.value;
    if (profile.value) body.profile = profile.value;
    try {
      const plan = await api("POST", "/api/v1/renders/plan", body);
      if (mine !== asked) return;
      // A narrated scene's prompt has its brackets escaped (drawn as words): shown as typed.
      planned = plan.scenes.map((sc) => ({ picture: sc.prompt.replace(/\\([()])/g, "$1"), spoken: sc.sentences.join(" ") }));
      shown(explain(list, planned));
    } catch (e) {
      if (mine !== asked) return;
      // What the daemon refuses (no words to say, a voice gone) is said again at Render film.
      planned = null;
      list.replaceChildren();
      count.textContent = e.message || String(e);
    }
  };
  const update = () => {
    sessionStorage.setItem("reelbox.script", script.value);
    sessionStorage.setItem("reelbox.scriptFormat", markdown.checked ? "markdown" : "text");
    clearTimeout(timer);
    asked++;
    if (markdown.checked) {
      count.textContent = "Reading the Markdown…";
      timer = setTimeout(preview, 400);
    } else {
      shown(explain(list, scenes(script.value)));
    }
  };
  script.addEventListener("input", update);
  markdown.addEventListener("change", update);
  openFile.addEventListener("change", async () => {
    const file = openFile.files[0];
    if (!file) return;
    script.value = await file.text();
    markdown.checked = isMarkdownName(file.name);
    update();
  });

  const profile = select([["", "No presenter"], ...profiles.map((p) => [p.id, p.name])], "");
  const preset = select([["", "Model default"],
    ...presets.presets.map((p) => [p.name, p.description ? `${p.name}: ${p.description}` : p.name])], "");
  const voice = select([["", "Default voice"], ...voices.map((v) => [v.name, v.name])], "");
  voice.addEventListener("change", () => { script.lang = voiceLanguage(voice.value); update(); });
  profile.addEventListener("change", update);
  const model = modelSelect(diffusion);
  const size = sizeSelect(diffusion, model);
  const layout = select([["inset", "Presenter inset"], ["full", "Presenter full frame"], ["none", "Pictures only"]], "inset");
  const music = h("input", { type: "file", accept: "audio/*" });
  const upscale = h("input", { type: "checkbox" });
  // The presenter's and the upscaler's models: the installed ones, the box's default picked
  // (an imported wav2lip_gan or 4x-UltraSharp is chosen here, or with `models default`).
  const lipsyncModel = modelSelect(lipsyncs);
  const upscaleModel = modelSelect(upscalers);
  // A presenter profile brings its own picture, lip-sync and upscale models.
  followProfile(profile, profiles, { image_model: model, lipsync_model: lipsyncModel, upscale_model: upscaleModel });
  const burn = h("input", { type: "checkbox" });
  const listenBtn = h("button", { type: "button", class: "secondary" }, "Listen");
  const listenStatus = h("span", { class: "hint", "aria-live": "polite" });
  listenBtn.addEventListener("click", () => {
    if (isBusy(listenBtn)) return;
    const first = (markdown.checked && planned ? planned : scenes(script.value)).find((s) => s.spoken);
    // The render's own rule in the voice's language (the box's default voice's when none is
    // picked): a split at every full stop spoke "Dr." of "Dr. Müller kam…", and English's
    // rule "Am 3." of "Am 3. Mai kam…".
    // With "Default voice", the film speaks with its presenter profile's voice, if one is picked.
    const presenter = profiles.find((p) => p.id === profile.value);
    const spoken = voice.value || (presenter && presenter.voice.model) || "";
    const named = spoken || (voices.find((v) => v.default) || {}).name;
    const sentence = firstSentence(first ? first.spoken : "Hello from reelbox.", voiceLanguage(named));
    listen(listenBtn, listenStatus, sentence, spoken);
  });
  const submit = h("button", { type: "submit", class: "primary" }, "Render film");
  const form = h("form", { class: "card film", novalidate: true },
    h("h1", {}, "New film"),
    field("script", "Script", script,
      "Each paragraph is a scene. Text in [square brackets] says what the picture shows and is not spoken; the rest is narrated and subtitled."),
    h("div", { class: "script-tools" },
      h("label", {}, markdown, " Markdown: # headings are title scenes; *marks*, link addresses and code are not said"),
      h("label", { class: "file" }, "Open a script file ", openFile)),
    h("div", { class: "explain" }, count, list),
    h("div", { class: "grid" },
      field("profile", "Presenter profile", profile),
      field("preset", "Preset", preset),
      h("div", {}, field("voice", "Voice", voice), h("div", { class: "row" }, listenBtn, listenStatus)),
      field("model", "Picture model", model),
      field("size", "Picture size", size),
      field("layout", "Layout", layout),
      field("lipsync-model", "Lip-sync model", lipsyncModel, "Makes the presenter talk."),
      field("upscale-model", "Upscale model", upscaleModel, "Used when the film is upscaled."),
      field("music", "Background music", music, "Optional: an audio file mixed under the voice."),
    ),
    h("div", { class: "checks" },
      h("label", {}, upscale, " Upscale the film"),
      h("label", {}, burn, " Burn subtitles into the picture (they are always also a separate track)")),
    h("div", { class: "form-error", role: "alert" }),
    submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (isBusy(submit)) return;
    clearErrors(form);
    busy(submit, true);
    try {
      const body = { script: script.value, width: Number(size.value), height: Number(size.value),
        layout: layout.value, upscale: upscale.checked, burn_subtitles: burn.checked };
      if (markdown.checked) body.script_format = "markdown";
      if (profile.value) body.profile = profile.value;
      if (preset.value) body.preset = preset.value;
      if (voice.value) body.voice = voice.value;
      if (model.value) body.model = model.value;
      if (lipsyncModel.value) body.lipsync_model = lipsyncModel.value;
      if (upscaleModel.value) body.upscale_model = upscaleModel.value;
      if (music.files.length) body.music = await upload(music.files[0]);
      const job = await api("POST", "/api/v1/renders", body);
      location.hash = `#/watch/${job.id}`;
    } catch (e) {
      showError(form, e, { script: "script", prompt: "script", script_format: "script", profile: "profile", preset: "preset", voice: "voice",
        model: "model", width: "size", height: "size", layout: "layout", music: "music", file: "music",
        lipsync_model: "lipsync-model", upscale_model: "upscale-model" });
    } finally {
      busy(submit, false);
    }
  });
  root.append(form);
  update();
}
