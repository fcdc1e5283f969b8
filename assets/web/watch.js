// Watch: one job live over its event stream (stages, progress, keyframes, step previews,
// ETA, cancel/retry), then the result playing in the page with its downloads. `follow` is
// that card on its own, so the Picture view shows a picture being made the same way.
import { api, artifacts } from "./api.js";
import { duration, h, keepFocus, say, summary, when } from "./ui.js";
import { canceledWhy, kindWord, plain, stageLabel, STAGES } from "./words.js";

const FINAL = ["succeeded", "failed", "canceled"];

/**
 * A subtitle track's language from its ISO 639-2 code (`deu`): the BCP 47 tag (`de`) and
 * its name in that language ("Deutsch"); null when unknown.
 */
export function subtitleLanguage(code) {
  if (!code) return null;
  try {
    const tag = Intl.getCanonicalLocales(code)[0];
    const name = new Intl.DisplayNames([tag], { type: "language" }).of(tag);
    if (!name || name === tag || name === code) return { tag, name: `Subtitles (${code})` };
    return { tag, name: name[0].toLocaleUpperCase(tag) + name.slice(1) };
  } catch {
    return null;
  }
}

/** The main output of a finished job as page elements: player and download links. */
export function result(job, arts) {
  const by = (pred) => arts.filter(pred);
  // What the work is about names its player and is its picture's text alternative.
  const about = summary(job, 160);
  const word = kindWord(job.kind);
  const caption = `${word.charAt(0).toUpperCase()}${word.slice(1)}: ${about}`;
  const named = (n) => arts.find((a) => a.name === n);
  const out = h("div", { class: "result" });
  const film = named("film.mp4") || by((a) => a.media_type === "video/mp4").pop();
  const links = [];
  if (film) {
    const video = h("video", { controls: true, playsinline: true, preload: "metadata", src: film.url, class: "player",
      "aria-label": caption });
    const vtt = named("film.vtt") || arts.find((a) => a.media_type === "text/vtt");
    if (vtt) {
      // Labelled in the film's language (its timeline's, the voice's): every track said English.
      const track = h("track", { kind: "subtitles", src: vtt.url, label: "Subtitles", default: true });
      video.append(track);
      const timeline = named("timeline.json");
      if (timeline) {
        api("GET", timeline.url).then((t) => {
          const lang = subtitleLanguage(t.language);
          if (lang) Object.assign(track, { srclang: lang.tag, label: lang.name });
        }).catch(() => {});
      }
    }
    out.append(video);
    links.push([film, "MP4"], [named("film.srt"), "SRT"], [vtt, "VTT"]);
  } else if (by((a) => a.media_type.startsWith("audio/")).length) {
    const wav = by((a) => a.media_type.startsWith("audio/"))[0];
    out.append(h("audio", { controls: true, src: wav.url, class: "player-audio", "aria-label": caption }));
    links.push([wav, "WAV"]);
  } else {
    const made = by((a) => a.media_type.startsWith("image/") && !a.name.startsWith("preview"));
    // A picture made in passes (a second pass, an upscale, a resize) keeps each pass's
    // pictures; the result is the last stage's, as ComfyUI's SaveImage shows the last node's.
    const stages = (job.stages || []).map((s) => s.name);
    const last = Math.max(...made.map((a) => stages.indexOf(a.stage)));
    const pics = made.filter((a) => stages.indexOf(a.stage) === last);
    pics.forEach((p, i) => out.append(h("img", { src: p.url, class: "picture",
      alt: pics.length === 1 ? about : `${about} (${i + 1} of ${pics.length})` })));
    // A second pass on a model of its own (`refine.model`) drew the detail shown, or a
    // refiner the last steps (a split, `refine.switch`): said, as the picture's text says it
    // (A1111's "Hires checkpoint", "Refiner").
    const refine = (job.params && job.params.refine) || {};
    const own = refine.model;
    const split = refine.switch && `its refiner ${own} the last ${refine.steps - refine.switch.step} of ${refine.steps} steps`;
    const then = split || `its second pass with ${own}`;
    if (own) out.append(h("p", { class: "hint pass-model" }, `Drawn with ${job.params.model}, ${then}.`));
    // One picture downloads as "PNG"; several by their names (image-1.png, …).
    for (const p of pics) links.push([p, pics.length === 1 ? p.name.split(".").pop().toUpperCase() : p.name]);
  }
  const dl = links.filter(([a]) => a).map(([a, label]) =>
    h("a", { href: a.url, download: a.download_name || a.name, class: "button secondary" }, `Download ${label}`));
  if (dl.length) out.append(h("p", { class: "row downloads" }, dl));
  return out;
}

/**
 * Seconds a running job has left once it is `f` done, or null when there is no pace yet.
 * At the running stage's own pace where it has one (as the CLI's per-stage time left): a
 * short first stage says nothing of a long lip-sync. The rest weighs by the stages' shares.
 * `reelbox top` reckons it by the same rule (`eta_ms` in src/tui/format.rs): change both.
 */
export function timeLeft(job, f) {
  if (job.state !== "running") return null;
  const p = job.progress;
  const cur = job.stages.find((s) => s.name === p.stage && s.state === "running");
  if (cur && cur.started_at && cur.weight > 0 && p.total && p.step > 0) {
    const spent = (Date.now() - Date.parse(cur.started_at)) / 1000;
    return (spent / (cur.weight * (p.step / p.total))) * (1 - f);
  }
  if (!job.started_at || f <= 0.02) return null;
  const spent = (Date.now() - Date.parse(job.started_at)) / 1000;
  return (spent * (1 - f)) / f;
}

function stageRow(stage) {
  const bar = h("progress", { max: 1, value: stage.state === "done" ? 1 : 0, "aria-label": `${stageLabel(stage.name)} progress` });
  const state = h("span", { class: "state" }, stage.state);
  const row = h("li", { class: `stage ${stage.state}`, "data-stage": stage.name }, h("span", { class: "name" }, stageLabel(stage.name)), bar, state);
  return { row, bar, state };
}

async function pick(root) {
  const page = await api("GET", "/api/v1/jobs?limit=20");
  const list = h("ul", { class: "jobs" }, page.jobs.map((j) =>
    h("li", {}, h("a", { href: `#/watch/${j.id}` }, `${kindWord(j.kind)} · ${j.state} · ${summary(j, 80)}`),
      h("span", { class: "hint" }, " ", when(j.created_at)))));
  root.append(h("section", { class: "card" }, h("h1", {}, "Watch"),
    page.jobs.length ? list : h("p", {}, "Nothing yet: start a ", h("a", { href: "#/new" }, "new film"), ".")));
}

/** Renders the Watch view of job `id` (or a list to pick from) into `root`. */
export async function watch(root, id) {
  if (!id) return pick(root);
  return follow(root, id, "Watch");
}

/**
 * Job `id` followed live in a card titled `title` appended to `root` (progress, previews,
 * cancel/retry, then the result); returns what stops its streams and timers.
 */
export async function follow(root, id, title) {
  let job = await api("GET", `/api/v1/jobs/${id}`);
  const overall = h("progress", { max: 1, value: 0, id: "overall", "aria-label": `Progress of the ${kindWord(job.kind)}` });
  const percent = h("span", { class: "percent", id: "percent" }, "0 %");
  const eta = h("span", { class: "eta" });
  const stateEl = h("span", { class: "badge", id: "job-state" });
  const message = h("p", { class: "hint message" }, "\u00a0");
  const stages = new Map();
  const stageList = h("ol", { class: "stages" });
  const keyframes = h("div", { class: "keyframes", role: "group", "aria-label": "Keyframes" });
  const preview = h("img", { class: "preview", alt: "Latest step preview", hidden: true });
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  const retry = h("button", { type: "button", class: "secondary" }, "Retry");
  const error = h("div", { class: "form-error", role: "alert" });
  // Why the job failed, in plain words with the daemon's message under "Details".
  const failure = h("div", { class: "form-error failure", role: "alert" });
  // Why it was canceled and by whom (a cancel is no failure: no alert; `said` tells it).
  const canceled = h("p", { class: "hint why" });
  // What a screen reader hears as the work goes on; the bars and the percent change quietly.
  const said = h("p", { class: "sr-only", role: "status", id: "job-said" });
  const heading = h("h1", { tabindex: "-1" }, `${title} `, stateEl);
  let told = "";
  const resultSlot = h("div");
  const seen = new Set();
  let best = 0;

  const addPicture = (a) => {
    if (seen.has(a.url)) return;
    seen.add(a.url);
    if (a.stage === "keyframes" || /^keyframe/.test(a.name)) {
      keyframes.append(h("img", { src: a.url, alt: `Keyframe ${keyframes.children.length + 1}`, loading: "lazy" }));
    } else if (!FINAL.includes(job.state)) {
      // Any other picture while the job runs is a step preview: show the newest.
      preview.src = a.url;
      preview.hidden = false;
    }
  };
  // The news in `said`: the state, each stage as it starts and each quarter of the way (not
  // every step: a reader would talk over itself), then the end. A failure is the alert's.
  const tell = (f) => {
    const word = kindWord(job.kind);
    const stage = job.progress.stage;
    const news = {
      queued: () => message.textContent.trim() || "Waiting for a free device.",
      running: () => `${stage ? `${stageLabel(stage)}, ` : ""}${Math.floor(f * 4) * 25} % done`,
      succeeded: () => `Done: the ${word} is ready.`,
      canceled: () => canceledWhy(job) || "Canceled.",
    }[job.state];
    const text = news ? news() : "";
    if (text && text !== told) said.textContent = told = text;
  };
  const draw = async () => {
    // Which of Cancel and Retry held the focus before this reading hides one of them.
    const focused = document.activeElement;
    stateEl.textContent = job.state;
    stateEl.className = `badge ${job.state}`;
    // The daemon's fraction can jump ahead for a moment between stages (seen: 55, 70, 57 %);
    // what the page shows never goes back while the job runs. A retry starts from nothing.
    let f = job.state === "succeeded" ? 1 : job.progress.fraction;
    if (job.state === "running") f = best = Math.max(best, f);
    else best = 0;
    overall.value = f;
    percent.textContent = `${Math.floor(f * 100)} %`;
    const left = timeLeft(job, f);
    if (left !== null) eta.textContent = left < 1.5 ? "almost done" : `about ${duration(left)} left`;
    else eta.textContent = job.state === "queued" ? "waiting for a free device" : "";
    const said = job.progress.message;
    const why = canceledWhy(job);
    canceled.textContent = why;
    const failed = job.error && !why;
    message.textContent = failed ? "Failed." : (said && STAGES[said] ? STAGES[said] : plain(said)) || "\u00a0";
    if (failed) { if (!failure.childElementCount) say(failure, new Error(job.error)); } else failure.replaceChildren();
    for (const s of job.stages) {
      if (!stages.has(s.name)) { const r = stageRow(s); stages.set(s.name, r); stageList.append(r.row); }
      const r = stages.get(s.name);
      r.state.textContent = s.state;
      r.row.className = `stage ${s.state}`;
      if (s.state === "done") r.bar.value = 1;
      if (job.progress.stage === s.name && job.progress.total) r.bar.value = job.progress.step / job.progress.total;
    }
    cancel.hidden = FINAL.includes(job.state);
    retry.hidden = !["failed", "canceled"].includes(job.state);
    // The one pressed hides itself: focus goes to the other (Retry after a cancel), not the page's start.
    if (focused === cancel && cancel.hidden) keepFocus(cancel, retry, heading);
    if (focused === retry && retry.hidden) keepFocus(retry, cancel, heading);
    tell(f);
    // A step preview is only news while the job runs; the result shows the finished picture.
    if (FINAL.includes(job.state)) preview.hidden = true;
    if (job.state === "succeeded" && !resultSlot.childElementCount) {
      const arts = await artifacts(id);
      arts.filter((a) => a.media_type.startsWith("image/")).forEach(addPicture);
      resultSlot.append(result(job, arts));
    }
  };
  // The job as the API has it now, drawn (what both the event stream and a reconnect do).
  const reload = async () => {
    job = await api("GET", `/api/v1/jobs/${id}`);
    error.replaceChildren();
    await draw();
  };
  let pending = null;
  const refresh = () => {
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      try {
        await reload();
        if (FINAL.includes(job.state) && source) source.close();
      } catch (e) { if (e.status !== 401) say(error, e); }
    }, 250);
  };
  const act = async (what) => {
    error.replaceChildren();
    try { job = await api("POST", `/api/v1/jobs/${id}/${what}`); await draw(); if (what === "retry") listen(); }
    catch (e) { say(error, e); }
  };
  cancel.addEventListener("click", () => act("cancel"));
  retry.addEventListener("click", () => act("retry"));

  let source = null;
  let again = null;
  // A dropped stream is retried by the browser itself, but an error answer (a 401 once the
  // daemon restarted or the session ended) closes it for good: then ask the API, which
  // brings up the login form on a 401 or says the box is unreachable, and listen again.
  const reconnect = () => {
    if (again) return;
    again = setTimeout(async () => {
      again = null;
      try {
        await reload();
        if (!FINAL.includes(job.state)) listen();
      } catch (e) {
        if (e.status === 401) return;
        say(error, e);
        reconnect();
      }
    }, 2000);
  };
  const listen = () => {
    if (source) source.close();
    source = new EventSource(`/api/v1/jobs/${id}/events`);
    source.addEventListener("artifact", (ev) => {
      const a = JSON.parse(ev.data);
      if (a.media_type.startsWith("image/")) addPicture({ url: a.url, name: "", stage: a.stage });
    });
    source.addEventListener("progress", (ev) => {
      const p = JSON.parse(ev.data);
      const r = stages.get(p.stage);
      if (r && p.total) r.bar.value = p.step / p.total;
      refresh();
    });
    for (const t of ["stage", "state"]) source.addEventListener(t, refresh);
    source.onopen = () => { if (error.childElementCount) refresh(); };
    source.onerror = () => {
      if (FINAL.includes(job.state)) { source.close(); return; }
      if (source.readyState === EventSource.CLOSED) reconnect();
      // The stream also ends when the job does: ask how it is (an unreachable box says so).
      else refresh();
    };
  };

  root.append(h("section", { class: "card watch" },
    heading,
    said,
    h("p", { class: "summary" }, summary(job, 160)),
    h("div", { class: "overall" }, overall, percent, eta),
    message,
    canceled,
    failure,
    resultSlot,
    stageList,
    h("div", { class: "row" }, cancel, retry),
    error,
    // A film's keyframes stay; other jobs only have step previews while they run.
    job.kind === "render" ? h("h2", {}, "Pictures") : null,
    h("div", { class: "pictures" }, keyframes, preview)));
  await draw();
  if (!FINAL.includes(job.state)) listen();
  return () => { if (source) source.close(); if (pending) clearTimeout(pending); if (again) clearTimeout(again); };
}
