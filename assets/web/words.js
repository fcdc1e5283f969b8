// The page's words for what the API names for programs: job kinds, stages, and above all
// the box's refusals, each in one short sentence a family member understands, saying what
// happened and who can fix it. The daemon's own message (written for whoever runs the
// box: settings, commands) stays one tap away under "Details", so nothing is hidden from
// them. Codes are the API's `error.code`s (src/api/error.rs and where they are made); a code
// not listed here keeps the daemon's message.
import { bytes, h } from "./ui.js";

/** Who can fix what the person at the page cannot, as a sentence starts and inside one. */
const OWNER = "Ask whoever runs the box to";
const owner = "ask whoever runs the box to";

/** Stage names in words a viewer knows (the API's names are for programs). */
export const STAGES = { plan: "Planning", keyframes: "Pictures", narration: "Voice", motion: "Camera moves",
  talking_head: "Presenter", upscale: "Upscaling", mux: "Putting it together", speech: "Voice",
  lipsync: "Presenter", generate: "Picture", pull: "Download", import: "Import", detect: "Face search",
  card: "Test card", summary: "Summary", resize: "Resizing", refine: "Refining" };

/**
 * A daemon message for people: what it says for operators after a `;` (commands and routes
 * in backticks, like "`reelbox queue resume` (POST …)") is left out.
 */
export function plain(msg) {
  if (!msg) return msg;
  const tick = msg.indexOf("`");
  const cut = tick < 0 ? -1 : msg.lastIndexOf(";", tick);
  const text = cut > 0 ? msg.slice(0, cut) : msg;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/**
 * Why a canceled job was canceled, as a sentence ("Canceled because the key "kid" was
 * revoked", "Canceled by its owner", "Canceled: wrong prompt" for a reason its owner gave);
 * "" for any other job, and for one canceled before the box kept why.
 */
export function canceledWhy(job) {
  const why = job.state === "canceled" && job.error;
  if (!why) return "";
  return /^canceled /.test(why) ? plain(why) : `Canceled: ${why}`;
}

/** A stage's name for people. */
export function stageLabel(name) {
  return STAGES[name] || String(name).replace(/_/g, " ");
}

/** What each kind of job is called on the page ("film", not "render"). */
export function kindWord(kind) {
  return { render: "film", image: "picture", speech: "speech", upscale: "larger picture", lipsync: "talking picture" }[kind] || kind;
}

/** What a model of each kind is called on the page. */
const THING = { diffusion: "picture model", tts: "voice", lipsync: "presenter model", upscale: "upscaler",
  face: "face detector" };

/** "in 5 seconds", "in about 3 minutes", from a `Retry-After`. */
function later(seconds) {
  if (!seconds) return "in a little while";
  if (seconds < 90) return `in ${Math.ceil(seconds)} second${Math.ceil(seconds) === 1 ? "" : "s"}`;
  if (seconds < 5400) return `in about ${Math.round(seconds / 60)} minutes`;
  return `in about ${Math.round(seconds / 3600)} hours`;
}

/**
 * A model the box cannot run, as the API sends it beside a refusal (`error.model`: kind,
 * name, state, pull, close). A failed job's error is only text: `problemOf` reads the
 * facts a job can fail with (a named model not installed, or unknown) from the daemon's
 * wording there. A kind with no model at all is refused at submission, always with the data.
 */
function problemOf(msg) {
  let m = msg.match(/(\w+) model "([^"]+)" is not installed/) || msg.match(/\b(model|voice) "([^"]+)" is not installed/);
  if (m) return { kind: m[1] === "voice" ? "tts" : m[1], name: m[2], state: "not_installed" };
  m = msg.match(/no (\w+) model "([^"]+)" is installed or in the catalog/) || msg.match(/^()unknown model "([^"]+)"/);
  if (!m) return null;
  const close = msg.match(/\(did you mean ([^?]+)\?\)/);
  return { kind: m[1] || "diffusion", name: m[2], state: "unknown", close: close ? close[1].split(", ") : [] };
}

/**
 * The words for a model problem: `at` is the sentence under the model's own control (its
 * label says what it is), `text` stands alone.
 */
function modelWords(p) {
  const thing = THING[p.kind] || "model";
  switch (p.state) {
    case "not_installed": {
      const at = `“${p.name}” is not on the box yet. ${OWNER} install it (Box, then Pull).`;
      return { at, text: `The ${thing} ${at}` };
    }
    case "unknown": {
      // A typo's close names are worth keeping.
      const close = p.close && p.close.length ? ` Did you mean ${p.close.join(", ")}?` : "";
      const tail = `${close} Pick another, or ${owner} add it.`;
      return { at: `the box does not know “${p.name}” and cannot fetch it.${tail}`,
        text: `The box does not know the ${thing} “${p.name}” and cannot fetch it.${tail}` };
    }
    case "gone": {
      const at = `“${p.name}” was added to the box by hand and its files are gone. ${OWNER} add it again.`;
      return { at, text: `The ${thing} ${at}` };
    }
    case "none_installed": {
      const how = `${OWNER} install one (Box, then Pull${p.pull ? ` “${p.pull}”` : ""}).`;
      return { at: `the box has none yet. ${how}`, text: `The box has no ${thing} yet. ${how}` };
    }
    case "no_default":
      return { at: "the box has several and none is its default: pick one.",
        text: `Pick a ${thing}: the box has several and none is its default.` };
    default:
      return null;
  }
}

/**
 * The words for a presenter profile's own voice or model the box cannot run, refused naming
 * `profile` (New film's "Default voice" speaks with the profile's): said as the profile's,
 * with the ways on from the form, the profile and the box.
 */
function profileModelWords(p) {
  const thing = THING[p.kind] || "model";
  const missing = p.state === "not_installed";
  const why = missing ? "is not on the box yet" : "is no longer on the box";
  const ways = missing
    ? `Pick another ${thing} here, change the profile's in Profiles, or ${owner} install it (Box, then Pull).`
    : `Pick another ${thing} here, or change the profile's in Profiles.`;
  return { at: `its ${thing} “${p.name}” ${why}. ${ways}`, text: `The presenter profile's ${thing} “${p.name}” ${why}. ${ways}` };
}

/** The box cannot run models at all (ONNX Runtime missing): at submission or in a job. */
const RUNTIME = `The box is missing the software that runs its models. ${OWNER} run “reelbox setup”.`;

/** Sentences by the API's error code; `e` is the error (status, `retryAfter`). */
const CODES = {
  unreachable: () => "Cannot reach the box: check that it is switched on and that this device is on its network.",
  runtime_missing: () => RUNTIME,
  quota_exceeded: (e) => e.status === 413
    ? `Your space on the box is full. Delete some of your work in Library, or ${owner} give you more.`
    : `You have used your share of the box for now. Try again ${later(e.retryAfter)}, or ${owner} raise your quota.`,
  rate_limited: (e) => `Too many requests from this device at once. Try again ${later(e.retryAfter)}.`,
  too_many_streams: () => "Too many pages are watching the box at once. Close some tabs and try again.",
  queue_full: (e) => `The box has too much work waiting. Try again ${later(e.retryAfter)}.`,
  body_too_large: () => `That is more than the box accepts in one go. Try something smaller, or ${owner} raise its limit.`,
  // The page knows the file's size and the box's limit (api.js `upload`) whether it
  // refused the file itself or the box did.
  upload_too_large: (e) => (e.size && e.limit
    ? `This file is ${bytes(e.size)}; the box takes files up to ${bytes(e.limit)}. Pick a smaller one (a phone's share or export can make one), or ${owner} raise its limit.`
    : `That file is larger than the box accepts. Try a smaller one, or ${owner} raise its limit.`),
  session_expired: () => "Your login has ended (the box may have restarted). Log in again with your key.",
  missing_key: () => "The box needs your key. Log in again with it.",
  name_taken: () => "You already have a profile of that name. Pick another name, or rename or delete that one.",
  admin_only: () => `Only the box's admin may do that. ${OWNER} do it for you.`,
  forbidden_origin: () => `The box refused this page's address. Open the studio at the box's own address, or ${owner} allow this one.`,
  forbidden_host: () => `The box does not answer to this name. Open it by its address, or ${owner} allow the name.`,
  cross_origin_session: () => "The box refused a request from another page. Open the studio at the box's own address.",
  shutting_down: () => "The box is restarting or shutting down. Try again in a minute.",
  disk_low: () => `The box's disk is nearly full, so it takes no new work for now. Delete finished work you have saved in Library, or ${owner} free space on it.`,
  store_unwritable: () => `The box cannot save anything right now (its disk may be full). ${OWNER} check it.`,
  internal: () => `Something went wrong on the box. Try again; if it keeps happening, ${owner} look at its log.`,
};

/** A `limit_exceeded` field message ("is 9000 characters; this server allows at most 8000 (limits.…)"). */
function limitWords(msg) {
  const m = msg.match(/is (\S+) (\w+); this server allows at most (\S+)/);
  return m ? `is ${m[1]} ${m[2]}; this box takes at most ${m[3]}. ${OWNER} raise the limit if you need more.` : null;
}

/**
 * A picture the box cannot take (the upload refusals of src/media/picture.rs), said with
 * what to do about it on a phone; null for any other message.
 */
function pictureWords(msg) {
  if (/HEIC\/HEIF/.test(msg)) {
    return "This is an iPhone photo in HEIC, which the box cannot read. Share it as JPEG, or set the iPhone's " +
      "Settings › Camera › Formats to Most Compatible.";
  }
  let m = msg.match(/^image is (\d+)×(\d+); limit is (\d+) px a side/);
  if (m) {
    return `The photo is ${m[1]} × ${m[2]} pixels; the box takes at most ${m[3]} a side. Send a smaller copy ` +
      `(your phone's share or export can make one), or ${owner} raise its limit.`;
  }
  m = msg.match(/^is (\S+), which reelbox cannot read/);
  return m ? `The box cannot read ${m[1]} pictures. Save or share it as JPEG or PNG and pick that.` : null;
}

/** What a face is found with: said before why the box cannot find one. */
const FACE = "To find the face in the photo the box needs a face detector: ";

/**
 * Plain words for an error of the API, of the network or of a failed job:
 * `{ text, at, details }`. `text` stands alone; `at` goes under the control the error names
 * (after its label); `details` is the daemon's own message when the words differ from it.
 */
export function plainError(err) {
  const msg = String((err && err.message) || err || "");
  // The field's name the API puts first ("model: …") is said by the control's label instead.
  const own = err && err.field && msg.startsWith(`${err.field}: `) ? msg.slice(err.field.length + 2) : msg;
  const said = (text, at = text) => ({ text, at, details: text === msg ? null : msg });
  const code = (err && err.code) || "";
  if (CODES[code]) return said(CODES[code](err));
  if (code === "limit_exceeded") {
    const w = limitWords(own);
    if (w) return { text: `${err.field}: ${w}`, at: w, details: msg };
  }
  const picture = pictureWords(own);
  if (picture) return said(picture);
  // Models the box lacks are field errors (`invalid_param` naming `model`/`voice`, with
  // the model as data) or a failed job's error (text only).
  const problem = (err && err.model) || problemOf(own);
  const model = problem && modelWords(problem);
  // A lip-sync that was given no face box and has no detector to find it (no form asks
  // for a box: the detector is what is missing, which the refusal carries as `model`).
  if (model && err.field === "face_box") {
    const at = problem.state === "no_default" ? `it has several and none is chosen. ${OWNER} choose one.` : model.at;
    return { text: FACE + at, at, details: msg };
  }
  if (model && err.field === "profile") return { ...profileModelWords(problem), details: msg };
  if (model) return { text: model.text, at: model.at, details: msg };
  if (!code && /onnx ?runtime|libonnxruntime/i.test(msg) && /not (found|installed|available|load)|cannot load|missing/i.test(msg)) {
    return said(RUNTIME);
  }
  if (err && err.status >= 500) return said(CODES.internal());
  // A failed job's error starts with its stage ("stage keyframes: …"): said by its name.
  const stage = msg.match(/^stage (\w+): (.*)$/s);
  if (stage) return said(`${stageLabel(stage[1])}: ${stage[2]}`);
  return { text: msg, at: own, details: null };
}

/**
 * The error as page elements: the sentence (after `label: ` when it is shown under a
 * control) and, when the daemon said more, its message under a "Details" disclosure.
 */
export function refusal(err, label) {
  const w = plainError(err);
  // After a label the sentence goes on in lower case ("Background music: that file is …").
  const text = label ? `${label}: ${w.at.replace(/^[A-Z](?=[a-z])/, (c) => c.toLowerCase())}` : w.text;
  const nodes = [h("span", { class: "said" }, text)];
  if (w.details) {
    const summary = h("summary", {}, "Details");
    // Escape folds it again, as it closes other things that open over a page.
    const onkeydown = (ev) => {
      if (ev.key !== "Escape" || !ev.currentTarget.open) return;
      ev.currentTarget.open = false;
      summary.focus();
    };
    nodes.push(h("details", { class: "details", onkeydown }, summary, h("p", {}, w.details)));
  }
  return nodes;
}
