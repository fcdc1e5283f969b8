// Library: the caller's films, pictures and speech, newest first, with prompt search,
// playback, download and delete (with the files).
import { api, artifacts, waitJob } from "./api.js";
import { busy, bytes, h, isBusy, keepFocus, say, summary, when } from "./ui.js";
import { result } from "./watch.js";
import { canceledWhy, kindWord } from "./words.js";

const KINDS = [["render", "Films"], ["image", "Pictures"], ["speech", "Speech"], ["", "Everything"]];


async function card(job, onGone) {
  const word = kindWord(job.kind);
  const body = h("div", { class: "item-body" });
  const status = h("div", { class: "hint", role: "status" });
  // Each button names its work: a screen reader's list of buttons is otherwise "Delete, Delete…".
  const what = `${word}: ${summary(job, 60) || word}`;
  const del = h("button", { type: "button", class: "danger", "aria-label": `Delete ${what}` }, "Delete");
  // Work still queued or running can only be canceled (the API refuses to delete it), so
  // that is what its card offers; once it has stopped, the card offers Delete.
  const live = ["queued", "running"].includes(job.state);
  const stop = h("button", { type: "button", class: "secondary", "aria-label": `Cancel ${what}` }, "Cancel");
  const item = h("li", { class: "card item", "data-job": job.id },
    h("h2", {}, h("a", { href: `#/watch/${job.id}` }, summary(job, 90) || word)),
    h("p", { class: "hint" }, `${word} · ${job.state} · ${when(job.created_at)}`),
    canceledWhy(job) ? h("p", { class: "hint why" }, canceledWhy(job)) : null,
    body, h("div", { class: "row" }, live ? stop : del), status);
  stop.addEventListener("click", async () => {
    if (isBusy(stop)) return;
    busy(stop, true);
    try {
      await api("POST", `/api/v1/jobs/${job.id}/cancel`);
      // A running job stops within a second; show the card as it then is, and keep the
      // focus on it (its Delete now), not the page's start.
      const next = await card(await waitJob(job.id), onGone);
      item.replaceWith(next);
      keepFocus(stop, next.querySelector("button"));
    } catch (e) { say(status, e); busy(stop, false); }
  });
  del.addEventListener("click", async () => {
    if (!confirm(`Delete this ${word} and its files?`)) return;
    try {
      const r = await api("DELETE", `/api/v1/jobs/${job.id}`);
      status.textContent = `Deleted ${r.artifacts} file${r.artifacts === 1 ? "" : "s"}.`;
      // The card goes with the focus on it: the next card's title, else the one before, else the search.
      const after = item.nextElementSibling || item.previousElementSibling;
      item.remove();
      onGone(r);
      keepFocus(del, after && after.querySelector("h2 a"), document.getElementById("lib-search"));
    } catch (e) { say(status, e); }
  });
  if (job.state === "succeeded") {
    const arts = await artifacts(job.id);
    body.append(result(job, arts));
    const total = arts.reduce((n, a) => n + a.size, 0);
    body.append(h("p", { class: "hint" }, `${arts.length} files, ${bytes(total)}`));
  }
  return item;
}

/** `s` without case and accents, so "zoe" finds "Zoë" (and an NFD "Zoë" a typed one). */
function folded(s) {
  return s.normalize("NFD").replace(/\p{M}/gu, "").toLowerCase();
}

/** Renders the Library view into `root`. */
export async function library(root) {
  const kind = h("select", { id: "lib-kind" }, KINDS.map(([v, l]) => h("option", { value: v }, l)));
  const search = h("input", { type: "search", id: "lib-search", placeholder: "Search prompts and scripts" });
  // Not a live region: a search would read every card out again; the count below is said.
  const list = h("ul", { class: "items" });
  const note = h("p", { class: "hint", role: "status" });
  let jobs = [];
  const show = async () => {
    const q = folded(search.value.trim());
    // A film's card says what it speaks; its search reads its [directions] too.
    const shown = jobs.filter((j) => (!kind.value || j.kind === kind.value) && folded(`${summary(j)} ${j.params?.script || ""}`).includes(q));
    note.textContent = shown.length ? `${shown.length} shown, newest first` : "Nothing here yet.";
    list.replaceChildren(...(await Promise.all(shown.slice(0, 30).map((j) => card(j, () => {
      jobs = jobs.filter((x) => x.id !== j.id);
      note.textContent = "Deleted.";
    })))));
  };
  const load = async () => {
    jobs = [];
    let cursor = null;
    do {
      const page = await api("GET", `/api/v1/jobs?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      jobs.push(...page.jobs.filter((j) => ["render", "image", "speech"].includes(j.kind)));
      cursor = page.next_cursor;
    } while (cursor && jobs.length < 1000);
    await show();
  };
  let timer = null;
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(show, 200); });
  kind.addEventListener("change", show);
  root.append(h("section", { class: "library" },
    h("h1", {}, "Library"),
    h("div", { class: "row filters" },
      h("div", { class: "field" }, h("label", { for: "lib-kind" }, "Show"), kind),
      h("div", { class: "field grow" }, h("label", { for: "lib-search" }, "Search"), search)),
    note, list));
  await load();
  return () => clearTimeout(timer);
}
